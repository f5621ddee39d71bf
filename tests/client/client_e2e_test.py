#!/usr/bin/python3
"""engram-client against a real engramd on loopback ports (issue 5, "Tests").

One group per ctest entry, each with its own server, so ctest -j runs them side by side:

  main   generate (text, --json, --seed, --max-tokens), chat with piped stdin (two turns, the
         second request carrying both, checked against the server's Tokenize), bench (8 x 32,
         every metric key), tokenize, info, INVALID_ARGUMENT and usage errors, health (loading,
         SERVING, closed port, draining after SIGTERM), Ctrl-C on generate (exit 130, the server
         logs finish=cancelled and its running gauge returns to 0), and the Python example
         client (client/python/generate_example.py) streaming the same text as generate;
  queue  bench against --max-num-seqs 1 --max-queued-requests 1: RESOURCE_EXHAUSTED failures
         counted by code, completed + failed = the number of prompts;
  auth   --api-key-file: UNAUTHENTICATED without the key, success with --api-key-file or
         $ENGRAM_API_KEY, health answered without a key (the container health check).

Only the standard library, plus Debian's python3-grpcio for the checks that call the API
directly (the chat's Tokenize comparison, the Python example); they are skipped, and say so,
when it or the generated stubs are missing. gRPC runs only in child processes: the script
stays single-threaded, so forking its children (with PR_SET_PDEATHSIG: they die with it) cannot
deadlock. Every child is also killed and reaped on every exit path; --deadline makes a hang
print where it is, under ctest's timeout. Timeouts are generous and every
wait polls, so a loaded 2-core machine passes and a fast one never sleeps them out.
"""
import argparse
import contextlib
import ctypes
import faulthandler
import json
import math
import os
import re
import select
import shutil
import signal
import socket
import subprocess
import sys
import time
import traceback

START_TIMEOUT = 90  # engramd: model load on a loaded machine
CALL_TIMEOUT = 60  # one engram-client command
WAIT_TIMEOUT = 20  # a state change we poll for
# The tiny model with a long context, so that a stream of --max-tokens 0 --ignore-eos outlasts
# the drain timeout and the test's signals on any machine; the name is the served model's name.
LONG_MODEL, LONG_CONTEXT = "tiny64k", 65536

_libc = ctypes.CDLL(None, use_errno=True)
PR_SET_PDEATHSIG = 1


def _die_with_parent():
    # In the child between fork and exec: SIGKILL when the parent (this script) dies, however.
    _libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL)


class Failure(Exception):
    pass


def check(cond, what, detail=""):
    if not cond:
        raise Failure(what + (("\n    " + detail.replace("\n", "\n    ")) if detail else ""))


def poll(pred, timeout, interval=0.05):
    end = time.monotonic() + timeout
    while True:
        v = pred()
        if v:
            return v
        if time.monotonic() >= end:
            return v
        time.sleep(interval)


def free_port():
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Result:
    def __init__(self, argv, rc, out, err):
        self.argv, self.rc, self.out, self.err = argv, rc, out, err

    def __str__(self):
        cmd = " ".join(a if re.fullmatch(r"[\w@%+=:,./-]+", a) else repr(a) for a in self.argv)
        return (f"$ {cmd}\n  exit {self.rc}\n  stdout: {self.out[-1500:]!r}\n"
                f"  stderr: {self.err[-1500:]!r}")


class Env:
    """The binaries, the work directory and every child process (reaped in close())."""

    def __init__(self, args, workdir):
        self.args = args
        self.workdir = workdir
        self.client = args.client
        self.procs = []
        self.notes = []

    def popen(self, argv, **kw):
        p = subprocess.Popen(argv, preexec_fn=_die_with_parent, **kw)
        self.procs.append(p)
        return p

    def run(self, argv, stdin_text=None, timeout=CALL_TIMEOUT, env=None):
        p = self.popen(argv, stdin=subprocess.PIPE if stdin_text is not None else
                       subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                       env=env)
        try:
            out, err = p.communicate(
                stdin_text.encode() if stdin_text is not None else None, timeout=timeout)
        except subprocess.TimeoutExpired:
            p.kill()
            out, err = p.communicate()
            r = Result(argv, None, out.decode(errors="replace"), err.decode(errors="replace"))
            raise Failure(f"timed out after {timeout} s: {r}")
        return Result(argv, p.returncode, out.decode(errors="replace"),
                      err.decode(errors="replace"))

    def cli(self, *argv, **kw):
        return self.run([self.client, *argv], **kw)

    def close(self):
        for p in self.procs:
            if p.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    p.kill()
        for p in self.procs:
            with contextlib.suppress(Exception):
                p.wait(timeout=10)


