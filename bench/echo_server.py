"""The reference server: `python -m bench.echo_server --port P --reply-bytes N`.

Bare grpcio as our services use it (sync server, ThreadPoolExecutor with the same number of
workers) but with nothing else: no interceptors, no database, one unary method that answers
every request with a fixed reply the size of a real GetEnterprise response.
"""

from __future__ import annotations

import argparse
import signal
from concurrent.futures import ThreadPoolExecutor

import grpc

SERVICE = "bench.Echo"
METHOD = f"/{SERVICE}/Echo"


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.echo_server")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--reply-bytes", type=int, required=True)
    parser.add_argument("--workers", type=int, required=True)
    args = parser.parse_args()

    reply = b"\0" * args.reply_bytes

    def echo(_request: bytes, _context: grpc.ServicerContext) -> bytes:
        return reply

    # No (de)serializers: the method handles raw bytes, the cheapest a grpcio server can be.
    handler = grpc.method_handlers_generic_handler(
        SERVICE, {"Echo": grpc.unary_unary_rpc_method_handler(echo)}
    )
    server = grpc.server(ThreadPoolExecutor(max_workers=args.workers))
    server.add_generic_rpc_handlers((handler,))
    server.add_insecure_port(f"127.0.0.1:{args.port}")
    server.start()
    signal.signal(signal.SIGTERM, lambda *_: server.stop(0))
    server.wait_for_termination()


if __name__ == "__main__":
    main()
