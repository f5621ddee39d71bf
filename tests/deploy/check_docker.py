#!/usr/bin/env python3
"""Checks deploy/docker/Dockerfile.cpu and Dockerfile.cuda without a Docker engine.

No Docker engine (dockerd, BuildKit) and no hadolint exist in Debian 12's packages, so the images
cannot be built or linted by their real tools here. What this checks instead, against the
repository and the real binaries:
  - the Dockerfile parses (continuations, exec forms); multi-stage: `build` then `runtime`;
    BuildKit syntax directive (RUN --mount needs it); a few hadolint rules (exec-form
    ENTRYPOINT/CMD/HEALTHCHECK, pipefail SHELL, apt lists removed, no `latest`, ADD only for URLs);
  - every stage installs its packages with scripts/install-deps.sh, in a mode the script has
    (--build in `build`, --runtime in `runtime`), copied into the stage before it runs;
  - COPY sources exist and are not filtered out by the Dockerfile's <Dockerfile>.dockerignore
    (Docker's pattern rules), every git-tracked file the build needs stays in the context, and
    the big trees (build/, node_modules/) stay out;
  - `cmake --preset` / `cmake --build --preset` name presets of CMakePresets.json, each --target
    is an executable the CMake files define, and the files installed from build/<preset>/ are
    where those targets land;
  - runtime: non-root numeric USER that the image's useradd creates, the /models VOLUME is
    ENGRAM_CACHE_DIR and owned by that user, EXPOSE of the gRPC and metrics ports that
    ENTRYPOINT + CMD pass to engramd, a command line the real engramd accepts, a HEALTHCHECK
    running `engram-client health` against that port with flags the real engram-client accepts;
  - the shared libraries the built binaries link (ldd) all come from packages that
    `install-deps.sh --runtime` installs, or from packages every Debian 12 image has (Priority
    required / Essential), following Depends/Pre-Depends through dpkg's database: the runtime
    stage can start them.
"""
import argparse
import json
import re
import shlex
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import deploy_lib as dl  # noqa: E402

DOCKER = dl.DEPLOY / "docker"
GRPC_PORT, METRICS_PORT = "50051", "9400"


def parse_dockerfile(path):
    """[(instruction, rest, line)]; the first line's parser directive as ('#SYNTAX', value)."""
    out, pending, start = [], "", 0
    lines = Path(path).read_text(encoding="utf-8").splitlines()
    if lines and (m := re.match(r"#\s*syntax=(\S+)", lines[0])):
        out.append(("#SYNTAX", m.group(1), 1))
    for n, raw in enumerate(lines, 1):
        s = raw.strip()
        if not pending and (not s or s.startswith("#")):
            continue
        if pending and s.startswith("#"):
            continue  # comment lines inside a continuation are dropped, as Docker does
        if not pending:
            start = n
        if s.endswith("\\"):
            pending += s[:-1] + " "
            continue
        full = pending + s
        pending = ""
        ins, _, rest = full.partition(" ")
        out.append((ins.upper(), rest.strip(), start))
    return out


def exec_form(rest):
    try:
        v = json.loads(rest)
        return v if isinstance(v, list) and all(isinstance(x, str) for x in v) else None
    except ValueError:
        return None


def dockerignore_patterns(path):
    pats = []
    if path.is_file():
        for line in path.read_text(encoding="utf-8").splitlines():
            line = line.strip()
            if not line or line.startswith("#"):
                continue
            neg = line.startswith("!")
            p = line[1:] if neg else line
            p = p.strip().strip("/")
            rx, i = "", 0
            while i < len(p):
                if p.startswith("**", i):
                    rx += ".*"
                    i += 2
                    if p.startswith("/", i):
                        rx = rx[:-2] + "(?:.*/)?"
                        i += 1
                elif p[i] == "*":
                    rx += "[^/]*"
                    i += 1
                elif p[i] == "?":
                    rx += "[^/]"
                    i += 1
                else:
                    rx += re.escape(p[i])
                    i += 1
            pats.append((neg, re.compile(rx + "$")))
    return pats


def ignored(rel, pats):
    """Docker's rule: the last matching pattern wins; a pattern matching a parent directory
    excludes everything below it."""
    parts = rel.strip("/").split("/")
    prefixes = ["/".join(parts[: i + 1]) for i in range(len(parts))]
    result = False
    for neg, rx in pats:
        if any(rx.match(p) for p in prefixes):
            result = not neg
    return result