class Server:
    """One engramd on free loopback ports; its stderr (the request log) in a file."""

    def __init__(self, env, name, model_dir, *flags):
        self.env, self.name = env, name
        self.log_path = os.path.join(env.workdir, f"{name}.engramd.log")
        for attempt in range(3):
            self.port, self.metrics_port = free_port(), free_port()
            self.log = open(self.log_path, "wb")
            self.proc = env.popen(
                [env.args.engramd, "--model", model_dir, "--listen", self.addr,
                 "--metrics-port", str(self.metrics_port), *flags],
                stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=self.log)
            # Listening (or failed to bind, when another process took the port meanwhile).
            poll(lambda: "listening on" in self.text() or self.proc.poll() is not None,
                 START_TIMEOUT)
            if self.proc.poll() is None and "listening on" in self.text():
                return
            self.stop(signal.SIGKILL)
            if attempt == 2:
                raise Failure(f"engramd {name} did not start:\n{self.text()}")

    @property
    def addr(self):
        return f"127.0.0.1:{self.port}"

    def text(self):
        with open(self.log_path, "rb") as f:
            return f.read().decode(errors="replace")

    def wait_serving(self):
        def serving():
            check(self.proc.poll() is None,
                  f"engramd {self.name} exited with {self.proc.returncode}", self.text())
            return self.env.cli("health", "--server", self.addr, "--quiet", "--deadline",
                                "5").rc == 0
        check(poll(serving, START_TIMEOUT, 0.1), f"engramd {self.name} never became SERVING",
              self.text())

    def request_lines(self):
        return [l for l in self.text().splitlines() if l.startswith("engramd: request ")]

    def request_line(self, request_id, timeout=WAIT_TIMEOUT):
        """The log line of a finished request (written just after its last message)."""
        pat = re.compile(rf"^engramd: request {re.escape(request_id)} (.*)$", re.M)
        m = poll(lambda: pat.search(self.text()), timeout)
        check(m, f"engramd logged no line for request {request_id}", self.text()[-3000:])
        return dict(kv.split("=", 1) for kv in m.group(1).split())

    def metric(self, name):
        """A gauge or counter from /metrics (the first sample named `name`), or None."""
        import urllib.request
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.metrics_port}/metrics",
                                        timeout=5) as r:
                body = r.read().decode()
        except OSError:
            return None
        m = re.search(rf"^{re.escape(name)}(?:{{[^}}]*}})? (\S+)$", body, re.M)
        return float(m.group(1)) if m else None

    def stop(self, sig=signal.SIGTERM, timeout=WAIT_TIMEOUT):
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.log.close()


def create_model(env, name, *flags):
    out = os.path.join(env.workdir, name)
    r = env.run([env.args.engram_model, "create", "--preset", "tiny", "--out", out, *flags])
    check(r.rc == 0, "engram-model create failed", str(r))
    return out


def chat_token_counts(env, addr, conversations):
    """Tokenize's count for each conversation (a list of (role, content)) rendered with the
    chat template, or None when Python gRPC or the stubs are unavailable. Asked from a child
    process: gRPC starts threads, and this process must stay single-threaded to fork safely."""
    if not env.args.proto_py:
        env.notes.append("no --proto-py: Tokenize comparisons skipped")
        return None
    r = env.run([sys.executable, os.path.abspath(__file__), "--tokenize-chat", addr,
                 "--proto-py", env.args.proto_py], stdin_text=json.dumps(conversations))
    if r.rc == 3:
        env.notes.append(f"python grpc or the stubs unavailable: Tokenize comparisons skipped "
                         f"({r.err.strip()})")
        return None
    check(r.rc == 0, "Tokenize from Python failed", str(r))
    return json.loads(r.out)


def tokenize_chat_main(addr, proto_py):
    """The child side of chat_token_counts: JSON conversations on stdin, counts on stdout."""
    sys.path.insert(0, proto_py)
    try:
        import grpc
        from engram.v1 import inference_pb2 as pb
        from engram.v1 import inference_pb2_grpc as pb_grpc
    except ImportError as e:
        print(e, file=sys.stderr)
        return 3
    counts = []
    with grpc.insecure_channel(addr) as ch:
        stub = pb_grpc.InferenceServiceStub(ch)
        for conversation in json.load(sys.stdin):
            req = pb.TokenizeRequest()
            for role, content in conversation:
                req.messages.messages.add(role=role, content=content)
            req.messages.add_generation_prompt = True
            counts.append(stub.Tokenize(req, timeout=CALL_TIMEOUT).count)
    print(json.dumps(counts))
    return 0


class Stream:
    """A long `engram-client generate` in the background, read as it streams."""

    def __init__(self, env, server, request_id, *extra):
        self.argv = [env.client, "generate", "--server", server.addr, "--request-id", request_id,
                     "--max-tokens", "0", "--ignore-eos", *extra, "Once upon a time"]
        self.proc = env.popen(self.argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE)
        self.out = b""

    def wait_output(self, timeout=WAIT_TIMEOUT):
        """Until the first streamed bytes arrive; the process must still be running."""
        fd = self.proc.stdout.fileno()
        end = time.monotonic() + timeout
        while not self.out and time.monotonic() < end:
            ready, _, _ = select.select([fd], [], [], 0.1)
            if ready:
                chunk = os.read(fd, 65536)
                if not chunk:
                    break
                self.out += chunk
        if not self.out or self.proc.poll() is not None:
            r = self.finish(signal.SIGKILL)
            raise Failure(("generate streamed nothing" if not self.out else
                           "generate ended before the test could interrupt it") + f"\n    {r}")

    def finish(self, sig=None, timeout=WAIT_TIMEOUT):
        if sig is not None and self.proc.poll() is None:
            self.proc.send_signal(sig)
        try:
            out, err = self.proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            out, err = self.proc.communicate()
            raise Failure(f"generate did not end within {timeout} s of the signal")
        return Result(self.argv, self.proc.returncode, (self.out + out).decode(errors="replace"),
                      err.decode(errors="replace"))


# ---------------------------------------------------------------------------------------------
# Group "main"

