"""Open Inference Protocol v2 request/response codec, JSON and binary tensor extension.

Liberal in what we accept (nested or flat `data`, binary flags in either place), strict
in what we send. Every inconsistency is a BadRequest naming the tensor and the problem.
Binary inputs are decoded zero-copy: numpy views over the request body.
"""

from __future__ import annotations

import json
import math
import struct
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from .errors import BadRequest, quote

HEADER_LENGTH = "Inference-Header-Content-Length"

# OIP datatype -> numpy dtype (little-endian, as the binary extension specifies).
DATATYPES: dict[str, np.dtype] = {
    "BOOL": np.dtype("?"),
    "UINT8": np.dtype("<u1"),
    "UINT16": np.dtype("<u2"),
    "UINT32": np.dtype("<u4"),
    "UINT64": np.dtype("<u8"),
    "INT8": np.dtype("<i1"),
    "INT16": np.dtype("<i2"),
    "INT32": np.dtype("<i4"),
    "INT64": np.dtype("<i8"),
    "FP16": np.dtype("<f2"),
    "FP32": np.dtype("<f4"),
    "FP64": np.dtype("<f8"),
    "BYTES": np.dtype(object),
}
_BY_DTYPE = {dt: name for name, dt in DATATYPES.items() if name != "BYTES"}


def datatype_of(dtype: np.dtype) -> str:
    dtype = np.dtype(dtype)
    if dtype.kind in ("O", "S", "U"):
        return "BYTES"
    name = _BY_DTYPE.get(dtype.newbyteorder("<") if dtype.byteorder == ">" else dtype)
    if name is None:
        raise TypeError(f"numpy dtype {dtype} has no Open Inference Protocol datatype")
    return name


@dataclass
class InferInput:
    name: str
    datatype: str
    shape: tuple[int, ...]
    data: np.ndarray


@dataclass
class RequestedOutput:
    name: str
    binary: bool | None = None  # None: use the request-wide default


@dataclass
class InferRequest:
    inputs: list[InferInput]
    id: str | None = None
    outputs: list[RequestedOutput] | None = None
    binary_output: bool = False
    parameters: dict[str, Any] = field(default_factory=dict)
    # True where requests reach the event loop one at a time (grpcio's asyncio server
    # hands each call over separately), so a lone request must not run its batch on the
    # loop: that would hold back the next call and no batch would ever form
    # (batcher._run_inline).
    arrives_alone: bool = False
    # gRPC: other calls were in progress as this one arrived: the batcher then lets a
    # batch wait briefly for them even on an idle device.
    company_expected: bool = False


def _field(obj: dict[str, Any], key: str, kind: type | tuple[type, ...], where: str) -> Any:
    if key not in obj:
        raise BadRequest(f"{where}: missing field '{key}'")
    value = obj[key]
    if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
        raise BadRequest(f"{where}: field '{key}' has the wrong type ({type(value).__name__})")
    return value


def _parameters(obj: dict[str, Any], where: str) -> dict[str, Any]:
    params = obj.get("parameters", {})
    if params is None:
        return {}
    if not isinstance(params, dict):
        raise BadRequest(f"{where}: 'parameters' must be an object")
    return params


def _shape(raw: list[Any], where: str) -> tuple[int, ...]:
    if len(raw) > 16:
        raise BadRequest(f"{where}: shape has {len(raw)} dimensions, at most 16 allowed")
    for dim in raw:
        if not isinstance(dim, int) or isinstance(dim, bool) or dim < 0:
            raise BadRequest(f"{where}: shape {raw} must hold non-negative integers")
    return tuple(raw)


def _flatten(data: Any) -> list[Any]:
    """Flatten nested JSON lists; OIP allows both flat and row-major nested data."""
    if not isinstance(data, list):
        return [data]
    if not data or not isinstance(data[0], list):
        return data
    out: list[Any] = []
    stack = [data]
    # Iterative, so a deeply nested hostile body cannot blow the recursion limit.
    while stack:
        item = stack.pop()
        if isinstance(item, list):
            stack.extend(reversed(item))
        else:
            out.append(item)
    return out