def cmake_executables():
    """{target: directory of its CMakeLists.txt relative to the repository root}."""
    out = {}
    for p in dl.REPO.rglob("CMakeLists.txt"):
        rel = p.parent.relative_to(dl.REPO).as_posix()
        if rel.startswith(("build", "tests/tokenizers/node_modules")):
            continue
        for t in re.findall(r"add_executable\(\s*([A-Za-z0-9_.+-]+)", p.read_text(encoding="utf-8")):
            out[t] = "" if rel == "." else rel
    return out


def install_deps_modes():
    text = (dl.REPO / "scripts/install-deps.sh").read_text(encoding="utf-8")
    modes = set(re.findall(r"^\s*(--[a-z]+)\)", text, re.M))
    runtime = re.search(r"runtime_pkgs=\(([^)]*)\)", text, re.S)
    return modes, (runtime.group(1).split() if runtime else [])


# --- runtime libraries -------------------------------------------------------------------------

def dpkg_db():
    r = dl.run_quiet(["dpkg-query", "-W", "-f",
                      "${Package}\t${Status}\t${Essential}\t${Priority}\t${Provides}\t${Pre-Depends}\t${Depends}\n"])
    pkgs, provides = {}, {}
    for line in r.stdout.splitlines():
        name, status, essential, prio, prov, pre, dep = (line.split("\t") + [""] * 7)[:7]
        if not status.endswith(" installed"):
            continue
        pkgs[name] = {"base": essential == "yes" or prio == "required", "deps": f"{pre},{dep}"}
        for p in prov.split(","):
            p = p.strip().split(" ")[0]
            if p:
                provides.setdefault(p, set()).add(name)
    return pkgs, provides


def closure(roots, pkgs, provides):
    seen, todo = set(), [r for r in roots if r in pkgs]
    while todo:
        p = todo.pop()
        if p in seen:
            continue
        seen.add(p)
        for dep in pkgs[p]["deps"].split(","):
            alts = [a.strip().split(" ")[0].split(":")[0] for a in dep.split("|") if a.strip()]
            for alt in alts:
                names = [alt] if alt in pkgs else sorted(provides.get(alt, ()))
                if names:
                    todo.extend(n for n in names if n not in seen)
                    break
    return seen


def packages_of(libs):
    """{library path: owning Debian package or None}, one dpkg-query call for all of them (dpkg
    records /usr/lib or /lib paths as the package shipped them; ldd may print either)."""
    cands = {}
    for lib in libs:
        real = str(Path(lib).resolve())
        c = [lib, real]
        for p in (lib, real):
            if p.startswith("/lib"):
                c.append("/usr" + p)
            if p.startswith("/usr/lib"):
                c.append(p[4:])
        cands[lib] = c
    every = sorted({x for c in cands.values() for x in c})
    owner = {}
    r = dl.run_quiet(["dpkg-query", "-S"] + every)
    for line in r.stdout.splitlines():
        pkgs, _, path = line.partition(": ")
        owner[path.strip()] = pkgs.split(",")[0].split(":")[0].strip()
    return {lib: next((owner[x] for x in c if x in owner), None) for lib, c in cands.items()}


def check_runtime_libs(c, binaries, runtime_pkgs):
    pkgs, provides = dpkg_db()
    missing_local = [p for p in runtime_pkgs if p not in pkgs]
    c.check(not missing_local, f"install-deps.sh --runtime packages not installed here, cannot follow their "
                               f"dependencies: {missing_local}")
    base = closure([p for p, d in pkgs.items() if d["base"]], pkgs, provides)
    have = closure(runtime_pkgs, pkgs, provides) | base
    for b in binaries:
        r = dl.run_quiet(["ldd", str(b)])
        libs = re.findall(r"=>\s*(/\S+)", r.stdout)
        c.check(r.returncode == 0 and libs, f"ldd {b}: {r.stderr.strip()}")
        lacking = {}
        owners = packages_of(libs)
        for lib in libs:
            pkg = owners[lib]
            if pkg is None:
                if "/cuda" in lib or "libcuda" in lib:
                    continue  # the driver, mounted by the NVIDIA container toolkit
                lacking[lib] = "(no Debian package owns it)"
            elif pkg not in have:
                lacking[lib] = pkg
        c.check(not lacking, f"{Path(b).name} links libraries the runtime image would not have: "
                             + ", ".join(f"{Path(k).name} from {v}" for k, v in sorted(lacking.items()))
                             + " -> add the packages to runtime_pkgs in scripts/install-deps.sh")
        print(f"{Path(b).name}: {len(libs)} shared libraries, "
              f"{'all' if not lacking else len(libs) - len(lacking)} from the runtime packages")