BENCH_KEYS = [
    "date", "backend", "server", "model_id", "dataset", "num_prompts", "request_rate",
    "burstiness", "max_concurrency", "seed", "input_len", "output_len", "ignore_eos", "slo",
    "duration", "completed", "failed", "failed_by_code", "error_examples", "total_input_tokens",
    "total_output_tokens", "request_throughput", "request_goodput", "good_completed",
    "output_throughput", "total_token_throughput", "max_output_tokens_per_s",
    "peak_concurrency"] + [
    f"{stat}_{m}_ms" for m in ("ttft", "tpot", "itl", "e2el")
    for stat in ("mean", "median", "std", "p90", "p99")] + [
    f"{m}_count" for m in ("ttft", "tpot", "itl", "e2el")]


def t_health_loading(env, srv):
    # Right after "listening", the model is loading: health must say NOT_SERVING (exit 1). The
    # tiny model can finish loading before the call lands; only a SERVING answer then is fine.
    loaded_before = "engramd: serving" in srv.text()
    r = env.cli("health", "--server", srv.addr)
    if r.rc == 0:
        check(r.out.strip() == "SERVING", "health exit 0 must print SERVING", str(r))
        env.notes.append("health while loading: the load finished first (not observed)")
        return
    check(not loaded_before, "health NOT_SERVING after the server logged that it serves",
          f"{r}\n{srv.text()}")
    check(r.rc == 1 and r.out.strip() == "NOT_SERVING",
          "health while loading: expected NOT_SERVING and exit 1", str(r))


def t_health_serving(env, srv):
    r = env.cli("health", "--server", srv.addr)
    check(r.rc == 0 and r.out.strip() == "SERVING", "health: expected SERVING, exit 0", str(r))
    r = env.cli("health", "--server", srv.addr, "--service", "engram.v1.InferenceService")
    check(r.rc == 0 and r.out.strip() == "SERVING", "health --service: expected SERVING", str(r))
    r = env.cli("health", "--server", srv.addr, "--quiet")
    check(r.rc == 0 and r.out == "", "health --quiet: exit 0 and no output", str(r))


def t_closed_port(env, srv):
    port = free_port()  # nothing listens there
    for cmd in (["health"], ["info"], ["tokenize", "x"], ["generate", "x"]):
        r = env.cli(*cmd, "--server", f"127.0.0.1:{port}", "--deadline", "10")
        check(r.rc == 1, f"{cmd[0]} against a closed port: expected exit 1", str(r))
        check(f"engram-client {cmd[0]}: UNAVAILABLE:" in r.err,
              f"{cmd[0]} against a closed port: stderr must name UNAVAILABLE", str(r))


def t_generate_text(env, srv):
    base = ["generate", "--server", srv.addr, "--max-tokens", "24", "--seed", "7",
            "Once upon a time"]
    a, b = env.cli(*base), env.cli(*base)
    for r in (a, b):
        check(r.rc == 0, "generate: expected exit 0", str(r))
        check(r.out.strip() != "", "generate: empty text", str(r))
        check(r.out.endswith("\n"), "generate: text must end with a newline", str(r))
    check(a.out == b.out, "generate --seed 7 twice: different text", f"{a}\n{b}")
    c = env.cli(*base[:-2], "8", "Once upon a time")
    check(c.rc == 0, "generate --seed 8 failed", str(c))
    check(c.out != a.out, "generate --seed 7 and --seed 8 gave the same 24 tokens", f"{a}\n{c}")
    # --stats: the finish reason and usage on stderr, the text alone on stdout.
    r = env.cli("generate", "--server", srv.addr, "--max-tokens", "5", "--ignore-eos", "--stats",
                "--seed", "1", "Hello")
    check(r.rc == 0 and "finish: length" in r.err and "completion 5 tokens" in r.err,
          "generate --stats --max-tokens 5 --ignore-eos", str(r))


def t_generate_json(env, srv):
    argv = ["generate", "--server", srv.addr, "--max-tokens", "16", "--ignore-eos", "--seed",
            "11", "--request-id", "json-1", "Once upon a time"]
    r = env.cli(*argv, "--json")
    check(r.rc == 0, "generate --json: expected exit 0", str(r))
    lines = r.out.split("\n")[:-1]  # JSON escapes control characters: one message a line
    check(len(lines) >= 2, "generate --json: expected several messages (streaming)", str(r))
    msgs = []
    for i, line in enumerate(lines):
        try:
            msgs.append(json.loads(line))
        except ValueError as e:
            raise Failure(f"generate --json line {i} is not JSON ({e}): {line!r}")
    for m in msgs[:-1]:
        check(m["finish_reason"] == "FINISH_REASON_UNSPECIFIED" and "usage" not in m,
              "only the last --json line may carry finish_reason and usage", json.dumps(m))
        check(m["request_id"] == "json-1", "--request-id not echoed", json.dumps(m))
    last = msgs[-1]
    check(last["finish_reason"] == "FINISH_REASON_LENGTH",
          "last --json line: finish_reason must be FINISH_REASON_LENGTH", json.dumps(last))
    u = last.get("usage", {})
    check(u.get("completion_tokens") == 16 and u.get("prompt_tokens", 0) > 0,
          "last --json line: usage with 16 completion tokens and the prompt's", json.dumps(last))
    for k in ("queue_time_seconds", "time_to_first_token_seconds", "e2e_seconds"):
        check(isinstance(u.get(k), (int, float)), f"usage.{k} missing", json.dumps(last))
    ids = [t for m in msgs for t in m["token_ids"]]
    check(len(ids) == 16, "--max-tokens 16 --ignore-eos: expected 16 token ids", str(ids))
    # Text mode with the same seed prints the same text: the messages' texts joined.
    t = env.cli(*argv)
    joined = "".join(m["text"] for m in msgs)
    check(t.rc == 0 and t.out.rstrip("\n") == joined.rstrip("\n"),
          "generate text mode and --json disagree for the same seed", f"{t}\njson text {joined!r}")
    line = srv.request_line("json-1")
    check(line["finish"] == "length" and line["completion_tokens"] == "16",
          "engramd's log line for json-1", str(line))