def _decode_bytes_elements(buf: memoryview, count: int, where: str) -> np.ndarray:
    out = np.empty(count, dtype=object)
    offset = 0
    for i in range(count):
        if offset + 4 > len(buf):
            raise BadRequest(f"{where}: BYTES element {i} length prefix runs past its data")
        (length,) = struct.unpack_from("<I", buf, offset)
        offset += 4
        if offset + length > len(buf):
            raise BadRequest(f"{where}: BYTES element {i} of {length} bytes runs past its data")
        out[i] = bytes(buf[offset : offset + length])
        offset += length
    if offset != len(buf):
        raise BadRequest(f"{where}: {len(buf) - offset} bytes left over after {count} elements")
    return out


def _json_data(datatype: str, dtype: np.dtype, raw: Any, count: int, where: str) -> np.ndarray:
    flat = _flatten(raw)
    if len(flat) != count:
        raise BadRequest(f"{where}: 'data' has {len(flat)} elements, shape needs {count}")
    if datatype == "BYTES":
        out = np.empty(count, dtype=object)
        for i, item in enumerate(flat):
            if not isinstance(item, str):
                raise BadRequest(f"{where}: BYTES data in JSON must be strings")
            out[i] = item.encode()
        return out
    for item in flat:
        # bool is an int subclass; numbers for BOOL are tolerated (liberal), lists are not.
        if not isinstance(item, int | float | bool):
            raise BadRequest(
                f"{where}: 'data' element {quote(item, 40)} is not a number for {datatype}"
            )
    try:
        with np.errstate(all="raise"):
            return np.asarray(flat, dtype=dtype)
    except (OverflowError, ValueError, FloatingPointError, TypeError) as exc:
        raise BadRequest(f"{where}: 'data' does not fit {datatype}: {exc}") from None


def input_where(name: str) -> str:
    return f"input {quote(name, 60)}"


def tensor_header(where: str, datatype: str, raw_shape: list[Any]) -> tuple[np.dtype, tuple, int]:
    """Datatype and shape of one input tensor, checked; shared by HTTP and gRPC so both
    say the same thing about the same mistake."""
    dtype = DATATYPES.get(datatype)
    if dtype is None:
        raise BadRequest(
            f"{where}: unknown datatype {quote(datatype, 40)}; use one of {list(DATATYPES)}"
        )
    shape = _shape(raw_shape, where)
    return dtype, shape, math.prod(shape)


def tensor_from_bytes(
    where: str, datatype: str, dtype: np.dtype, shape: tuple, count: int, chunk: memoryview
) -> np.ndarray:
    """One input's raw bytes (binary extension, gRPC raw_input_contents) as an array."""
    if datatype == "BYTES":
        return _decode_bytes_elements(chunk, count, where)
    expected = count * dtype.itemsize
    if len(chunk) != expected:
        raise BadRequest(
            f"{where}: {len(chunk)} bytes of binary data, but shape {list(shape)} of "
            f"{datatype} needs {expected}"
        )
    return np.frombuffer(chunk, dtype=dtype)


def tensor_from_values(
    where: str, datatype: str, dtype: np.dtype, values: Any, count: int
) -> np.ndarray:
    """One input's values (JSON `data`, gRPC typed contents) as an array."""
    return _json_data(datatype, dtype, values, count, where)