# --- one Dockerfile ----------------------------------------------------------------------------

def check_dockerfile(c, path, a, modes, executables, presets):
    where = f"[{path.name}]"
    ins = parse_dockerfile(path)
    syntax = [r for i, r, _ in ins if i == "#SYNTAX"]
    c.check(syntax and syntax[0].startswith("docker/dockerfile:1"), f"{where} first line must be # syntax=docker/dockerfile:1")
    stages, cur, args_ = [], None, {}
    for i, rest, n in ins:
        if i == "ARG" and cur is None:
            k, _, v = rest.partition("=")
            args_[k] = v.strip('"')
        if i == "FROM":
            m = re.match(r"(\S+)(?:\s+AS\s+(\S+))?", rest, re.I)
            image = re.sub(r"\$\{(\w+)\}", lambda x: args_.get(x.group(1), ""), m.group(1))
            cur = {"name": m.group(2), "image": image, "ins": []}
            stages.append(cur)
            c.check(":" in image and not image.endswith(":latest"), f"{where} FROM {image}: pin a tag, not latest")
        elif cur is not None:
            cur["ins"].append((i, rest, n))
    names = [s["name"] for s in stages]
    c.check(names == ["build", "runtime"], f"{where} stages must be build then runtime, got {names}")
    if names != ["build", "runtime"]:
        return
    build, runtime = stages
    ignore = dockerignore_patterns(path.with_name(path.name + ".dockerignore"))
    c.check(bool(ignore), f"{where} no {path.name}.dockerignore beside it")

    for st in stages:
        copied, mode_seen = False, None
        shell_pipefail = False
        for i, rest, n in st["ins"]:
            if i == "SHELL":
                shell_pipefail = "pipefail" in rest
            if i == "COPY" and "install-deps.sh" in rest and "--from" not in rest:
                copied = True
            if i == "RUN":
                m = re.search(r"install-deps\.sh\s+(--[a-z]+)", rest)
                if m:
                    mode_seen = m.group(1)
                    c.check(copied, f"{where}:{n} runs install-deps.sh before copying it")
                    c.check(m.group(1) in modes, f"{where}:{n} install-deps.sh {m.group(1)}: the script has {sorted(modes)}")
                    c.check("rm -rf /var/lib/apt/lists" in rest, f"{where}:{n} remove /var/lib/apt/lists in the same RUN")
                if "apt-get install" in rest:
                    c.check("--no-install-recommends" in rest and "/var/lib/apt/lists" in rest,
                            f"{where}:{n} apt-get install: --no-install-recommends and clean the lists")
                if "|" in rest.replace("||", ""):
                    c.check(shell_pipefail, f"{where}:{n} a pipe in RUN needs SHELL [..., -o, pipefail, ...]")
            if i == "ADD":
                c.check(re.match(r"(--\S+\s+)*https://", rest) is not None, f"{where}:{n} ADD only for URLs; COPY local files")
            if i == "WORKDIR":
                c.check(rest.startswith("/"), f"{where}:{n} WORKDIR must be absolute")
            if i == "COPY" and "--from" not in rest:
                srcs = shlex.split(rest)[:-1]
                for s in srcs:
                    if s.startswith("--"):
                        continue
                    rel = s.strip("/") or "."
                    if rel != ".":
                        c.check((dl.REPO / rel).exists(), f"{where}:{n} COPY {s}: no such path")
                        c.check(not ignored(rel, ignore), f"{where}:{n} COPY {s}: excluded by the dockerignore")
        want = "--build" if st is build else "--runtime"
        c.check(mode_seen == want, f"{where} stage {st['name']} must run install-deps.sh {want}, runs {mode_seen}")

    # The build context: everything git tracks under the directories the build reads stays in.
    tracked = dl.run_quiet(["git", "-C", str(dl.REPO), "ls-files"]).stdout.split()
    root_cmake = (dl.REPO / "CMakeLists.txt").read_text(encoding="utf-8")
    needed_dirs = set(re.findall(r"add_subdirectory\((\w+)\)", root_cmake)) - {"tests"}
    needed = [f for f in tracked if f.split("/")[0] in needed_dirs or f in ("CMakeLists.txt", "CMakePresets.json")
              or f.startswith("scripts/")]
    dropped = [f for f in needed if ignored(f, ignore)]
    c.check(len(needed) > 50 and not dropped, f"{where} the dockerignore drops files the build needs: {dropped[:5]}")
    for big in ("build/default/CMakeCache.txt", "tests/tokenizers/node_modules/x", ".git/HEAD"):
        c.check(ignored(big, ignore), f"{where} the dockerignore lets {big.split('/')[0]}/... into the context")

    # CMake in the build stage.
    runs = " ".join(r for i, r, _ in build["ins"] if i == "RUN")
    cfg = re.search(r"cmake --preset (\S+)", runs)
    bld = re.search(r"cmake --build --preset (\S+) --target ((?:[\w.+-]+ ?)+)", runs)
    if c.check(cfg and bld, f"{where} build stage must configure and build with CMake presets"):
        preset = cfg.group(1)
        c.check(preset in presets["configure"], f"{where} cmake --preset {preset}: not in CMakePresets.json")
        c.check(bld.group(1) in presets["build"], f"{where} cmake --build --preset {bld.group(1)}: not a build preset")
        c.check("-DENGRAM_BUILD_TESTS=OFF" in runs, f"{where} build without tests (-DENGRAM_BUILD_TESTS=OFF)")
        binary_dir = presets["binaryDir"].get(preset, "").replace("${sourceDir}/", "").replace("${presetName}", preset)
        targets = bld.group(2).split()
        c.check(set(targets) == {"engramd", "engram-model", "engram-client"},
                f"{where} the image needs engramd, engram-model, engram-client; builds {targets}")
        for t in targets:
            c.check(t in executables, f"{where} --target {t} is not an executable of the CMake files")
            if t in executables:
                out = f"{binary_dir}/{executables[t]}/{t}".replace("//", "/")
                c.check(out in runs, f"{where} {t} is built to {out}, which the build stage does not install")
        if path.name.endswith("cuda"):
            c.check("-DENGRAM_CUDA=ON" in runs, f"{where} the CUDA image must require the CUDA backend (-DENGRAM_CUDA=ON)")
            c.check("CMAKE_CUDA_ARCHITECTURES" in runs, f"{where} pass CMAKE_CUDA_ARCHITECTURES")
        else:
            c.check(preset == "cpu", f"{where} the CPU image should use the cpu preset, uses {preset}")

    # Runtime stage.
    rt = {}
    for i, rest, n in runtime["ins"]:
        rt.setdefault(i, []).append(rest)
    user = (rt.get("USER") or [""])[-1]
    uid = user.split(":")[0]
    c.check(uid.isdigit() and uid != "0", f"{where} runtime USER {user!r} must be a numeric non-root uid")
    runs = " ".join(rt.get("RUN", []))
    c.check(f"--uid {uid}" in runs, f"{where} no useradd --uid {uid} for USER {user}")
    volumes = [v for r in rt.get("VOLUME", []) for v in (exec_form(r) or r.split())]
    env = " ".join(rt.get("ENV", []))
    c.check(volumes == ["/models"], f"{where} VOLUME must be /models, got {volumes}")
    c.check("ENGRAM_CACHE_DIR=/models" in env, f"{where} ENGRAM_CACHE_DIR must be the /models volume (--demo writes there)")
    c.check(re.search(r"install -d -o (\S+) .*?/models", runs) is not None, f"{where} /models must be created owned by the user")
    exposed = " ".join(rt.get("EXPOSE", [])).split()
    c.check(set(exposed) == {GRPC_PORT, METRICS_PORT}, f"{where} EXPOSE {exposed}, expected {GRPC_PORT} and {METRICS_PORT}")
    c.check(rt.get("STOPSIGNAL") == ["SIGTERM"], f"{where} STOPSIGNAL SIGTERM (engramd drains on it)")
    c.check(any("/out/bin/" in r and "--from=build" in r for r in rt.get("COPY", [])), f"{where} runtime must COPY --from=build /out/bin/")
    c.check(re.search(r"install\b.*engramd.*engram-model.*engram-client.*/out/bin/", " ".join(r for i, r, _ in build["ins"] if i == "RUN")) is not None,
            f"{where} the build stage must install engramd, engram-model, engram-client into /out/bin/")
    if path.name.endswith("cuda"):
        c.check("NVIDIA_DRIVER_CAPABILITIES=compute" in env and "NVIDIA_VISIBLE_DEVICES=" in env,
                f"{where} set NVIDIA_VISIBLE_DEVICES and NVIDIA_DRIVER_CAPABILITIES=compute,... for the container toolkit")

    entry = exec_form((rt.get("ENTRYPOINT") or [""])[-1])
    cmd = exec_form((rt.get("CMD") or [""])[-1])
    c.check(entry is not None and cmd is not None, f"{where} ENTRYPOINT and CMD must be exec form (engramd gets SIGTERM)")
    if entry and cmd is not None:
        c.check(entry[0] == "engramd", f"{where} ENTRYPOINT must start engramd, starts {entry[0]}")
        args = entry[1:] + cmd
        c.check(dl.flag_value(args, "listen") == f"0.0.0.0:{GRPC_PORT}", f"{where} engramd must --listen 0.0.0.0:{GRPC_PORT}")
        c.check(dl.flag_value(args, "metrics-port") == METRICS_PORT, f"{where} engramd must --metrics-port {METRICS_PORT}")
        if a.engramd:
            ok, msg = dl.engramd_accepts(a.engramd, args)
            c.check(ok, f"{where} the real engramd rejects ENTRYPOINT + CMD: {msg}")
    hc = (rt.get("HEALTHCHECK") or [""])[-1]
    m = re.match(r"((?:--[a-z-]+=\S+\s+)*)CMD\s+(.*)", hc)
    hcmd = exec_form(m.group(2)) if m else None
    if c.check(hcmd is not None, f"{where} HEALTHCHECK must be `[options] CMD [exec form]`"):
        c.check(hcmd[:2] == ["engram-client", "health"], f"{where} HEALTHCHECK must run engram-client health")
        c.check(dl.flag_value(hcmd, "server") == f"127.0.0.1:{GRPC_PORT}", f"{where} HEALTHCHECK --server must be 127.0.0.1:{GRPC_PORT}")
        c.check("--start-period=" in m.group(1), f"{where} HEALTHCHECK needs a --start-period for the table load")
        if a.engram_client:
            r = dl.run_quiet([a.engram_client] + hcmd[1:] + ["--help"], timeout=30)
            c.check(r.returncode == 0, f"{where} the real engram-client rejects the HEALTHCHECK flags: {r.stderr.strip()}")
    return hcmd


