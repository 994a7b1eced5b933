"""Build hook: compile the runtime's gRPC proto (Open Inference Protocol v2) with
grpcio-tools before the Python modules are collected.

Everything else about the package is in pyproject.toml. The generated modules are
written next to the .proto (so editable installs see them too) and are not committed:
the gencode must match the protobuf runtime installed beside it, and grpcio-tools,
pinned in pyproject's build requirements, makes sure it does.
"""

from __future__ import annotations

import os

from setuptools import setup
from setuptools.command.build_py import build_py

ROOT = os.path.dirname(os.path.abspath(__file__))
PROTO = "modelserve_runtime/proto/grpc_predict_v2.proto"


def compile_protos() -> None:
    from grpc_tools import protoc  # build requirement (pyproject.toml)

    include = os.path.join(os.path.dirname(protoc.__file__), "_proto")
    src = os.path.join(ROOT, "runtime")
    # Paths relative to runtime/ make the generated imports absolute
    # (`from modelserve_runtime.proto import grpc_predict_v2_pb2`).
    code = protoc.main(
        [
            "grpc_tools.protoc",
            f"-I{src}",
            f"-I{include}",
            f"--python_out={src}",
            f"--pyi_out={src}",
            f"--grpc_python_out={src}",
            os.path.join(src, PROTO),
        ]
    )
    if code != 0:
        raise RuntimeError(f"protoc failed on {PROTO} (exit {code})")


class BuildWithProtos(build_py):
    def run(self) -> None:
        compile_protos()
        super().run()


setup(cmdclass={"build_py": BuildWithProtos})
