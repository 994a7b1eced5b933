"""gRPC: the Open Inference Protocol v2 service (`inference.GRPCInferenceService`) on
grpcio's asyncio server, in the same process and event loop as the HTTP server.

It shares everything behind the wire with HTTP (server.RuntimeServer): the model and
its batcher, API keys (sent as `authorization: Bearer <key>` or `x-api-key` metadata),
TLS (the same certificate), the audit log and the request metrics, where a call is
counted under the HTTP status its gRPC code stands for. Tensors travel as
`raw_input_contents` / `raw_output_contents` (little-endian bytes, the binary
extension's layout); typed `contents` are accepted on input. Decoding goes through the
codec's tensor checks, so a bad input gets INVALID_ARGUMENT with the message HTTP gives.

Requests arrive as bytes and are parsed here, not by grpcio, so that a malformed
message is the caller's INVALID_ARGUMENT rather than the framework's INTERNAL, and so
that the audit log's bytes_in is the size actually received.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

import grpc
import numpy as np
from google.protobuf.message import DecodeError
from multidict import CIMultiDict

from . import __version__
from .auth import presented_key
from .codec import (
    InferInput,
    InferRequest,
    RequestedOutput,
    datatype_of,
    encode_bytes_elements,
    input_where,
    tensor_from_bytes,
    tensor_from_values,
    tensor_header,
)
from .config import Settings
from .errors import BadRequest, ClientClosed, InferenceError

try:
    from .proto import grpc_predict_v2_pb2 as pb
except ImportError as exc:  # a source tree that was never built or installed
    raise ImportError(
        "modelserve_runtime.proto has no generated modules: install the package "
        "(pip install ., or -e .), which compiles the proto, or serve without gRPC "
        "(--grpc-port 0)"
    ) from exc

if TYPE_CHECKING:
    from .server import RuntimeServer

log = logging.getLogger("modelserve.grpc")

SERVICE = pb.DESCRIPTOR.services_by_name["GRPCInferenceService"].full_name
INFER_PATH = f"/{SERVICE}/ModelInfer"

# HTTP status of an InferenceError -> gRPC code, and back for the metrics' status label.
CODES = {
    400: grpc.StatusCode.INVALID_ARGUMENT,
    401: grpc.StatusCode.UNAUTHENTICATED,
    404: grpc.StatusCode.NOT_FOUND,
    408: grpc.StatusCode.DEADLINE_EXCEEDED,
    413: grpc.StatusCode.RESOURCE_EXHAUSTED,
    499: grpc.StatusCode.CANCELLED,
    503: grpc.StatusCode.UNAVAILABLE,
}

# Which typed `contents` field holds each datatype (FP16 has none: raw only).
CONTENTS_FIELD = {
    "BOOL": "bool_contents",
    "INT8": "int_contents",
    "INT16": "int_contents",
    "INT32": "int_contents",
    "INT64": "int64_contents",
    "UINT8": "uint_contents",
    "UINT16": "uint_contents",
    "UINT32": "uint_contents",
    "UINT64": "uint64_contents",
    "FP32": "fp32_contents",
    "FP64": "fp64_contents",
    "BYTES": "bytes_contents",
}


def _parse(message_type: Any, raw: bytes) -> Any:
    try:
        return message_type.FromString(raw)
    except (DecodeError, RuntimeError, ValueError):
        raise BadRequest(f"request is not a valid {message_type.DESCRIPTOR.name} message") from None


def _param_value(param: pb.InferParameter) -> object:
    choice = param.WhichOneof("parameter_choice")
    return getattr(param, choice) if choice else None


def decode_infer_request(msg: pb.ModelInferRequest) -> InferRequest:
    """A ModelInferRequest as the codec's InferRequest, with the codec's checks."""
    if not msg.inputs:
        raise BadRequest("request: 'inputs' is empty")
    raw = msg.raw_input_contents
    if raw and len(raw) != len(msg.inputs):
        raise BadRequest(
            f"request has {len(raw)} raw_input_contents for {len(msg.inputs)} inputs "
            "(one each, in input order, or none)"
        )
    inputs: list[InferInput] = []
    seen: set[str] = set()
    for index, tensor in enumerate(msg.inputs):
        name = tensor.name
        where = input_where(name)
        if name in seen:
            raise BadRequest(f"{where} appears twice")
        seen.add(name)
        datatype = tensor.datatype
        dtype, shape, count = tensor_header(where, datatype, list(tensor.shape))
        if raw:
            if tensor.HasField("contents"):
                raise BadRequest(f"{where}: has both contents and raw_input_contents")
            array = tensor_from_bytes(where, datatype, dtype, shape, count, memoryview(raw[index]))
        else:
            field = CONTENTS_FIELD.get(datatype)
            if field is None:
                raise BadRequest(f"{where}: {datatype} data must be sent in raw_input_contents")
            values = list(getattr(tensor.contents, field))
            if datatype == "BYTES":
                if len(values) != count:
                    raise BadRequest(
                        f"{where}: 'data' has {len(values)} elements, shape needs {count}"
                    )
                array = np.empty(count, dtype=object)
                array[:] = values
            else:
                array = tensor_from_values(where, datatype, dtype, values, count)
        inputs.append(InferInput(name, datatype, shape, array.reshape(shape)))
    outputs = [RequestedOutput(o.name, True) for o in msg.outputs] or None
    return InferRequest(
        inputs=inputs,
        id=msg.id or None,
        outputs=outputs,
        binary_output=True,
        parameters={k: _param_value(v) for k, v in msg.parameters.items()},
        arrives_alone=True,
    )


def encode_infer_response(
    name: str, version: str, outputs: list[tuple[str, np.ndarray, bool]], request_id: str | None
) -> pb.ModelInferResponse:
    response = pb.ModelInferResponse(model_name=name, model_version=version, id=request_id or "")
    contents = []
    for out_name, array, _binary in outputs:
        datatype = datatype_of(array.dtype)
        response.outputs.add(name=out_name, datatype=datatype, shape=array.shape)
        if datatype == "BYTES":
            contents.append(encode_bytes_elements(array))
        else:
            contents.append(np.ascontiguousarray(array, array.dtype.newbyteorder("<")).tobytes())
    response.raw_output_contents.extend(contents)
    return response


class InferenceService:
    """The service's RPCs, over the HTTP server's model, keys, audit log and metrics."""

    def __init__(self, server: RuntimeServer) -> None:
        self.server = server
        self.settings = server.settings
        self.calls = 0  # ModelInfer calls in progress

    # --- plumbing -------------------------------------------------------------------
    def handler(self) -> grpc.GenericRpcHandler:
        def unary(
            method: Callable[[bytes, grpc.aio.ServicerContext], Awaitable[Any]],
        ) -> grpc.RpcMethodHandler:
            # request_deserializer=None: the method gets the raw bytes (see module doc).
            return grpc.unary_unary_rpc_method_handler(
                method, response_serializer=lambda m: m.SerializeToString()
            )

        return grpc.method_handlers_generic_handler(
            SERVICE,
            {
                "ServerLive": unary(self.server_live),
                "ServerReady": unary(self.server_ready),
                "ModelReady": unary(self.model_ready),
                "ServerMetadata": unary(self.server_metadata),
                "ModelMetadata": unary(self.model_metadata),
                "ModelInfer": unary(self.model_infer),
            },
        )

    def _authorize(self, context: grpc.aio.ServicerContext) -> str | None:
        """The caller's key id; raises a 401 InferenceError for a missing/wrong key."""
        keys = self.server.api_keys
        if keys is None:
            return None
        metadata = CIMultiDict(
            (k, v) for k, v in context.invocation_metadata() or () if isinstance(v, str)
        )
        key_id = keys.identify(presented_key(metadata))
        if key_id is None:
            raise InferenceError(
                "missing or invalid API key (metadata authorization: Bearer <key>)", 401
            )
        return key_id

    @staticmethod
    async def _abort(context: grpc.aio.ServicerContext, exc: InferenceError) -> None:
        await context.abort(CODES.get(exc.status, grpc.StatusCode.INTERNAL), str(exc))

    # --- health and metadata (health is open, like /v2/health/*) ---------------------
    async def server_live(self, raw: bytes, context: grpc.aio.ServicerContext) -> Any:
        return pb.ServerLiveResponse(live=True)

    async def server_ready(self, raw: bytes, context: grpc.aio.ServicerContext) -> Any:
        return pb.ServerReadyResponse(ready=self.server.model.ready and not self.server.draining)

    async def model_ready(self, raw: bytes, context: grpc.aio.ServicerContext) -> Any:
        def answer() -> tuple[Any, str | None]:
            msg = _parse(pb.ModelReadyRequest, raw)
            try:
                model = self.server.lookup(msg.name, msg.version or None)
            except InferenceError:  # not a model we serve: not ready (clients see a 404)
                return pb.ModelReadyResponse(ready=False), msg.name
            ready = model.ready and not self.server.draining
            return pb.ModelReadyResponse(ready=ready), msg.name

        return await self._described("ModelReady", raw, context, answer)

    async def server_metadata(self, raw: bytes, context: grpc.aio.ServicerContext) -> Any:
        def answer() -> tuple[Any, str | None]:
            response = pb.ServerMetadataResponse(
                name="modelserve", version=__version__, extensions=["binary_tensor_data"]
            )
            return response, None

        return await self._described("ServerMetadata", raw, context, answer)

    async def model_metadata(self, raw: bytes, context: grpc.aio.ServicerContext) -> Any:
        def answer() -> tuple[Any, str | None]:
            msg = _parse(pb.ModelMetadataRequest, raw)
            model = self.server.lookup(msg.name, msg.version or None)
            if not model.ready:
                raise InferenceError(f"model {model.name!r} is not ready", 503)
            meta = model.metadata()
            response = pb.ModelMetadataResponse(
                name=model.name,
                versions=meta["versions"],
                platform=meta["platform"],
                inputs=meta["inputs"],
                outputs=meta["outputs"],
            )
            return response, model.name

        return await self._described("ModelMetadata", raw, context, answer)

    async def _described(
        self,
        method: str,
        raw: bytes,
        context: grpc.aio.ServicerContext,
        answer: Callable[[], tuple[Any, str | None]],
    ) -> Any:
        """API key, error codes and the audit line for the calls that describe the
        server and its model (audited like their HTTP twins; health is not)."""
        started = time.perf_counter()
        status, key_id, model_name = 500, None, None
        try:
            key_id = self._authorize(context)
            response, model_name = answer()
            status = 200
            return response
        except InferenceError as exc:
            status = exc.status
            await self._abort(context, exc)
        finally:
            if self.server.audit is not None:
                self.server.audit_record(
                    ts=round(time.time(), 3),
                    protocol="grpc",
                    remote=context.peer(),
                    method=method,
                    path=f"/{SERVICE}/{method}",
                    key_id=key_id,
                    model=model_name[:200] if model_name is not None else None,
                    version=None,
                    status=status,
                    latency_ms=round((time.perf_counter() - started) * 1000, 3),
                    request_id=None,
                    bytes_in=len(raw),
                )

    # --- inference ------------------------------------------------------------------
    async def model_infer(self, raw: bytes, context: grpc.aio.ServicerContext) -> Any:
        server = self.server
        started = time.perf_counter()
        status, key_id, label_model, known = 500, None, "_unknown", False
        request_id = model_name = version = None
        self.calls += 1
        server.inflight += 1
        server.inflight_gauge.inc()
        try:
            key_id = self._authorize(context)
            msg = _parse(pb.ModelInferRequest, raw)
            model_name, version = msg.model_name, msg.model_version or None
            known = model_name == server.model.name
            label_model = server.model.name if known else "_unknown"
            if server.draining:
                raise InferenceError("the server is shutting down", 503)
            model = server.lookup(model_name, version)
            request = decode_infer_request(msg)
            request.company_expected = self.calls > 1
            request_id = request.id
            outputs = await model.infer(request)
            response = encode_infer_response(model.name, model.version, outputs, request.id)
            status = 499 if context.done() else 200
            return response
        except InferenceError as exc:
            status = exc.status
            if isinstance(exc, ClientClosed):
                log.info("client went away: %s", exc)
            await self._abort(context, exc)
        except asyncio.CancelledError:  # the client cancelled, or its deadline passed
            status = ClientClosed.status
            raise
        except Exception:
            log.exception("inference failed")
            status = 500
            await context.abort(
                grpc.StatusCode.INTERNAL, "internal error during inference; see the server log"
            )
        finally:
            self.calls -= 1
            server.inflight -= 1
            server.inflight_gauge.dec()
            if status != 401:  # as over HTTP, where auth fails before the handler counts
                server.count(label_model, status)
            if known:
                server.duration.observe(time.perf_counter() - started)
            if server.audit is not None:
                server.audit_record(
                    ts=round(time.time(), 3),
                    protocol="grpc",
                    remote=context.peer(),
                    method="ModelInfer",
                    path=INFER_PATH,
                    key_id=key_id,
                    model=model_name[:200] if model_name is not None else None,
                    version=(version or server.model.version) if model_name is not None else None,
                    status=status,
                    latency_ms=round((time.perf_counter() - started) * 1000, 3),
                    request_id=request_id,
                    bytes_in=len(raw),
                )