def run_entrypoint(c, a):
    """`docker run IMAGE` without Docker: the runtime stage's ENTRYPOINT + CMD, as its USER, with
    its ENV, engramd, engram-model and engram-client side by side in one bin/ as in
    /usr/local/bin, a fresh directory owned by that user for the /models volume, and the ports
    moved to free loopback ones. The HEALTHCHECK command must turn healthy (the --demo model is
    created in the volume on first start), and SIGTERM must stop engramd with exit 0 within the
    45 s the Dockerfile asks `docker stop` to give it."""
    import os
    import shutil
    import signal
    import socket
    import subprocess
    import tempfile
    import time

    ins = parse_dockerfile(DOCKER / "Dockerfile.cpu")
    runtime_at = max(i for i, (x, r, _) in enumerate(ins) if x == "FROM")
    rt = {}
    for x, r, _ in ins[runtime_at:]:
        rt.setdefault(x, []).append(r)
    entry, cmd = exec_form(rt["ENTRYPOINT"][-1]), exec_form(rt["CMD"][-1])
    hc = rt["HEALTHCHECK"][-1]
    hcmd = exec_form(hc[hc.index("CMD") + 3:].strip())
    uid, _, gid = rt["USER"][-1].partition(":")
    volume = (exec_form(rt["VOLUME"][-1]) or [""])[0]
    ports = []
    for _ in range(2):
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            ports.append(s.getsockname()[1])
    root = Path(tempfile.mkdtemp(prefix="engram-image-"))
    proc = None
    try:
        os.chmod(root, 0o755)
        (root / "bin").mkdir()
        for b in (a.engramd, a.engram_model, a.engram_client):
            shutil.copy2(b, root / "bin" / Path(b).name)
        models = root / volume.strip("/")
        models.mkdir()
        os.chown(models, int(uid), int(gid or uid))
        env = {"PATH": f"{root / 'bin'}:/usr/bin:/bin", "HOME": str(models)}
        for e in rt.get("ENV", []):
            for k, v in re.findall(r"(\w+)=(\S+)", e):
                env[k] = v.replace(volume, str(models)) if v.startswith(volume) else v
        args = entry[1:] + cmd
        for flag, value in (("listen", f"127.0.0.1:{ports[0]}"), ("metrics-port", str(ports[1]))):
            for i, w in enumerate(args):
                if w == f"--{flag}":
                    args[i + 1] = value
                elif w.startswith(f"--{flag}="):
                    args[i] = f"--{flag}={value}"
        run = ["setpriv", f"--reuid={uid}", f"--regid={gid or uid}", "--clear-groups", "--",
               str(root / "bin" / entry[0])] + args
        print("docker run, emulated:", " ".join(run), flush=True)
        log = open(root / "engramd.log", "w")
        proc = subprocess.Popen(run, env=env, cwd=models, stdout=log, stderr=subprocess.STDOUT,
                                stdin=subprocess.DEVNULL, preexec_fn=dl.die_with_parent)
        health = [str(root / "bin" / hcmd[0])] + hcmd[1:]
        health[health.index("--server") + 1] = f"127.0.0.1:{ports[0]}"
        deadline, ok = time.monotonic() + 90, False
        while time.monotonic() < deadline and proc.poll() is None:
            if dl.run_quiet(health, env=env, timeout=30).returncode == 0:
                ok = True
                break
            time.sleep(0.5)
        c.check(ok, f"HEALTHCHECK never passed for ENTRYPOINT + CMD as uid {uid}; engramd log:\n"
                    + (root / "engramd.log").read_text(errors="replace")[-2000:])
        c.check((models / "demo" / "config.json").is_file(), f"--demo created no model in the {volume} volume")
        print(f"HEALTHCHECK healthy: {ok}", flush=True)
        proc.send_signal(signal.SIGTERM)
        try:
            rc = proc.wait(timeout=45)
        except subprocess.TimeoutExpired:
            rc = None
        c.check(rc == 0, f"engramd after SIGTERM: exit {rc} (docker stop --stop-timeout 45)")
    finally:
        if proc is not None and proc.poll() is None:
            proc.kill()
            proc.wait()
        shutil.rmtree(root, ignore_errors=True)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--engramd")
    ap.add_argument("--engram-model")
    ap.add_argument("--engram-client")
    ap.add_argument("--run-entrypoint", action="store_true",
                    help="only run the CPU image's ENTRYPOINT + CMD as its USER (root needed; exit 77 skips)")
    a = ap.parse_args()
    c = dl.Checker("check_docker")
    if a.run_entrypoint:
        import os

        if os.geteuid() != 0 or not (a.engramd and a.engram_model and a.engram_client):
            print("SKIP: needs root (to run as the image's user) and the three binaries")
            sys.exit(77)
        run_entrypoint(c, a)
        c.finish()
    modes, runtime_pkgs = install_deps_modes()
    c.check({"--build", "--runtime"} <= modes, f"scripts/install-deps.sh modes {modes}")
    presets_json = json.loads((dl.REPO / "CMakePresets.json").read_text(encoding="utf-8"))
    presets = {"configure": {p["name"] for p in presets_json["configurePresets"]},
               "build": {p["name"] for p in presets_json["buildPresets"]},
               "binaryDir": {}}
    by_name = {p["name"]: p for p in presets_json["configurePresets"]}
    for name in by_name:
        p = by_name[name]
        while "binaryDir" not in p and "inherits" in p:
            p = by_name[p["inherits"] if isinstance(p["inherits"], str) else p["inherits"][0]]
        presets["binaryDir"][name] = p.get("binaryDir", "")
    executables = cmake_executables()
    for name in ("Dockerfile.cpu", "Dockerfile.cuda"):
        check_dockerfile(c, DOCKER / name, a, modes, executables, presets)
    binaries = [b for b in (a.engramd, a.engram_model, a.engram_client) if b]
    check_runtime_libs(c, binaries, runtime_pkgs)
    c.finish()


if __name__ == "__main__":
    main()