def t_generate_token_ids(env, srv):
    r = env.cli("tokenize", "--server", srv.addr, "--ids", "Hello world")
    check(r.rc == 0 and re.fullmatch(r"\d+(,\d+)*\n", r.out), "tokenize --ids", str(r))
    ids = r.out.strip()
    g = env.cli("generate", "--server", srv.addr, "--token-ids", ids, "--max-tokens", "4",
                "--ignore-eos", "--json")
    check(g.rc == 0, "generate --token-ids from tokenize --ids", str(g))
    last = json.loads(g.out.split("\n")[-2])
    check(last["usage"]["prompt_tokens"] == len(ids.split(",")),
          "generate --token-ids: prompt_tokens must equal the ids given", f"{g}\nids {ids}")


def t_invalid_argument(env, srv):
    # The server's INVALID_ARGUMENT: a token id outside the vocabulary (the tiny model has 512).
    r = env.cli("generate", "--server", srv.addr, "--token-ids", "1,2,99999")
    check(r.rc == 1, "out-of-vocabulary token id: expected exit 1", str(r))
    check("engram-client generate: INVALID_ARGUMENT:" in r.err and "99999" in r.err,
          "stderr must name INVALID_ARGUMENT and the bad id", str(r))
    # The client rejects what it can before any call: usage errors exit 2 and name the flag.
    for flag, value in (("--temperature", "-1"), ("--top-p", "2"), ("--top-p", "0"),
                        ("--presence-penalty", "3")):
        r = env.cli("generate", "--server", srv.addr, flag, value, "x")
        check(r.rc == 2 and flag in r.err, f"generate {flag} {value}: expected usage exit 2",
              str(r))
    r = env.cli("generate", "--server", srv.addr)
    check(r.rc == 2 and "PROMPT" in r.err, "generate without a prompt: usage exit 2", str(r))
    r = env.cli("frobnicate")
    check(r.rc == 2 and "unknown command" in r.err, "unknown command: exit 2", str(r))


def t_tokenize_info(env, srv):
    r = env.cli("tokenize", "--server", srv.addr, "Hello world")
    check(r.rc == 0, "tokenize: exit 0", str(r))
    rows = r.out.split("\n")[:-1]
    m = re.fullmatch(r"(\d+) tokens \(max_model_len (\d+)\)", rows[-1])
    check(m and int(m.group(1)) == len(rows) - 1 and int(m.group(2)) == LONG_CONTEXT,
          "tokenize: one row per token, then the count and max_model_len", str(r))
    pieces = [json.loads(re.match(r"\s*\d+\s+\d+\s+(.*)$", row).group(1)) for row in rows[:-1]]
    check("".join(pieces) == "Hello world", "tokenize: the pieces must spell the text", str(r))
    j = env.cli("tokenize", "--server", srv.addr, "--json", "Hello world")
    check(j.rc == 0, "tokenize --json", str(j))
    d = json.loads(j.out)
    check(d["count"] == len(d["token_ids"]) == len(rows) - 1, "tokenize --json count", j.out)
    c = env.cli("tokenize", "--server", srv.addr, "--chat", "--json", "Hello world")
    check(c.rc == 0 and json.loads(c.out)["count"] > d["count"],
          "tokenize --chat: the template adds tokens around the message", str(c))

    r = env.cli("info", "--server", srv.addr)
    check(r.rc == 0, "info: exit 0", str(r))
    for pat in (rf"^model\s+{LONG_MODEL}$", r"^vocab\s+512 \(eos \d+\)$",
                rf"^max_model_len\s+{LONG_CONTEXT}$",
                r"^engram layers\s+0,1 ", r"^chat template\s+yes$", r"^layer\s+rows\s+dim"):
        check(re.search(pat, r.out, re.M), f"info: no line matching {pat}", str(r))
    j = env.cli("info", "--server", srv.addr, "--json")
    check(j.rc == 0, "info --json", str(j))
    d = json.loads(j.out)
    check(d["model_name"] == LONG_MODEL and d["vocab_size"] == 512 and
          d["max_model_len"] == LONG_CONTEXT and len(d["tables"]) == 2, "info --json fields", j.out)