def decode_request(body: bytes, header_length: str | int | None = None) -> InferRequest:
    """Decode an infer request body; `header_length` is the binary extension's header."""
    view = memoryview(body)
    binary = view[0:0]
    if header_length is not None and header_length != "":
        try:
            json_len = int(header_length)
        except ValueError:
            raise BadRequest(
                f"{HEADER_LENGTH} must be an integer, got {quote(header_length, 40)}"
            ) from None
        if json_len < 0:
            raise BadRequest(f"{HEADER_LENGTH} must be a length >= 0, got {json_len}")
        if json_len > len(body):
            raise BadRequest(
                f"{HEADER_LENGTH} is {json_len} but the body has only {len(body)} bytes"
            )
        header, binary = view[:json_len], view[json_len:]
    else:
        header = view
    try:
        doc = json.loads(bytes(header))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise BadRequest(f"request body is not valid JSON: {exc}") from None
    except RecursionError:
        raise BadRequest("request body nests too deeply") from None
    if not isinstance(doc, dict):
        raise BadRequest("request body must be a JSON object")

    raw_inputs = _field(doc, "inputs", list, "request")
    if not raw_inputs:
        raise BadRequest("request: 'inputs' is empty")
    request_id = doc.get("id")
    if request_id is not None and not isinstance(request_id, str):
        raise BadRequest("request: 'id' must be a string")
    params = _parameters(doc, "request")

    inputs: list[InferInput] = []
    seen: set[str] = set()
    offset = 0
    for index, raw in enumerate(raw_inputs):
        if not isinstance(raw, dict):
            raise BadRequest(f"inputs[{index}] must be an object")
        name = _field(raw, "name", str, f"inputs[{index}]")
        where = input_where(name)
        if name in seen:
            raise BadRequest(f"{where} appears twice")
        seen.add(name)
        datatype = _field(raw, "datatype", str, where)
        dtype, shape, count = tensor_header(where, datatype, _field(raw, "shape", list, where))
        in_params = _parameters(raw, where)
        size = in_params.get("binary_data_size")
        if size is not None:
            if not isinstance(size, int) or isinstance(size, bool) or size < 0:
                raise BadRequest(f"{where}: binary_data_size must be a non-negative integer")
            if offset + size > len(binary):
                raise BadRequest(
                    f"{where}: binary_data_size {size} at offset {offset} runs past the "
                    f"{len(binary)} bytes of binary data"
                )
            chunk = binary[offset : offset + size]
            offset += size
            array = tensor_from_bytes(where, datatype, dtype, shape, count, chunk)
        elif "data" in raw:
            array = _json_data(datatype, dtype, raw["data"], count, where)
        else:
            raise BadRequest(f"{where}: needs 'data' or parameters.binary_data_size")
        inputs.append(InferInput(name, datatype, shape, array.reshape(shape)))
    if offset != len(binary):
        raise BadRequest(
            f"{len(binary) - offset} bytes of binary data are not claimed by any input"
        )

    outputs = None
    if doc.get("outputs") is not None:
        raw_outputs = doc["outputs"]
        if not isinstance(raw_outputs, list):
            raise BadRequest("request: 'outputs' must be a list")
        outputs = []
        for index, raw in enumerate(raw_outputs):
            if not isinstance(raw, dict):
                raise BadRequest(f"outputs[{index}] must be an object")
            name = _field(raw, "name", str, f"outputs[{index}]")
            flag = _parameters(raw, f"output {quote(name, 60)}").get("binary_data")
            outputs.append(RequestedOutput(name, None if flag is None else bool(flag)))
    return InferRequest(
        inputs=inputs,
        id=request_id,
        outputs=outputs,
        binary_output=bool(params.get("binary_data_output", False)),
        parameters=params,
    )


def encode_bytes_elements(array: np.ndarray) -> bytes:
    parts = []
    for item in array.reshape(-1):
        raw = item if isinstance(item, bytes) else str(item).encode()
        parts.append(struct.pack("<I", len(raw)))
        parts.append(raw)
    return b"".join(parts)


def encode_response(
    model_name: str,
    model_version: str,
    outputs: list[tuple[str, np.ndarray, bool]],
    request_id: str | None = None,
) -> tuple[list[bytes], int | None]:
    """Encode (name, array, binary?) outputs.

    Returns the body as a list of chunks (so large tensors are not copied into one
    buffer) and the JSON header length when any output is binary, else None.
    """
    out_docs = []
    blobs: list[bytes] = []
    for name, array, binary in outputs:
        datatype = datatype_of(array.dtype)
        entry: dict[str, Any] = {"name": name, "datatype": datatype, "shape": list(array.shape)}
        if binary:
            if datatype == "BYTES":
                blob = encode_bytes_elements(array)
            else:
                blob = np.ascontiguousarray(array, dtype=array.dtype.newbyteorder("<")).data
            entry["parameters"] = {"binary_data_size": len(memoryview(blob).cast("B"))}
            blobs.append(blob)
        elif datatype == "BYTES":
            entry["data"] = [
                x.decode(errors="replace") if isinstance(x, bytes) else str(x)
                for x in array.reshape(-1)
            ]
        else:
            entry["data"] = array.reshape(-1).tolist()
        out_docs.append(entry)
    doc: dict[str, Any] = {"model_name": model_name, "model_version": model_version}
    if request_id is not None:
        doc["id"] = request_id
    doc["outputs"] = out_docs
    header = json.dumps(doc, separators=(",", ":"), allow_nan=True).encode()
    if not blobs:
        return [header], None
    return [header, *blobs], len(header)
