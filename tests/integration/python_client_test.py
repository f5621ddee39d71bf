#!/usr/bin/python3
"""engramd from Python (issue 4, "Tests"): Debian's python3-grpcio with the engram.v1 stubs that
the build generates, against a real engramd on loopback ports.

  python_client_test.py --engramd BIN --engram-model BIN --proto-py DIR --workdir DIR
"""

import argparse
import ctypes
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import unittest

ARGS = None
SERVER = None  # the running engramd (Server)

START_TIMEOUT_S = 60
CALL_TIMEOUT_S = 30


def free_port():
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def port_accepts(port):
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.settimeout(1)
        return s.connect_ex(("127.0.0.1", port)) == 0


def die_with_parent():
    # Runs in the child before exec: the server must not outlive a test run that crashes or is
    # killed on its ctest timeout.
    libc = ctypes.CDLL(None, use_errno=True)
    PR_SET_PDEATHSIG = 1
    libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL)


def bytes_to_unicode():
    """GPT-2's byte-level alphabet: each byte maps to one printable character."""
    bs = (list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) +
          list(range(ord("®"), ord("ÿ") + 1)))
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return dict(zip(bs, (chr(c) for c in cs)))


class Decoder:
    """Ids to text from tokenizer.json alone, independently of the server: byte-level pieces,
    special tokens skipped (as the server's streams do), invalid UTF-8 replaced as Python does."""

    def __init__(self, tokenizer_json):
        import json
        with open(tokenizer_json, encoding="utf-8") as f:
            t = json.load(f)
        self.pieces = {i: s for s, i in t["model"]["vocab"].items()}
        self.added = {a["id"]: a for a in t["added_tokens"]}
        self.byte_of = {c: b for b, c in bytes_to_unicode().items()}

    def decode(self, ids):
        out = bytearray()
        for i in ids:
            if i in self.added:
                if not self.added[i]["special"]:
                    out += self.added[i]["content"].encode("utf-8")
            else:
                out += bytes(self.byte_of[c] for c in self.pieces[i])
        return out.decode("utf-8", errors="replace")


class Server:

    def __init__(self, model_dir, workdir):
        self.port = free_port()
        self.metrics_port = free_port()
        while self.metrics_port == self.port:
            self.metrics_port = free_port()
        self.log_path = os.path.join(workdir, "engramd.log")
        self.log = open(self.log_path, "wb")
        self.proc = subprocess.Popen(
            [ARGS.engramd, "--model", model_dir, "--listen", "127.0.0.1:%d" % self.port,
             "--metrics-port", str(self.metrics_port), "--threads", "1",
             "--kv-cache-bytes", "64M"],
            stdin=subprocess.DEVNULL, stdout=self.log, stderr=subprocess.STDOUT,
            preexec_fn=die_with_parent)

    def address(self):
        return "127.0.0.1:%d" % self.port

    def log_text(self):
        with open(self.log_path, "rb") as f:
            return f.read().decode("utf-8", errors="replace")

    def wait_serving(self, grpc):
        # Plain TCP first: a gRPC channel that tried before the port was open would sit out a
        # reconnect backoff.
        deadline = time.monotonic() + START_TIMEOUT_S
        while not port_accepts(self.port):
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError("engramd did not start:\n" + self.log_text())
            time.sleep(0.01)
        # grpc.health.v1.Health/Check by hand (Debian has no grpc_health module): the request
        # HealthCheckRequest{service: ""} is empty, and SERVING is field 1 = 1, i.e. b"\x08\x01".
        with grpc.insecure_channel(self.address()) as ch:
            check = ch.unary_unary("/grpc.health.v1.Health/Check")
            while True:
                try:
                    if check(b"", timeout=5) == b"\x08\x01":
                        return
                except grpc.RpcError:
                    pass
                if self.proc.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError("engramd did not get to SERVING:\n" + self.log_text())
                time.sleep(0.01)

    def stop(self):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.log.close()
        return self.proc.returncode