def t_chat(env, srv):
    before = len(srv.request_lines())
    # --stop "\n": a reply never holds a newline, so the replies are exactly the output lines.
    r = env.cli("chat", "--server", srv.addr, "--max-tokens", "12", "--seed", "5", "--stop", "\n",
                "--no-history", stdin_text="Hello there\nTell me more\n")
    check(r.rc == 0, "chat with piped stdin: exit 0", str(r))
    check(r.out.endswith("\n"), "chat: each reply ends with a newline", str(r))
    replies = r.out[:-1].split("\n")
    check(len(replies) == 2, "chat: expected two replies, one per line", str(r))
    lines = poll(lambda: len(srv.request_lines()) >= before + 2 and srv.request_lines(),
                 WAIT_TIMEOUT)
    check(lines, "engramd logged fewer than two chat requests", srv.text()[-3000:])
    got = [int(re.search(r"prompt_tokens=(\d+)", l).group(1)) for l in lines[before:before + 2]]
    check(got[1] > got[0], "chat: the second request must be longer (it carries both turns)",
          f"prompt_tokens {got}")
    want = chat_token_counts(env, srv.addr, [
        [("user", "Hello there")],
        [("user", "Hello there"), ("assistant", replies[0]), ("user", "Tell me more")],
        [("system", "Be brief."), ("user", "Hi")]])
    if want is not None:
        check(got == want[:2], "chat: each request's prompt must be the whole conversation so "
              "far (server prompt_tokens vs Tokenize of the expected messages)",
              f"server {got}, expected {want[:2]}, replies {replies!r}")
    # /system and /reset: after /reset only the system prompt and the new turn are sent.
    before = len(srv.request_lines())
    r = env.cli("chat", "--server", srv.addr, "--max-tokens", "4", "--stop", "\n", "--no-history",
                stdin_text="/system Be brief.\nHi\n/reset\nHi\n/exit\nnever sent\n")
    # count("\n"), not splitlines(): a reply may hold \v, \f or \x1c..\x1e, which it splits at.
    check(r.rc == 0 and r.out.count("\n") == 2, "chat /system, /reset, /exit", str(r))
    lines = poll(lambda: len(srv.request_lines()) >= before + 2 and srv.request_lines(),
                 WAIT_TIMEOUT)
    check(lines, "engramd logged fewer than two chat requests", srv.text()[-3000:])
    got = [int(re.search(r"prompt_tokens=(\d+)", l).group(1)) for l in lines[before:]]
    check(len(got) == 2 and got[0] == got[1] and (want is None or got[0] == want[2]),
          "chat /reset: the second request must start over (system prompt and one turn)",
          f"{got} vs {want}")
    r = env.cli("chat", "--server", srv.addr, "--no-history", stdin_text="/bogus\n")
    check(r.rc == 2 and "unknown command /bogus" in r.err, "chat: unknown /command exits 2",
          str(r))


def t_bench(env, srv):
    jpath = os.path.join(env.workdir, "bench.json")
    argv = ["bench", "--server", srv.addr, "--concurrency", "8", "--num-prompts", "32",
            "--input-len", "16,64", "--max-tokens", "16", "--ignore-eos", "--seed", "3",
            "--slo-ttft-ms", "60000", "--slo-tpot-ms", "60000"]
    r = env.cli(*argv, "--json", jpath, "--json-per-request")
    check(r.rc == 0, "bench: exit 0", str(r))
    for label in ("Serving Benchmark Result", "Successful requests:", "Failed requests:",
                  "Maximum request concurrency:", "Request goodput (req/s):",
                  "Mean TTFT (ms):", "P99 ITL (ms):", "Median E2EL (ms):", "Mean TPOT (ms):"):
        check(label in r.out, f"bench table: no {label!r}", str(r))
    check(re.search(r"^Successful requests:\s+32$", r.out, re.M) and
          re.search(r"^Failed requests:\s+0$", r.out, re.M), "bench: 32 ok, 0 failed", str(r))
    with open(jpath) as f:
        d = json.load(f)
    missing = [k for k in BENCH_KEYS if k not in d]
    check(not missing, f"bench --json: missing keys {missing}", json.dumps(d)[:3000])
    check(d["completed"] == 32 and d["failed"] == 0 and d["failed_by_code"] == {},
          "bench --json: completed 32, failed 0", json.dumps(d)[:2000])
    check(d["max_concurrency"] == 8 and 1 <= d["peak_concurrency"] <= 8,
          "bench: peak concurrency within --concurrency 8", json.dumps(d)[:2000])
    check(d["total_output_tokens"] == 32 * 16, "bench: --max-tokens 16 --ignore-eos: 512 tokens",
          str(d["total_output_tokens"]))
    check(32 * 16 <= d["total_input_tokens"] <= 32 * 64, "bench: input tokens within 16..64 each",
          str(d["total_input_tokens"]))
    check(d["good_completed"] == 32 and d["request_goodput"] > 0,
          "bench: every request meets generous SLOs", json.dumps(d)[:2000])
    for k in ("duration", "request_throughput", "output_throughput", "total_token_throughput",
              "mean_ttft_ms", "mean_tpot_ms", "mean_itl_ms", "mean_e2el_ms"):
        check(isinstance(d[k], (int, float)) and d[k] > 0, f"bench --json: {k} must be > 0",
              str(d[k]))
    for m in ("ttft", "tpot", "itl", "e2el"):
        check(d[f"median_{m}_ms"] <= d[f"p90_{m}_ms"] <= d[f"p99_{m}_ms"],
              f"bench: {m} percentiles out of order", json.dumps(d)[:2000])
    check(d["ttft_count"] == 32 and d["tpot_count"] == 32 and d["itl_count"] > 0,
          "bench: one TTFT and TPOT per request", json.dumps(d)[:2000])
    check(d["mean_ttft_ms"] <= d["mean_e2el_ms"], "bench: TTFT must not exceed E2E latency")
    check(math.isclose(d["output_throughput"] * d["duration"], d["total_output_tokens"],
                       rel_tol=1e-9),
          "bench: output throughput = output tokens / duration", json.dumps(d)[:2000])
    check(len(d["input_lens"]) == 32 and sum(d["output_lens"]) == 512 and
          sum(d["input_lens"]) == d["total_input_tokens"] and not any(d["errors"]),
          "bench --json-per-request lists", json.dumps(d)[:2000])
    # The seed names the workload: a second run sends the same prompts.
    r2 = env.cli(*argv, "--json", jpath)
    check(r2.rc == 0, "bench (second run)", str(r2))
    with open(jpath) as f:
        d2 = json.load(f)
    check(d2["total_input_tokens"] == d["total_input_tokens"],
          "bench --seed 3 twice: different prompts", f"{d['total_input_tokens']} vs "
          f"{d2['total_input_tokens']}")
    # Open loop with Poisson arrivals.
    r = env.cli("bench", "--server", srv.addr, "--request-rate", "200", "--num-prompts", "8",
                "--input-len", "8", "--max-tokens", "4", "--warmup", "2")
    check(r.rc == 0 and re.search(r"^Successful requests:\s+8$", r.out, re.M) and
          re.search(r"^Request rate configured \(RPS\):\s+200\.00$", r.out, re.M),
          "bench --request-rate", str(r))


