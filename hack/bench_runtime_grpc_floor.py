"""The floors of `hack/bench-runtime --cpu`'s gRPC rows: a server that does nothing but
answer ModelInfer with a canned response, on each transport the modelserve runtime can
use (MODELSERVE_GRPC_SERVER): `h2` (gRPC's HTTP/2 with the h2 library on the event
loop, as grpc_h2.py, the runtime's default), `threads` (grpcio's thread-pool server) or
`asyncio` (grpc.aio on the event loop: uvloop when installed), the grpcio ones with the
same generic-handler plumbing as the runtime (raw request bytes in, no parsing). What it
costs per call is the transport's own cost, which no server built on it can go below;
the benchmark prints it as a row in the same run, so every gRPC figure can be read
against it.

usage: python bench_runtime_grpc_floor.py --grpc-port P [--server h2|threads|asyncio]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
from concurrent.futures import ThreadPoolExecutor

import grpc

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                                "runtime"))
from modelserve_runtime.proto import grpc_predict_v2_pb2 as pb


def canned_response(model_name: str) -> bytes:
    """What the runtime answers for one row of the benchmark's MLP (10 FP32 outputs)."""
    response = pb.ModelInferResponse(model_name=model_name, model_version="1")
    response.outputs.add(name="y", datatype="FP32", shape=[1, 10])
    response.raw_output_contents.append(bytes(40))
    return response.SerializeToString()


def handler(model_infer) -> grpc.GenericRpcHandler:
    return grpc.method_handlers_generic_handler(
        "inference.GRPCInferenceService",
        {"ModelInfer": grpc.unary_unary_rpc_method_handler(
            model_infer, response_serializer=lambda b: b)},
    )


async def serve(port: int, model_name: str) -> None:
    answer = canned_response(model_name)

    async def model_infer(raw: bytes, context: grpc.aio.ServicerContext) -> bytes:
        return answer

    server = grpc.aio.server(handlers=[handler(model_infer)], options=[("grpc.so_reuseport", 0)])
    server.add_insecure_port(f"127.0.0.1:{port}")
    await server.start()
    await server.wait_for_termination()


def serve_threads(port: int, model_name: str) -> None:
    answer = canned_response(model_name)

    def model_infer(raw: bytes, context: grpc.ServicerContext) -> bytes:
        return answer

    # As many threads as the runtime would start for the benchmark's calls in flight.
    server = grpc.server(ThreadPoolExecutor(1000), handlers=[handler(model_infer)],
                         options=[("grpc.so_reuseport", 0)])
    server.add_insecure_port(f"127.0.0.1:{port}")
    server.start()
    server.wait_for_termination()


def serve_h2(port: int, model_name: str) -> None:
    """gRPC's wire format on the h2 library's HTTP/2 state machine, on the event loop:
    no grpcio, no threads."""
    import h2.connection
    import h2.events

    # The runtime's own h2 configuration, so the floor moves with it.
    from modelserve_runtime.grpc_h2 import CONFIG as config

    answer = canned_response(model_name)
    frame = b"\x00" + len(answer).to_bytes(4, "big") + answer
    head = [(b":status", b"200"), (b"content-type", b"application/grpc")]
    trailers = [(b"grpc-status", b"0")]

    class Protocol(asyncio.Protocol):
        def connection_made(self, transport):
            self.transport = transport
            self.conn = h2.connection.H2Connection(config=config)
            self.conn.initiate_connection()
            self.bodies: dict[int, bytearray] = {}
            transport.write(self.conn.data_to_send())

        def data_received(self, data):
            conn = self.conn
            for event in conn.receive_data(data):
                kind = type(event)
                if kind is h2.events.DataReceived:
                    self.bodies.setdefault(event.stream_id, bytearray()).extend(event.data)
                    conn.acknowledge_received_data(event.flow_controlled_length,
                                                   event.stream_id)
                elif kind is h2.events.StreamEnded:
                    sid = event.stream_id
                    self.bodies.pop(sid, None)
                    conn.send_headers(sid, head)
                    conn.send_data(sid, frame)
                    conn.send_headers(sid, trailers, end_stream=True)
            out = conn.data_to_send()
            if out:
                self.transport.write(out)

    async def run() -> None:
        loop = asyncio.get_running_loop()
        server = await loop.create_server(Protocol, "127.0.0.1", port)
        await server.serve_forever()

    try:
        import uvloop
    except ImportError:
        asyncio.run(run())
    else:
        uvloop.run(run())


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--grpc-port", type=int, required=True)
    p.add_argument("--model-name", default="mlp")
    p.add_argument("--server", choices=("asyncio", "threads", "h2"), default="asyncio")
    args = p.parse_args()
    if args.server == "h2":
        serve_h2(args.grpc_port, args.model_name)
        return
    if args.server == "threads":
        serve_threads(args.grpc_port, args.model_name)
        return
    try:
        import uvloop
    except ImportError:  # the runtime falls back to asyncio's loop likewise
        asyncio.run(serve(args.grpc_port, args.model_name))
    else:
        uvloop.run(serve(args.grpc_port, args.model_name))


if __name__ == "__main__":
    main()
