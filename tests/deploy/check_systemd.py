#!/usr/bin/env python3
"""Checks deploy/systemd/engramd.service and its example environment file engramd.env.

  1. `systemd-analyze verify` (systemd 252, Debian 12) on the unit. verify insists that the
     ExecStart binary exists and is executable, and /usr/local/bin/engramd does not exist on a
     build machine, so the check runs on a copy of the unit whose ExecStart names the engramd
     this build made (--engramd); nothing else changes. verify reports unknown or misspelt
     directives only as warnings with exit 0, so any output at all fails the check.
  2. `systemd-analyze security --offline=yes --threshold=N` on the same copy: the sandboxing
     must keep systemd's exposure score at or below N/10 (default 2.0, "OK").
  3. The hardening this service promises is there (ProtectSystem=strict, NoNewPrivileges, ...).
  4. TimeoutStopSec leaves engramd its drain: > ENGRAMD_DRAIN_TIMEOUT + 10 s.
  5. ExecStart expanded with engramd.env, as systemd expands it, is a command line the real
     engramd accepts (flag names and values through its own parser).
"""
import argparse
import re
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import deploy_lib as dl  # noqa: E402

UNIT = dl.DEPLOY / "systemd/engramd.service"
ENV = dl.DEPLOY / "systemd/engramd.env"

REQUIRED = {
    "ProtectSystem": "strict", "NoNewPrivileges": "yes", "PrivateTmp": "yes", "CapabilityBoundingSet": "",
    "KillSignal": "SIGTERM", "Restart": "on-failure", "LimitMEMLOCK": "infinity", "ProtectHome": "yes",
    "Type": "exec",
}


def seconds(span):
    """A systemd time span ('60', '90s', '1min 30s') in seconds."""
    units = {"": 1, "s": 1, "sec": 1, "m": 60, "min": 60, "h": 3600, "ms": 1e-3}
    total = 0.0
    for num, unit in re.findall(r"([0-9.]+)\s*([a-z]*)", span):
        total += float(num) * units[unit]
    return total


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--engramd", required=True, help="the built engramd")
    ap.add_argument("--systemd-analyze", default="systemd-analyze")
    ap.add_argument("--threshold", type=int, default=20, help="highest exposure score allowed, x10")
    a = ap.parse_args()
    c = dl.Checker("check_systemd")

    unit = dl.read_unit(UNIT)
    svc = dict(unit.get("Service", []))
    env = dl.read_env_file(ENV)

    for key, want in REQUIRED.items():
        c.check(key in svc and svc[key] == want, f"[Service] {key}={want} expected, got {svc.get(key)!r}")
    c.check(svc.get("DynamicUser") == "yes" or "User" in svc, "the service must not run as root (DynamicUser= or User=)")
    cache = svc.get("CacheDirectory")
    c.check(bool(cache) or "ReadWritePaths" in svc, "no writable cache directory (CacheDirectory= or ReadWritePaths=)")
    c.check(f"ENGRAM_CACHE_DIR=/var/cache/{cache}" in [v for k, v in unit["Service"] if k == "Environment"],
            "Environment=ENGRAM_CACHE_DIR must point at the CacheDirectory= (for --demo)")
    c.check(svc.get("EnvironmentFile", "").lstrip("-") == "/etc/engram-serve/engramd.env",
            "EnvironmentFile= must be /etc/engram-serve/engramd.env (the documented install path)")

    drain = float(env.get("ENGRAMD_DRAIN_TIMEOUT", "30"))
    stop = seconds(svc.get("TimeoutStopSec", "90"))
    c.check(stop > drain + 10, f"TimeoutStopSec {stop} s <= ENGRAMD_DRAIN_TIMEOUT {drain} + 10 s")

    exec_start = svc.get("ExecStart", "")
    words = dl.expand_exec(exec_start, env)
    c.check(words[:1] == ["/usr/local/bin/engramd"], f"ExecStart runs {words[:1]}, expected /usr/local/bin/engramd")
    for var in re.findall(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}", exec_start):
        c.check(var in env, f"ExecStart uses ${{{var}}}, which engramd.env does not set")
    ok, msg = dl.engramd_accepts(a.engramd, words[1:])
    c.check(ok, f"the real engramd rejects ExecStart expanded with engramd.env: {msg}")
    c.check(dl.flag_value(words[1:], "drain-timeout") == env.get("ENGRAMD_DRAIN_TIMEOUT"),
            "ExecStart must pass --drain-timeout from ENGRAMD_DRAIN_TIMEOUT")

    engramd = Path(a.engramd).resolve()
    with tempfile.TemporaryDirectory(prefix="engramd-unit-") as tmp:
        text = UNIT.read_text(encoding="utf-8")
        copy = Path(tmp) / UNIT.name
        copy.write_text(text.replace("ExecStart=/usr/local/bin/engramd", f"ExecStart={engramd}", 1), encoding="utf-8")
        r = dl.run_quiet([a.systemd_analyze, "verify", "--man=no", str(copy)], timeout=120)
        out = (r.stdout + r.stderr).strip()
        c.check(r.returncode == 0 and not out, f"systemd-analyze verify: exit {r.returncode}: {out}")
        print(f"systemd-analyze verify {UNIT.name} (ExecStart={engramd}): exit {r.returncode}"
              f"{', no warnings' if not out else ''}")
        r = dl.run_quiet([a.systemd_analyze, "security", "--offline=yes", f"--threshold={a.threshold}",
                          str(copy)], timeout=120)
        score = re.search(r"Overall exposure level for \S+: ([0-9.]+ \S+)", r.stdout)
        c.check(r.returncode == 0 and score is not None,
                f"systemd-analyze security: exposure above {a.threshold / 10} or error: "
                f"{score.group(1) if score else (r.stdout + r.stderr)[-400:]}")
        print(f"systemd-analyze security: exposure {score.group(1) if score else '?'} (allowed <= {a.threshold / 10})")
    c.finish()


if __name__ == "__main__":
    main()
