"""The floor of `hack/bench-runtime --cpu`'s gRPC rows: a grpcio asyncio server that does
nothing but answer ModelInfer with a canned response, on the same event loop as the
modelserve runtime (uvloop when installed), with the same generic-handler plumbing
(raw request bytes in, no parsing). What it costs per call is grpcio's own cost, which
no server built on grpcio's asyncio server can go below; the benchmark prints it as a
row in the same run, so every gRPC figure can be read against it.

usage: python bench_runtime_grpc_floor.py --grpc-port P [--model-name mlp]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys

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


async def serve(port: int, model_name: str) -> None:
    answer = canned_response(model_name)

    async def model_infer(raw: bytes, context: grpc.aio.ServicerContext) -> bytes:
        return answer

    handler = grpc.method_handlers_generic_handler(
        "inference.GRPCInferenceService",
        {"ModelInfer": grpc.unary_unary_rpc_method_handler(
            model_infer, response_serializer=lambda b: b)},
    )
    server = grpc.aio.server(handlers=[handler], options=[("grpc.so_reuseport", 0)])
    server.add_insecure_port(f"127.0.0.1:{port}")
    await server.start()
    await server.wait_for_termination()


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--grpc-port", type=int, required=True)
    p.add_argument("--model-name", default="mlp")
    args = p.parse_args()
    try:
        import uvloop
    except ImportError:  # the runtime falls back to asyncio's loop likewise
        asyncio.run(serve(args.grpc_port, args.model_name))
    else:
        uvloop.run(serve(args.grpc_port, args.model_name))


if __name__ == "__main__":
    main()
