"""gRPC: the Open Inference Protocol v2 service (`inference.GRPCInferenceService`), its
RPCs running on the HTTP server's event loop, in the same process; gRPC's HTTP/2
transport on that loop (grpc_h2.py) takes the calls, or one of grpcio's servers
(start_grpc says why and how).

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
import concurrent.futures
import logging
import time
from collections.abc import Awaitable, Callable, Iterable
from typing import TYPE_CHECKING, Any, Protocol

import grpc
import numpy as np
from google.protobuf.message import DecodeError
from multidict import CIMultiDict

from . import __version__, grpc_h2
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


class Call(Protocol):
    """What the service reads of a call, whichever grpcio server runs it."""

    def peer(self) -> str: ...
    def metadata(self) -> Iterable[tuple[str, str | bytes]]: ...
    def done(self) -> bool: ...  # the call is over: cancelled, past its deadline


class _AioCall:
    def __init__(self, context: grpc.aio.ServicerContext) -> None:
        self.context = context

    def peer(self) -> str:
        return self.context.peer()

    def metadata(self) -> Iterable[tuple[str, str | bytes]]:
        return self.context.invocation_metadata() or ()

    def done(self) -> bool:
        return self.context.done()


class _ThreadCall:
    """A call on grpcio's thread-pool server, read from the event loop: peer and
    metadata are taken in the handler thread, before the hand-over."""

    def __init__(self, context: grpc.ServicerContext) -> None:
        self.context = context
        self._peer = context.peer()
        self._metadata = tuple(context.invocation_metadata() or ())
        self.task: asyncio.Task | None = None  # its work on the loop, once started

    def cancel(self) -> None:
        """On the loop, when grpcio ends the call early. Work not started yet sees
        done() as it starts (model_infer counts it as a client that went away)."""
        if self.task is not None:
            self.task.cancel()

    def peer(self) -> str:
        return self._peer

    def metadata(self) -> Iterable[tuple[str, str | bytes]]:
        return self._metadata

    def done(self) -> bool:
        return not self.context.is_active()


Core = Callable[[bytes, Call], Awaitable[Any]]


def _code(exc: InferenceError) -> grpc.StatusCode:
    return CODES.get(exc.status, grpc.StatusCode.INTERNAL)


class InferenceService:
    """The service's RPCs, over the HTTP server's model, keys, audit log and metrics.

    The RPCs are coroutines on the HTTP server's event loop that answer a message or
    raise InferenceError; `aio_handler` serves them from grpcio's asyncio server on that
    loop, `thread_handler` from grpcio's thread-pool server, whose handler threads hand
    each call to the loop and wait (see start_grpc for why both)."""

    def __init__(self, server: RuntimeServer, arrives_alone: bool = False) -> None:
        self.server = server
        self.settings = server.settings
        self.calls = 0  # ModelInfer calls in progress
        # grpcio's asyncio server hands calls to the loop one per event (codec.py's
        # InferRequest.arrives_alone); the thread-pool server's hand-overs queue up and
        # reach the loop together, like requests from one socket read.
        self.arrives_alone = arrives_alone

    # --- plumbing -------------------------------------------------------------------
    def methods(self) -> dict[str, Core]:
        return {
            "ServerLive": self.server_live,
            "ServerReady": self.server_ready,
            "ModelReady": self.model_ready,
            "ServerMetadata": self.server_metadata,
            "ModelMetadata": self.model_metadata,
            "ModelInfer": self.model_infer,
        }

    @staticmethod
    def _generic(methods: dict[str, Callable[..., Any]]) -> grpc.GenericRpcHandler:
        # request_deserializer=None: the method gets the raw bytes (see module doc).
        return grpc.method_handlers_generic_handler(
            SERVICE,
            {
                name: grpc.unary_unary_rpc_method_handler(
                    method, response_serializer=lambda m: m.SerializeToString()
                )
                for name, method in methods.items()
            },
        )

    def aio_handler(self) -> grpc.GenericRpcHandler:
        def serve(core: Core) -> Callable[[bytes, grpc.aio.ServicerContext], Awaitable[Any]]:
            async def method(raw: bytes, context: grpc.aio.ServicerContext) -> Any:
                try:
                    return await core(raw, _AioCall(context))
                except InferenceError as exc:
                    await context.abort(_code(exc), str(exc))

            return method

        return self._generic({name: serve(core) for name, core in self.methods().items()})

    def thread_handler(self, loop: asyncio.AbstractEventLoop) -> grpc.GenericRpcHandler:
        def serve(core: Core) -> Callable[[bytes, grpc.ServicerContext], Any]:
            async def run(raw: bytes, call: _ThreadCall) -> Any:
                call.task = asyncio.current_task()
                return await core(raw, call)

            def method(raw: bytes, context: grpc.ServicerContext) -> Any:
                call = _ThreadCall(context)
                future = asyncio.run_coroutine_threadsafe(run(raw, call), loop)
                # The call ends early (client cancelled, deadline passed): stop its work
                # on the loop, which counts it as 499 like the asyncio server does.
                context.add_callback(lambda: loop.call_soon_threadsafe(call.cancel))
                try:
                    return future.result()
                except InferenceError as exc:
                    context.abort(_code(exc), str(exc))
                except concurrent.futures.CancelledError:  # grpcio has ended the call
                    context.abort(grpc.StatusCode.CANCELLED, "the call ended before its answer")

            return method

        return self._generic({name: serve(core) for name, core in self.methods().items()})

    def _authorize(self, call: Call) -> str | None:
        """The caller's key id; raises a 401 InferenceError for a missing/wrong key."""
        keys = self.server.api_keys
        if keys is None:
            return None
        metadata = CIMultiDict((k, v) for k, v in call.metadata() if isinstance(v, str))
        key_id = keys.identify(presented_key(metadata))
        if key_id is None:
            raise InferenceError(
                "missing or invalid API key (metadata authorization: Bearer <key>)", 401
            )
        return key_id

    # --- health and metadata (health is open, like /v2/health/*) ---------------------
    async def server_live(self, raw: bytes, call: Call) -> Any:
        return pb.ServerLiveResponse(live=True)

    async def server_ready(self, raw: bytes, call: Call) -> Any:
        return pb.ServerReadyResponse(ready=self.server.model.ready and not self.server.draining)

    async def model_ready(self, raw: bytes, call: Call) -> Any:
        def answer() -> tuple[Any, str | None]:
            msg = _parse(pb.ModelReadyRequest, raw)
            try:
                model = self.server.lookup(msg.name, msg.version or None)
            except InferenceError:  # not a model we serve: not ready (clients see a 404)
                return pb.ModelReadyResponse(ready=False), msg.name
            ready = model.ready and not self.server.draining
            return pb.ModelReadyResponse(ready=ready), msg.name

        return await self._described("ModelReady", raw, call, answer)

    async def server_metadata(self, raw: bytes, call: Call) -> Any:
        def answer() -> tuple[Any, str | None]:
            response = pb.ServerMetadataResponse(
                name="modelserve", version=__version__, extensions=["binary_tensor_data"]
            )
            return response, None

        return await self._described("ServerMetadata", raw, call, answer)

    async def model_metadata(self, raw: bytes, call: Call) -> Any:
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

        return await self._described("ModelMetadata", raw, call, answer)

    async def _described(
        self,
        method: str,
        raw: bytes,
        call: Call,
        answer: Callable[[], tuple[Any, str | None]],
    ) -> Any:
        """API key, error codes and the audit line for the calls that describe the
        server and its model (audited like their HTTP twins; health is not)."""
        started = time.perf_counter()
        status, key_id, model_name = 500, None, None
        try:
            key_id = self._authorize(call)
            response, model_name = answer()
            status = 200
            return response
        except InferenceError as exc:
            status = exc.status
            raise
        finally:
            if self.server.audit is not None:
                self.server.audit_record(
                    ts=round(time.time(), 3),
                    protocol="grpc",
                    remote=call.peer(),
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
    async def model_infer(self, raw: bytes, call: Call) -> Any:
        server = self.server
        started = time.perf_counter()
        status, key_id, label_model, known = 500, None, "_unknown", False
        request_id = model_name = version = None
        self.calls += 1
        alone = server.request_began()
        try:
            key_id = self._authorize(call)
            if call.done():  # ended while it waited to be served: nobody to answer
                raise ClientClosed("the call ended before it was served")
            msg = _parse(pb.ModelInferRequest, raw)
            model_name, version = msg.model_name, msg.model_version or None
            known = model_name == server.model.name
            label_model = server.model.name if known else "_unknown"
            if server.draining:
                raise InferenceError("the server is shutting down", 503)
            model = server.lookup(model_name, version)
            request = decode_infer_request(msg)
            request.arrives_alone = self.arrives_alone
            request.company_expected = self.calls > 1
            request_id = request.id
            outputs = await model.infer(request)
            response = encode_infer_response(model.name, model.version, outputs, request.id)
            status = 499 if call.done() else 200
            return response
        except InferenceError as exc:
            status = exc.status
            if isinstance(exc, ClientClosed):
                log.info("client went away: %s", exc)
            raise
        except asyncio.CancelledError:  # the client cancelled, or its deadline passed
            status = ClientClosed.status
            raise
        except Exception:
            log.exception("inference failed")
            status = 500
            raise InferenceError(
                "internal error during inference; see the server log", 500
            ) from None
        finally:
            self.calls -= 1
            server.request_ended(alone)
            if status != 401:  # as over HTTP, where auth fails before the handler counts
                server.count(label_model, status)
            if known:
                server.duration.observe(time.perf_counter() - started)
            if server.audit is not None:
                server.audit_record(
                    ts=round(time.time(), 3),
                    protocol="grpc",
                    remote=call.peer(),
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


class GrpcListener:
    """The running gRPC server, any kind, stopped the same way."""

    def __init__(self, server: grpc_h2.Listener | grpc.aio.Server | grpc.Server) -> None:
        self.server = server

    async def stop(self, grace: float | None) -> None:
        if isinstance(self.server, grpc_h2.Listener | grpc.aio.Server):
            await self.server.stop(grace)
        else:  # the thread-pool server's stop() returns an Event set once it is done
            done = self.server.stop(grace)
            await asyncio.get_running_loop().run_in_executor(None, done.wait)


async def start_grpc(server: RuntimeServer, settings: Settings, reuse_port: bool) -> GrpcListener:
    """Listen on --grpc-port; the caller stops it (`await listener.stop(grace)`).

    Three servers can take the calls, chosen by --grpc-server (MODELSERVE_GRPC_SERVER):
    - `h2` (the default): gRPC's HTTP/2 transport on this event loop (grpc_h2.py), no
      threads at all; calls read together batch together, as HTTP requests do.
    - `threads`: grpcio's thread-pool server, whose handler threads hand each call to
      this loop and wait for its answer.
    - `asyncio`: grpc.aio on this event loop, through grpcio's poller thread.
    What differs is the server's own cost per call (grpc_h2's docstring has the floors;
    hack/bench-runtime --cpu measures them). grpcio's servers stay selectable as the
    fallback should a client need something of HTTP/2 that h2 lacks."""
    kind = settings.grpc_server  # one of config.GRPC_SERVERS, checked with the flags
    service = InferenceService(server, arrives_alone=kind == "asyncio")
    if kind == "h2":
        return await _start_h2(service, settings, reuse_port)
    options = [
        ("grpc.max_receive_message_length", settings.max_body_bytes),
        ("grpc.max_send_message_length", -1),
        # grpcio sets SO_REUSEPORT by default, which would let a second server bind
        # the same port unnoticed; only --workers share it on purpose.
        ("grpc.so_reuseport", 1 if reuse_port else 0),
        # A connection that never finishes its TLS/HTTP/2 handshake is dropped as
        # an HTTP one that never finishes its headers; idle ones as idle HTTP ones.
        ("grpc.server_handshake_timeout_ms", int(settings.header_timeout_s * 1000)),
        ("grpc.max_connection_idle_ms", int(settings.keepalive_timeout_s * 1000)),
    ]
    grpc_server: grpc.aio.Server | grpc.Server
    if kind == "asyncio":
        grpc_server = grpc.aio.server(
            handlers=[service.aio_handler()],
            # Concurrent calls are bounded like HTTP connections; over it, RESOURCE_EXHAUSTED.
            maximum_concurrent_rpcs=settings.max_connections,
            options=options,
        )
    else:
        # A call holds its handler thread until its batch is done: one thread per call
        # in progress, up to the same bound (threads start as calls need them).
        pool = concurrent.futures.ThreadPoolExecutor(
            settings.max_connections, thread_name_prefix="grpc"
        )
        grpc_server = grpc.server(
            pool,
            handlers=[service.thread_handler(asyncio.get_running_loop())],
            maximum_concurrent_rpcs=settings.max_connections,
            options=options,
        )
    address = f"{settings.host}:{settings.grpc_port}"
    credentials = _credentials(settings)
    if credentials is None:
        grpc_server.add_insecure_port(address)
    else:
        grpc_server.add_secure_port(address, credentials)
    started = grpc_server.start()
    if started is not None:  # the asyncio server's start() is a coroutine
        await started
    log.info(
        "gRPC listening on %s (%s, %s server)",
        address,
        "TLS" if credentials else "plaintext",
        kind,
    )
    return GrpcListener(grpc_server)


async def _start_h2(service: InferenceService, settings: Settings,
                    reuse_port: bool) -> GrpcListener:
    from .server import ssl_context

    listener = grpc_h2.Listener(
        {f"/{SERVICE}/{name}": core for name, core in service.methods().items()}, settings,
        encode=lambda m: m.SerializeToString(),
        code_of=lambda exc: _code(exc).value[0],
        on_reject=lambda reason: service.server.metrics.rejected_connections.labels(
            reason).inc())
    tls = ssl_context(settings)
    try:
        await listener.start(settings.host, settings.grpc_port, tls, reuse_port)
    except OSError as exc:  # the port is taken
        raise RuntimeError(str(exc)) from exc
    log.info("gRPC listening on %s:%d (%s, h2 server)", settings.host, settings.grpc_port,
             "TLS" if tls else "plaintext")
    return GrpcListener(listener)