def t_sigint(env, srv):
    s = Stream(env, srv, "sigint-1")
    s.wait_output()
    r = s.finish(signal.SIGINT)
    check(r.rc == 130, "generate after Ctrl-C: expected exit 130", str(r))
    check("cancelled" in r.err, "generate after Ctrl-C: stderr must say cancelled", str(r))
    line = srv.request_line("sigint-1")
    check(line["finish"] == "cancelled", "engramd must log finish=cancelled", str(line))
    running = poll(lambda: srv.metric("engram:num_requests_running") == 0.0, WAIT_TIMEOUT)
    check(running, "engram:num_requests_running must return to 0 after the cancel",
          str(srv.metric("engram:num_requests_running")))


def t_python_example(env, srv):
    if not env.args.proto_py or not env.args.example:
        env.notes.append("python example not run (no --proto-py / --example)")
        return
    ex = [sys.executable, env.args.example, "--server", srv.addr, "--max-tokens", "16",
          "--seed", "7", "Once upon a time"]
    r = env.run(ex + ["--proto-py", env.args.proto_py])
    check(r.rc == 0 and r.out.strip() != "", "python example: exit 0 and text", str(r))
    check("finish: FINISH_REASON_LENGTH" in r.err and "completion 16 tokens" in r.err,
          "python example: the finish line on stderr", str(r))
    g = env.cli("generate", "--server", srv.addr, "--max-tokens", "16", "--seed", "7",
                "Once upon a time")
    check(r.out.rstrip("\n") == g.out.rstrip("\n"),
          "python example and engram-client generate: same seed, different text", f"{r}\n{g}")
    # The stubs' directory from the environment instead of the flag.
    e = dict(os.environ, ENGRAM_PROTO_PY=env.args.proto_py)
    r = env.run(ex, env=e)
    check(r.rc == 0 and r.out == g.out, "python example with $ENGRAM_PROTO_PY", str(r))
    r = env.run(ex[:3] + [f"127.0.0.1:{free_port()}"] + ex[4:] + ["--proto-py", env.args.proto_py])
    check(r.rc == 1 and "UNAVAILABLE" in r.err, "python example against a closed port", str(r))


def t_drain(env, srv):
    # A long stream holds the drain open (--drain-timeout 3); meanwhile health says NOT_SERVING
    # and new calls get UNAVAILABLE.
    s = Stream(env, srv, "drain-1")
    s.wait_output()
    srv.proc.send_signal(signal.SIGTERM)
    check(poll(lambda: "draining" in srv.text(), WAIT_TIMEOUT), "engramd did not start draining",
          srv.text()[-2000:])
    h = env.cli("health", "--server", srv.addr)
    alive = srv.proc.poll() is None
    check(h.rc == 1 and h.out.strip() == "NOT_SERVING",
          "health while draining: expected NOT_SERVING, exit 1", str(h))
    check(alive, "engramd exited before the drain could be observed", srv.text()[-2000:])
    g = env.cli("generate", "--server", srv.addr, "--max-tokens", "2", "x")
    check(g.rc == 1 and "UNAVAILABLE" in g.err, "generate while draining: UNAVAILABLE", str(g))
    r = s.finish(timeout=WAIT_TIMEOUT + 3)
    # Cut at the drain timeout (UNAVAILABLE), or finished first on a very fast machine.
    check(r.rc == 0 or (r.rc == 1 and "UNAVAILABLE" in r.err),
          "the stream open during the drain: exit 0, or 1 with UNAVAILABLE", str(r))
    try:
        rc = srv.proc.wait(WAIT_TIMEOUT)
    except subprocess.TimeoutExpired:
        raise Failure("engramd did not exit after the drain timeout")
    check(rc == 0, f"engramd exit code after SIGTERM: {rc}", srv.text()[-2000:])
    h = env.cli("health", "--server", srv.addr)
    check(h.rc == 1 and "UNAVAILABLE" in h.err, "health after the server exited", str(h))


def group_main(env):
    model = create_model(env, LONG_MODEL, "--max-position", str(LONG_CONTEXT))
    srv = Server(env, "main", model, "--drain-timeout", "3")
    yield "health while loading", lambda: t_health_loading(env, srv)
    srv.wait_serving()
    yield "health SERVING", lambda: t_health_serving(env, srv)
    yield "health and calls against a closed port", lambda: t_closed_port(env, srv)
    yield "generate: streams, --seed, --max-tokens, --stats", lambda: t_generate_text(env, srv)
    yield "generate --json", lambda: t_generate_json(env, srv)
    yield "generate --token-ids from tokenize --ids", lambda: t_generate_token_ids(env, srv)
    yield "errors: INVALID_ARGUMENT and usage", lambda: t_invalid_argument(env, srv)
    yield "tokenize and info", lambda: t_tokenize_info(env, srv)
    yield "chat with piped stdin", lambda: t_chat(env, srv)
    yield "bench 8 x 32", lambda: t_bench(env, srv)
    yield "generate Ctrl-C", lambda: t_sigint(env, srv)
    yield "python example client", lambda: t_python_example(env, srv)
    yield "health while draining (SIGTERM)", lambda: t_drain(env, srv)


