"""`modelserve export`: turn a PyTorch module into ONNX and report its sha256.

The digest goes into the ModelVersion's `spec.model.sha256`, so the pod can refuse an
artifact that is not the one the user reviewed, and so the TensorRT engine cache key
starts from exactly these bytes.

    modelserve export torchvision.models:resnet50 -o resnet50.onnx \\
        --input input=1x3x224x224:float32
"""

from __future__ import annotations

import argparse
import importlib
import sys
from typing import Any

from .fetch import sha256_file

_DTYPES = ("float32", "float16", "bfloat16", "int64", "int32", "bool", "uint8")


def parse_input(text: str) -> tuple[str, tuple[int, ...], str]:
    """`name=1x3x224x224[:dtype]` -> (name, shape, dtype)."""
    name, sep, rest = text.partition("=")
    if not sep or not name:
        raise argparse.ArgumentTypeError(f"--input {text!r}: expected name=1x3x224x224[:dtype]")
    dims, _, dtype = rest.partition(":")
    dtype = dtype or "float32"
    if dtype not in _DTYPES:
        raise argparse.ArgumentTypeError(f"--input {text!r}: dtype must be one of {_DTYPES}")
    try:
        shape = tuple(int(d) for d in dims.lower().split("x"))
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"--input {text!r}: shape must be integers joined by 'x', e.g. 1x3x224x224"
        ) from None
    if any(d <= 0 for d in shape):
        raise argparse.ArgumentTypeError(f"--input {text!r}: dimensions must be positive")
    return name, shape, dtype


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="modelserve export",
        description="Export a PyTorch module to ONNX and print its sha256.",
    )
    p.add_argument(
        "module",
        help="'package.module:attr' (an nn.Module, or a class/factory called with no "
        "arguments), or a path to a TorchScript/torch.save file",
    )
    p.add_argument("-o", "--output", required=True, help="ONNX file to write")
    p.add_argument(
        "--input",
        action="append",
        type=parse_input,
        required=True,
        dest="inputs",
        help="example input as name=1x3x224x224[:dtype]; repeat for several inputs",
    )
    p.add_argument(
        "--output-name",
        action="append",
        default=None,
        dest="output_names",
        help="names for the outputs (default output0, output1, ...)",
    )
    p.add_argument("--opset", type=int, default=17)
    p.add_argument(
        "--static-batch",
        action="store_true",
        help="keep dim 0 fixed (default: dynamic, so the runtime can batch)",
    )
    p.add_argument("--dynamo", action="store_true", help="use torch.export-based exporter")
    return p


def load_module(spec: str) -> Any:
    import torch

    if ":" in spec and not spec.endswith((".pt", ".pth", ".pt2")):
        module_name, _, attr = spec.partition(":")
        obj: Any = importlib.import_module(module_name)
        for part in attr.split("."):
            obj = getattr(obj, part)
        if not isinstance(obj, torch.nn.Module) and callable(obj):
            obj = obj()
    else:
        try:
            obj = torch.jit.load(spec, map_location="cpu")
        except RuntimeError:
            obj = torch.load(spec, map_location="cpu", weights_only=False)
    if not isinstance(obj, torch.nn.Module):
        raise SystemExit(f"modelserve export: {spec!r} is not a torch.nn.Module")
    return obj.eval()


def export(args: argparse.Namespace) -> str:
    import torch

    model = load_module(args.module)
    examples = []
    for _name, shape, dtype in args.inputs:
        torch_dtype = getattr(torch, dtype)
        if torch_dtype.is_floating_point:
            examples.append(torch.randn(shape, dtype=torch_dtype))
        else:
            examples.append(torch.ones(shape, dtype=torch_dtype))
    input_names = [name for name, _, _ in args.inputs]
    with torch.no_grad():
        sample = model(*examples)
    count = len(sample) if isinstance(sample, tuple | list) else 1
    output_names = list(args.output_names or [])
    output_names += [f"output{i}" for i in range(len(output_names), count)]
    kwargs: dict[str, Any] = {
        "input_names": input_names,
        "output_names": output_names,
        "opset_version": args.opset,
    }
    if args.dynamo:
        kwargs["dynamo"] = True
        if not args.static_batch:
            batch = torch.export.Dim("batch", min=1)
            kwargs["dynamic_shapes"] = tuple({0: batch} for _ in examples)
    else:
        kwargs["dynamo"] = False
        if not args.static_batch:
            kwargs["dynamic_axes"] = {n: {0: "batch"} for n in input_names + output_names}
    torch.onnx.export(model, tuple(examples), args.output, **kwargs)
    try:
        import onnx

        onnx.checker.check_model(args.output)
    except ImportError:
        pass
    return sha256_file(args.output)


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        import torch  # noqa: F401
    except ImportError:
        print("modelserve export needs PyTorch: pip install 'modelserve[torch]'", file=sys.stderr)
        return 2
    digest = export(args)
    print(f"wrote {args.output}")
    print(f"sha256: {digest}")
    print("ModelVersion snippet:")
    print(f"  model:\n    format: onnx\n    sha256: {digest}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