def _credentials(settings: Settings) -> grpc.ServerCredentials | None:
    if not settings.tls_cert:
        return None
    with open(settings.tls_key, "rb") as key, open(settings.tls_cert, "rb") as cert:  # type: ignore[arg-type]
        return grpc.ssl_server_credentials([(key.read(), cert.read())])


async def start_grpc(
    server: RuntimeServer, settings: Settings, reuse_port: bool
) -> grpc.aio.Server:
    """Listen on --grpc-port; the caller stops it (`await grpc_server.stop(grace)`)."""
    grpc_server = grpc.aio.server(
        handlers=[InferenceService(server).handler()],
        # Concurrent calls are bounded like HTTP connections; over it, RESOURCE_EXHAUSTED.
        maximum_concurrent_rpcs=settings.max_connections,
        options=[
            ("grpc.max_receive_message_length", settings.max_body_bytes),
            ("grpc.max_send_message_length", -1),
            # grpcio sets SO_REUSEPORT by default, which would let a second server bind
            # the same port unnoticed; only --workers share it on purpose.
            ("grpc.so_reuseport", 1 if reuse_port else 0),
            # A connection that never finishes its TLS/HTTP/2 handshake is dropped as
            # an HTTP one that never finishes its headers; idle ones as idle HTTP ones.
            ("grpc.server_handshake_timeout_ms", int(settings.header_timeout_s * 1000)),
            ("grpc.max_connection_idle_ms", int(settings.keepalive_timeout_s * 1000)),
        ],
    )
    address = f"{settings.host}:{settings.grpc_port}"
    credentials = _credentials(settings)
    if credentials is None:
        grpc_server.add_insecure_port(address)
    else:
        grpc_server.add_secure_port(address, credentials)
    await grpc_server.start()
    log.info("gRPC listening on %s (%s)", address, "TLS" if credentials else "plaintext")
    return grpc_server
