"""Helpers shared by the deploy checks of tests/deploy (stdlib + Debian's python3-yaml).

What lives here: a failure collector, the real engramd as the judge of a command line
(EngramdAccepts), systemd-style environment files and ExecStart expansion, Kubernetes and
engramd size parsing, the metric names engramd's sources export, and a small PromQL scanner
that lists the metric names an expression selects.
"""
import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
DEPLOY = REPO / "deploy"


class Checker:
    """Collects failures so one run reports all of them; exits 1 if there were any."""

    def __init__(self, name):
        self.name = name
        self.failures = []
        self.passed = 0

    def check(self, cond, what):
        if cond:
            self.passed += 1
        else:
            self.failures.append(what)
            print(f"FAIL: {what}", flush=True)
        return bool(cond)

    def fail(self, what):
        return self.check(False, what)

    def finish(self):
        print(f"{self.name}: {self.passed} checks passed, {len(self.failures)} failed", flush=True)
        sys.exit(1 if self.failures else 0)


def load_yaml_docs(path):
    import yaml  # Debian: python3-yaml

    with open(path, encoding="utf-8") as f:
        return [d for d in yaml.safe_load_all(f) if d is not None]


def load_yaml(path):
    docs = load_yaml_docs(path)
    if len(docs) != 1:
        raise ValueError(f"{path}: expected one YAML document, found {len(docs)}")
    return docs[0]


# --- engramd as the judge of a command line ---------------------------------------------------

def engramd_accepts(engramd, args):
    """Runs the real engramd with `args`, then overrides that make it stop right after parsing:
    a model directory that does not exist, a gRPC port the kernel picks, no metrics port. Every
    flag name and value has then been through engramd's own parser and checks (ParseOptions),
    which reject with exit 2; a clean parse reaches the model load and fails there with exit 1
    and 'loading'. Returns (ok, message)."""
    args = [a for a in args if a != "--demo"]
    probe = list(args) + ["--model=/nonexistent/engram-deploy-check", "--listen=127.0.0.1:0",
                          "--metrics-port=0"]
    try:
        r = subprocess.run([str(engramd)] + probe, capture_output=True, text=True, timeout=60,
                           stdin=subprocess.DEVNULL)
    except subprocess.TimeoutExpired:
        return False, f"engramd {shlex.join(args)}: did not stop within 60 s"
    err = r.stderr.strip()
    if r.returncode == 1 and "loading /nonexistent/engram-deploy-check" in err:
        return True, ""
    why = [l for l in err.splitlines() if not l.startswith("(see ")]
    return False, f"engramd {shlex.join(args)}: exit {r.returncode}: {why[-1] if why else err}"


def flag_value(args, name):
    """The last value given to --name in an argument list (--name=V or --name V), or None."""
    value = None
    for i, a in enumerate(args):
        if a.startswith(f"--{name}="):
            value = a.split("=", 1)[1]
        elif a == f"--{name}" and i + 1 < len(args):
            value = args[i + 1]
    return value


# --- environment files and ExecStart ----------------------------------------------------------

def read_env_file(path):
    """KEY=VALUE lines as systemd's EnvironmentFile= reads them (comments, blank lines, one level
    of single or double quotes)."""
    env = {}
    for n, line in enumerate(Path(path).read_text(encoding="utf-8").splitlines(), 1):
        line = line.strip()
        if not line or line.startswith(("#", ";")):
            continue
        m = re.fullmatch(r"([A-Za-z_][A-Za-z0-9_]*)=(.*)", line)
        if not m:
            raise ValueError(f"{path}:{n}: not KEY=VALUE: {line}")
        key, value = m.groups()
        if len(value) >= 2 and value[0] == value[-1] and value[0] in "'\"":
            value = value[1:-1]
        env[key] = value
    return env


def read_unit(path):
    """A systemd unit as {section: [(key, value), ...]}, continuation lines joined."""
    sections, current, pending = {}, None, ""
    for raw in Path(path).read_text(encoding="utf-8").splitlines():
        line = pending + raw.strip() if pending else raw.strip()
        pending = ""
        if line.endswith("\\"):
            pending = line[:-1] + " "
            continue
        if not line or line.startswith(("#", ";")):
            continue
        if line.startswith("[") and line.endswith("]"):
            current = line[1:-1]
            sections.setdefault(current, [])
            continue
        key, _, value = line.partition("=")
        sections.setdefault(current, []).append((key.strip(), value.strip()))
    return sections


