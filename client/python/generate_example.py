#!/usr/bin/python3
"""Streams one completion from engramd to stdout: a minimal engram.v1 client in Python.

Uses Debian's python3-grpcio and python3-protobuf (no pip) and the Python stubs the build
generates from proto/engram/v1/inference.proto into build/default/python. See README.md here.

    /usr/bin/python3 client/python/generate_example.py --server 127.0.0.1:50051 "Once upon a time"
"""
import argparse
import os
import sys

DEFAULT_STUBS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "build",
                             "default", "python")


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("prompt")
    ap.add_argument("--server", default="127.0.0.1:50051", help="engramd host:port")
    ap.add_argument("--proto-py", default=os.environ.get("ENGRAM_PROTO_PY", DEFAULT_STUBS),
                    help="directory of the generated engram/v1/*_pb2*.py "
                    "(default: $ENGRAM_PROTO_PY, else build/default/python)")
    ap.add_argument("--max-tokens", type=int, default=64)
    ap.add_argument("--temperature", type=float, help="0 = greedy (server default 1)")
    ap.add_argument("--seed", type=int, help="same seed, same output")
    ap.add_argument("--api-key-file", help="file holding the API key (default: $ENGRAM_API_KEY)")
    args = ap.parse_args()

    sys.path.insert(0, args.proto_py)
    import grpc
    from engram.v1 import inference_pb2 as pb
    from engram.v1 import inference_pb2_grpc as pb_grpc

    key = os.environ.get("ENGRAM_API_KEY", "")
    if args.api_key_file:
        with open(args.api_key_file) as f:
            key = f.read().strip()
    metadata = [("authorization", "Bearer " + key)] if key else []

    request = pb.GenerateRequest(prompt=args.prompt)
    request.stopping.max_new_tokens = args.max_tokens
    # Optional fields: left unset, the server applies its documented defaults.
    if args.temperature is not None:
        request.sampling.temperature = args.temperature
    if args.seed is not None:
        request.sampling.seed = args.seed

    with grpc.insecure_channel(args.server) as channel:
        stub = pb_grpc.InferenceServiceStub(channel)
        call = stub.Generate(request, metadata=metadata)
        last = None
        try:
            for response in call:  # one message per scheduler step, as the tokens come
                sys.stdout.write(response.text)
                sys.stdout.flush()
                last = response
        except KeyboardInterrupt:
            call.cancel()  # the server frees the sequence
            print("\ncancelled", file=sys.stderr)
            return 130
        except grpc.RpcError as e:
            print(f"\n{e.code().name}: {e.details()}", file=sys.stderr)
            return 1
    print()
    # The last message carries the finish reason and the usage.
    u = last.usage
    print(f"finish: {pb.FinishReason.Name(last.finish_reason)}, prompt {u.prompt_tokens} tokens, "
          f"completion {u.completion_tokens} tokens, TTFT {u.time_to_first_token_seconds:.3f} s, "
          f"E2E {u.e2e_seconds:.3f} s", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