# ---------------------------------------------------------------------------------------------
# Group "queue"

def t_queue(env, srv):
    jpath = os.path.join(env.workdir, "queue.json")
    n = 24
    # Every request at once: one runs, one waits, the rest find the queue full.
    r = env.cli("bench", "--server", srv.addr, "--num-prompts", str(n), "--input-len", "32,64",
                "--max-tokens", "64", "--ignore-eos", "--json", jpath, "--json-per-request")
    check(r.rc == 0, "bench against a full queue: exit 0 (some requests completed)", str(r))
    with open(jpath) as f:
        d = json.load(f)
    check(d["failed"] > 0, "bench: expected RESOURCE_EXHAUSTED failures", json.dumps(d)[:2000])
    check(d["failed_by_code"] == {"RESOURCE_EXHAUSTED": d["failed"]},
          "bench: every failure must be RESOURCE_EXHAUSTED", json.dumps(d["failed_by_code"]))
    check(d["completed"] + d["failed"] == n, f"bench: completed + failed must be {n}",
          f"{d['completed']} + {d['failed']}")
    # At least the first request (later ones may all arrive before it leaves the queue).
    check(d["completed"] >= 1, "bench: some requests complete", str(d["completed"]))
    check(d["total_output_tokens"] == 64 * d["completed"],
          "bench: only completed requests count tokens", str(d["total_output_tokens"]))
    check(d["ttft_count"] == d["completed"], "bench: latencies of completed requests only",
          str(d["ttft_count"]))
    check("RESOURCE_EXHAUSTED" in d["error_examples"] and
          "queue" in d["error_examples"]["RESOURCE_EXHAUSTED"], "bench: the server's message",
          json.dumps(d["error_examples"]))
    errors = [e for e in d["errors"] if e]
    check(len(errors) == d["failed"] and all(e.startswith("RESOURCE_EXHAUSTED: ") for e in errors),
          "bench --json-per-request: one error per failed request", str(errors[:3]))
    check(re.search(rf"^Failed requests:\s+{d['failed']}$", r.out, re.M) and
          re.search(rf"^  RESOURCE_EXHAUSTED:\s+{d['failed']}$", r.out, re.M) and
          re.search(rf"^Successful requests:\s+{d['completed']}$", r.out, re.M),
          "bench table: failures by code", r.out)
    # generate reports the code of a rejected call: fill the queue with two streams first.
    a = Stream(env, srv, "queue-a")
    a.wait_output()
    b = Stream(env, srv, "queue-b")
    check(poll(lambda: srv.metric("engram:num_requests_waiting") == 1.0, WAIT_TIMEOUT),
          "the second stream did not wait in the queue",
          str(srv.metric("engram:num_requests_waiting")))
    g = env.cli("generate", "--server", srv.addr, "--max-tokens", "2", "x")
    check(g.rc == 1 and "engram-client generate: RESOURCE_EXHAUSTED:" in g.err,
          "generate with the queue full: RESOURCE_EXHAUSTED, exit 1", str(g))
    for s in (b, a):
        r = s.finish(signal.SIGINT)
        check(r.rc == 130, "Ctrl-C of a queued or running stream: exit 130", str(r))
    check(poll(lambda: srv.metric("engram:num_requests_running") == 0.0 and
               srv.metric("engram:num_requests_waiting") == 0.0, WAIT_TIMEOUT),
          "cancelled streams must leave the scheduler")
    # Once the queue drains every request succeeds again.
    r = env.cli("bench", "--server", srv.addr, "--num-prompts", "4", "--concurrency", "1",
                "--input-len", "8", "--max-tokens", "4")
    check(r.rc == 0 and re.search(r"^Failed requests:\s+0$", r.out, re.M),
          "bench --concurrency 1 against the small queue: no failures", str(r))


def group_queue(env):
    model = create_model(env, LONG_MODEL, "--max-position", str(LONG_CONTEXT))
    srv = Server(env, "queue", model, "--max-num-seqs", "1", "--max-queued-requests", "1",
                 "--drain-timeout", "1")
    srv.wait_serving()
    yield "bench counts RESOURCE_EXHAUSTED", lambda: t_queue(env, srv)
    yield "engramd stops", lambda: srv.stop()


# ---------------------------------------------------------------------------------------------
# Group "auth"