class PythonClientTest(unittest.TestCase):

    @classmethod
    def setUpClass(cls):
        import grpc
        from engram.v1 import inference_pb2, inference_pb2_grpc
        cls.grpc = grpc
        cls.pb = inference_pb2
        cls.channel = grpc.insecure_channel(SERVER.address())
        cls.stub = inference_pb2_grpc.InferenceServiceStub(cls.channel)
        cls.decoder = Decoder(os.path.join(ARGS.model_dir, "tokenizer.json"))

    @classmethod
    def tearDownClass(cls):
        cls.channel.close()

    def generate(self, **kwargs):
        return list(self.stub.Generate(self.pb.GenerateRequest(**kwargs), timeout=CALL_TIMEOUT_S))

    def test_streams_a_generation(self):
        pb = self.pb
        msgs = self.generate(
            request_id="py-stream", prompt="Once upon a time",
            sampling=pb.SamplingParams(temperature=0.7, seed=3),
            stopping=pb.StoppingCriteria(max_new_tokens=32, ignore_eos=True))
        self.assertGreaterEqual(len(msgs), 2)
        ids = [i for m in msgs for i in m.token_ids]
        text = "".join(m.text for m in msgs)
        self.assertEqual(len(ids), 32)
        self.assertEqual(text, self.decoder.decode(ids))
        for m in msgs:
            self.assertEqual(m.request_id, "py-stream")
        for m in msgs[:-1]:
            self.assertEqual(m.finish_reason, pb.FINISH_REASON_UNSPECIFIED)
            self.assertFalse(m.HasField("usage"))
        last = msgs[-1]
        self.assertEqual(last.finish_reason, pb.FINISH_REASON_LENGTH)
        self.assertEqual(last.usage.completion_tokens, 32)
        tok = self.stub.Tokenize(pb.TokenizeRequest(text="Once upon a time"),
                                 timeout=CALL_TIMEOUT_S)
        self.assertEqual(last.usage.prompt_tokens, tok.count)
        self.assertGreater(last.usage.e2e_seconds, 0)

    def test_a_seed_reproduces(self):
        pb = self.pb
        req = dict(prompt="Seeds", sampling=pb.SamplingParams(temperature=1.0, top_p=0.9, seed=11),
                   stopping=pb.StoppingCriteria(max_new_tokens=16, ignore_eos=True))
        a = [i for m in self.generate(**req) for i in m.token_ids]
        b = [i for m in self.generate(**req) for i in m.token_ids]
        self.assertEqual(a, b)

    def test_tokenize_and_model_info(self):
        pb = self.pb
        tok = self.stub.Tokenize(pb.TokenizeRequest(text="Hello world"), timeout=CALL_TIMEOUT_S)
        self.assertGreater(tok.count, 0)
        self.assertEqual(len(tok.token_ids), tok.count)
        self.assertEqual("".join(tok.tokens), "Hello world")
        self.assertEqual(self.decoder.decode(list(tok.token_ids)), "Hello world")
        info = self.stub.GetModelInfo(pb.GetModelInfoRequest(), timeout=CALL_TIMEOUT_S)
        self.assertEqual(info.vocab_size, 512)
        self.assertEqual(info.max_model_len, tok.max_model_len)
        self.assertEqual(list(info.engram_layers), [0, 1])

    def test_a_bad_request_names_the_field(self):
        pb = self.pb
        with self.assertRaises(self.grpc.RpcError) as e:
            self.generate(prompt="x", sampling=pb.SamplingParams(temperature=-1))
        self.assertEqual(e.exception.code(), self.grpc.StatusCode.INVALID_ARGUMENT)
        self.assertIn("sampling.temperature", e.exception.details())


def main():
    global ARGS, SERVER
    p = argparse.ArgumentParser()
    p.add_argument("--engramd", required=True)
    p.add_argument("--engram-model", required=True)
    p.add_argument("--proto-py", required=True)
    p.add_argument("--workdir", required=True)
    ARGS, rest = p.parse_known_args()
    sys.path.insert(0, ARGS.proto_py)
    shutil.rmtree(ARGS.workdir, ignore_errors=True)
    os.makedirs(ARGS.workdir)
    ARGS.model_dir = os.path.join(ARGS.workdir, "pytiny")
    subprocess.run([ARGS.engram_model, "create", "--preset", "tiny", "--out", ARGS.model_dir],
                   check=True, stdout=subprocess.DEVNULL)
    # The server starts before grpc is imported: preexec_fn is only safe without threads.
    SERVER = Server(ARGS.model_dir, ARGS.workdir)
    ok = False
    try:
        import grpc
        SERVER.wait_serving(grpc)
        result = unittest.main(argv=[sys.argv[0]] + rest, exit=False, verbosity=2).result
        ok = result.wasSuccessful()
    finally:
        rc = SERVER.stop()
        if rc != 0:
            print("engramd exited %s after SIGTERM" % rc)
            ok = False
        if not ok:
            print("---- engramd log ----\n" + SERVER.log_text() + "---- end of engramd log ----")
    if ok:
        shutil.rmtree(ARGS.workdir, ignore_errors=True)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