def expand_exec(command, env):
    """systemd's expansion of an Exec*= line: ${VAR} inside a word is replaced in place, a word
    that is exactly $VAR becomes the value split at whitespace (zero or more words)."""
    words = []
    for w in shlex.split(command):
        m = re.fullmatch(r"\$([A-Za-z_][A-Za-z0-9_]*)", w)
        if m:
            words.extend(env.get(m.group(1), "").split())
            continue
        words.append(re.sub(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}", lambda x: env.get(x.group(1), ""), w))
    return words


# --- sizes ------------------------------------------------------------------------------------

_K8S_SUFFIX = {"Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "Ti": 2**40, "Pi": 2**50,
               "k": 10**3, "M": 10**6, "G": 10**9, "T": 10**12, "P": 10**15, "m": 1e-3, "": 1}


def k8s_quantity(q):
    """A Kubernetes resource quantity ('8Gi', '500m', 2) as a number (bytes or cores)."""
    m = re.fullmatch(r"([0-9.]+)([A-Za-z]*)", str(q))
    if not m or m.group(2) not in _K8S_SUFFIX:
        raise ValueError(f"not a Kubernetes quantity: {q!r}")
    return float(m.group(1)) * _K8S_SUFFIX[m.group(2)]


def engramd_bytes(v):
    """engramd's size syntax (--kv-cache-bytes): bytes, or with K/M/G/T (binary multiples)."""
    m = re.fullmatch(r"(\d+)\s*([kmgt]?)(?:i?b)?", str(v).strip().lower())
    if not m:
        raise ValueError(f"not an engramd size: {v!r}")
    return int(m.group(1)) << {"": 0, "k": 10, "m": 20, "g": 30, "t": 40}[m.group(2)]


# --- metric names -----------------------------------------------------------------------------

def source_metric_names():
    """Metric family names the server's sources register ("engram:..." string literals in
    server/), each with the sample-name suffixes a histogram or counter may add."""
    names = set()
    for p in (REPO / "server").rglob("*.cc"):
        names.update(re.findall(r'"(engram:[a-z_0-9]+)"', p.read_text(encoding="utf-8")))
    for p in (REPO / "server").rglob("*.h"):
        names.update(re.findall(r'"(engram:[a-z_0-9]+)"', p.read_text(encoding="utf-8")))
    samples = set(names)
    for n in names:
        samples.update({n + "_bucket", n + "_sum", n + "_count"})
    return names, samples


def exposition_names(text):
    """(families, sample names) of a Prometheus text exposition."""
    families, samples = set(), set()
    for line in text.splitlines():
        if line.startswith("# TYPE "):
            families.add(line.split()[2])
        elif line and not line.startswith("#"):
            samples.add(re.match(r"[A-Za-z_:][A-Za-z0-9_:]*", line).group(0))
    return families, samples


_PROMQL_KEYWORDS = {
    "by", "without", "on", "ignoring", "group_left", "group_right", "bool", "and", "or", "unless",
    "offset", "inf", "nan", "atan2", "sum", "min", "max", "avg", "group", "stddev", "stdvar",
    "count", "count_values", "bottomk", "topk", "quantile", "start", "end",
}


def promql_metric_names(expr):
    """Metric names an expression selects: identifiers that are neither function or aggregation
    calls, keywords, label names (inside {...} or by/without/on/ignoring/group_x (...)), string
    literals, durations nor numbers. A {__name__="..."} selector is read too."""
    names = set(re.findall(r'__name__\s*=\s*"([^"]+)"', expr))
    s = re.sub(r'"(?:[^"\\]|\\.)*"|\'(?:[^\'\\]|\\.)*\'|`[^`]*`', '""', expr)
    s = re.sub(r"\{[^}]*\}", " ", s)
    s = re.sub(r"\[[^\]]*\]", " ", s)
    s = re.sub(r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", r" \1 ", s)
    tokens = re.finditer(r"\d+(?:\.\d+)?(?:e[+-]?\d+)?[a-zA-Z]*|[a-zA-Z_:][a-zA-Z0-9_:]*", s)
    for t in tokens:
        word = t.group(0)
        if word[0].isdigit() or word.lower() in _PROMQL_KEYWORDS:
            continue
        if re.match(r"\s*\(", s[t.end():]):
            continue  # a function call
        names.add(word)
    return names


def run_quiet(cmd, **kw):
    return subprocess.run(cmd, capture_output=True, text=True, stdin=subprocess.DEVNULL, **kw)


def die_with_parent():
    """preexec_fn for test children: the kernel kills them if the test process dies (also when
    ctest SIGKILLs it at its timeout), so no engramd or Prometheus outlives a test."""
    import ctypes
    import signal

    libc = ctypes.CDLL("libc.so.6", use_errno=True)
    libc.prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    os.setsid()