def t_auth(env, srv, key_file):
    noenv = {k: v for k, v in os.environ.items() if k != "ENGRAM_API_KEY"}
    for cmd in (["info"], ["tokenize", "x"], ["generate", "--max-tokens", "2", "x"],
                ["bench", "--num-prompts", "2", "--input-len", "4", "--max-tokens", "2"]):
        r = env.cli(cmd[0], "--server", srv.addr, *cmd[1:], env=noenv)
        check(r.rc == 1 and f"engram-client {cmd[0]}: UNAUTHENTICATED:" in r.err,
              f"{cmd[0]} without the key: UNAUTHENTICATED, exit 1", str(r))
    r = env.cli("chat", "--server", srv.addr, "--no-history", stdin_text="hi\n", env=noenv)
    check(r.rc == 1 and "UNAUTHENTICATED" in r.err, "chat without the key", str(r))
    wrong = os.path.join(env.workdir, "wrong.key")
    with open(wrong, "w") as f:
        f.write("not-the-key\n")
    r = env.cli("info", "--server", srv.addr, "--api-key-file", wrong, env=noenv)
    check(r.rc == 1 and "UNAUTHENTICATED" in r.err, "a wrong key: UNAUTHENTICATED", str(r))
    # Health answers without a key: the container health check has none.
    r = env.cli("health", "--server", srv.addr, env=noenv)
    check(r.rc == 0 and r.out.strip() == "SERVING", "health without the key", str(r))
    for cmd in (["info"], ["tokenize", "x"], ["generate", "--max-tokens", "2", "x"],
                ["bench", "--num-prompts", "2", "--input-len", "4", "--max-tokens", "2"]):
        r = env.cli(cmd[0], "--server", srv.addr, *cmd[1:], "--api-key-file", key_file,
                    env=noenv)
        check(r.rc == 0, f"{cmd[0]} --api-key-file: exit 0", str(r))
    r = env.cli("chat", "--server", srv.addr, "--no-history", "--max-tokens", "3", "--stop", "\n",
                "--api-key-file", key_file, stdin_text="hi\n", env=noenv)
    check(r.rc == 0 and r.out.count("\n") == 1, "chat --api-key-file", str(r))
    with open(key_file) as f:
        key = f.read().strip()
    r = env.cli("generate", "--server", srv.addr, "--max-tokens", "2", "x",
                env=dict(noenv, ENGRAM_API_KEY=key))
    check(r.rc == 0, "generate with $ENGRAM_API_KEY", str(r))
    r = env.cli("generate", "--server", srv.addr, "--max-tokens", "2", "--api-key-file",
                os.path.join(env.workdir, "missing.key"), "x", env=noenv)
    check(r.rc == 2 and "missing.key" in r.err, "an unreadable --api-key-file: usage error",
          str(r))
    if env.args.proto_py and env.args.example:
        ex = [sys.executable, env.args.example, "--server", srv.addr, "--proto-py",
              env.args.proto_py, "--max-tokens", "4", "x"]
        r = env.run(ex, env=noenv)
        check(r.rc == 1 and "UNAUTHENTICATED" in r.err, "python example without the key", str(r))
        r = env.run(ex + ["--api-key-file", key_file], env=noenv)
        check(r.rc == 0, "python example --api-key-file", str(r))


def group_auth(env):
    model = create_model(env, "tiny")
    key_file = os.path.join(env.workdir, "api.key")
    with open(key_file, "w") as f:
        f.write("e2e-secret-key\n")
    os.chmod(key_file, 0o600)
    srv = Server(env, "auth", model, "--api-key-file", key_file, "--drain-timeout", "1")
    srv.wait_serving()
    yield "API key", lambda: t_auth(env, srv, key_file)
    yield "engramd stops", lambda: srv.stop()


GROUPS = {"main": group_main, "queue": group_queue, "auth": group_auth}


def main():
    if len(sys.argv) == 5 and sys.argv[1] == "--tokenize-chat" and sys.argv[3] == "--proto-py":
        return tokenize_chat_main(sys.argv[2], sys.argv[4])
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--client", required=True)
    ap.add_argument("--engramd", required=True)
    ap.add_argument("--engram-model", required=True)
    ap.add_argument("--workdir", required=True)
    ap.add_argument("--proto-py", help="generated engram.v1 Python stubs (python checks)")
    ap.add_argument("--example", help="client/python/generate_example.py")
    ap.add_argument("--group", choices=sorted(GROUPS), action="append",
                    help="which group to run (repeatable; default all)")
    ap.add_argument("--deadline", type=float, default=160,
                    help="seconds after which the script prints every thread's stack and exits "
                    "(below ctest's TIMEOUT, so a hang shows where it is; 0 = none)")
    args = ap.parse_args()
    args.workdir = os.path.abspath(args.workdir)
    groups = args.group or list(GROUPS)

    # ctest's timeout and Ctrl-C end the script through these, so `finally` reaps the servers.
    def on_signal(signum, _frame):
        raise SystemExit(128 + signum)
    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGHUP, on_signal)

    if args.deadline > 0:
        faulthandler.dump_traceback_later(args.deadline, exit=True)  # children die with us
    failures = 0
    t0 = time.monotonic()
    for g in groups:
        workdir = os.path.join(args.workdir, g)
        shutil.rmtree(workdir, ignore_errors=True)
        os.makedirs(workdir)
        env = Env(args, workdir)
        try:
            steps = GROUPS[g](env)
            while True:
                t = time.monotonic()
                try:
                    name, fn = next(steps)
                except StopIteration:
                    break
                except Failure as e:
                    print(f"FAIL [{g}] setup: {e}", flush=True)
                    failures += 1
                    break
                print(f"...  [{g}] {name}", flush=True)
                try:
                    fn()
                    print(f"ok   [{g}] {name} ({time.monotonic() - t:.1f} s)", flush=True)
                except Failure as e:
                    failures += 1
                    print(f"FAIL [{g}] {name}: {e}", flush=True)
                except Exception:
                    failures += 1
                    print(f"FAIL [{g}] {name}: unexpected error\n{traceback.format_exc()}",
                          flush=True)
        finally:
            env.close()
        for n in env.notes:
            print(f"note [{g}] {n}", flush=True)
    print(f"{'FAILED' if failures else 'PASSED'}: {failures} failure(s), "
          f"{time.monotonic() - t0:.1f} s", flush=True)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
