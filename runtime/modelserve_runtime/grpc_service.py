"""gRPC: the Open Inference Protocol v2 service (`inference.GRPCInferenceService`), in the
HTTP server's process; grpcio's thread-pool server takes the calls, and each handler
thread serves its call, queueing the rows on the same batcher as HTTP (start_grpc says
why, and what else can be chosen).

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
import os
import threading
import time
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any, Protocol

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
    from .model import Model
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
    """A call on grpcio's thread-pool server, read from its handler thread."""

    def __init__(self, context: grpc.ServicerContext) -> None:
        self.context = context

    def peer(self) -> str:
        return self.context.peer()

    def metadata(self) -> Iterable[tuple[str, str | bytes]]:
        return self.context.invocation_metadata() or ()

    def done(self) -> bool:
        return not self.context.is_active()


class _HandedOverCall(_ThreadCall):
    """A call on grpcio's thread-pool server, read from the event loop (the `loop`
    server): peer and metadata are taken in the handler thread, before the hand-over."""

    def __init__(self, context: grpc.ServicerContext) -> None:
        super().__init__(context)
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


Core = Callable[[bytes, Call], Any]


def _code(exc: InferenceError) -> grpc.StatusCode:
    return CODES.get(exc.status, grpc.StatusCode.INTERNAL)


class _InferCall:
    """One ModelInfer call's bookkeeping, the same on every thread that may serve it:
    the calls in flight, the status it ends with (from the exception that ends it, as
    HTTP's handler does), the request counter, its latency and its audit line. Used as
    `with _InferCall(...) as call: model, request = call.prepare(); ...; call.respond()`."""

    def __init__(self, service: InferenceService, raw: bytes, call: Call) -> None:
        self.service = service
        self.raw = raw
        self.call = call
        self.started = time.perf_counter()
        self.status = 500
        self.key_id: str | None = None
        self.label_model = "_unknown"
        self.known = False
        self.request_id: str | None = None
        self.model_name: str | None = None
        self.version: str | None = None

    def __enter__(self) -> _InferCall:
        self.service.enter()
        return self

    def prepare(self) -> tuple[Model, InferRequest]:
        """Key, parse, model, decode: the request as the model takes it."""
        service, server = self.service, self.service.server
        self.key_id = service._authorize(self.call)
        if self.call.done():  # ended while it waited to be served: nobody to answer
            raise ClientClosed("the call ended before it was served")
        msg = _parse(pb.ModelInferRequest, self.raw)
        self.model_name, self.version = msg.model_name, msg.model_version or None
        self.known = self.model_name == server.model.name
        self.label_model = server.model.name if self.known else "_unknown"
        if server.draining:
            raise InferenceError("the server is shutting down", 503)
        model = server.lookup(self.model_name, self.version)
        request = decode_infer_request(msg)
        request.arrives_alone = service.arrives_alone
        request.company_expected = service.calls > 1
        self.request_id = request.id
        return model, request

    def respond(
        self, model: Model, request: InferRequest, outputs: list[tuple[str, np.ndarray, bool]]
    ) -> pb.ModelInferResponse:
        response = encode_infer_response(model.name, model.version, outputs, request.id)
        self.status = 499 if self.call.done() else 200
        return response

    def __exit__(self, kind: type | None, exc: BaseException | None, tb: object) -> bool:
        try:
            if isinstance(exc, InferenceError):
                self.status = exc.status
                if isinstance(exc, ClientClosed):
                    log.info("client went away: %s", exc)
            # The client cancelled, or its deadline passed (asyncio's on the loop, the
            # queued request's future's in a handler thread).
            elif isinstance(exc, asyncio.CancelledError | concurrent.futures.CancelledError):
                self.status = ClientClosed.status
            elif isinstance(exc, Exception):
                log.error("inference failed", exc_info=exc)
                self.status = 500
                raise InferenceError(
                    "internal error during inference; see the server log", 500
                ) from None
            return False
        finally:
            self._end()

    def _end(self) -> None:
        server = self.service.server
        self.service.leave()
        if self.status != 401:  # as over HTTP, where auth fails before the handler counts
            server.count(self.label_model, self.status)
        if self.known:
            server.duration.observe(time.perf_counter() - self.started)
        if server.audit is not None:
            named = self.model_name is not None
            server.audit_record(
                ts=round(time.time(), 3),
                protocol="grpc",
                remote=self.call.peer(),
                method="ModelInfer",
                path=INFER_PATH,
                key_id=self.key_id,
                model=self.model_name[:200] if self.model_name is not None else None,
                version=(self.version or server.model.version) if named else None,
                status=self.status,
                latency_ms=round((time.perf_counter() - self.started) * 1000, 3),
                request_id=self.request_id,
                bytes_in=len(self.raw),
            )


class InferenceService:
    """The service's RPCs, over the HTTP server's model, keys, audit log and metrics.

    ModelInfer runs one of three ways (start_grpc says why): `threads_handler` does the
    whole call in grpcio's handler thread, which queues its rows on the model's batcher
    and blocks for them (`model_infer_here`); `loop_handler` hands each call from the
    handler thread to the event loop and waits; `aio_handler` serves it from grpcio's
    asyncio server on the loop (both `model_infer`). The other RPCs answer at once,
    where the call arrives."""

    def __init__(self, server: RuntimeServer, arrives_alone: bool = False) -> None:
        self.server = server
        self.settings = server.settings
        self.calls = 0  # ModelInfer calls in progress (see enter)
        self._calls_lock = threading.Lock()
        # grpcio's asyncio server hands calls to the loop one per event (codec.py's
        # InferRequest.arrives_alone); the thread-pool server's hand-overs queue up and
        # reach the loop together, like requests from one socket read.
        self.arrives_alone = arrives_alone

    def enter(self) -> None:
        # From several handler threads at once: `+=` is not atomic between threads.
        with self._calls_lock:
            self.calls += 1
        self.server.enter()

    def leave(self) -> None:
        with self._calls_lock:
            self.calls -= 1
        self.server.leave()

    # --- plumbing -------------------------------------------------------------------
    def _answers(self) -> dict[str, Core]:
        """The RPCs that answer at once (no batch to wait for), on any thread."""
        return {
            "ServerLive": self.server_live,
            "ServerReady": self.server_ready,
            "ModelReady": self.model_ready,
            "ServerMetadata": self.server_metadata,
            "ModelMetadata": self.model_metadata,
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
        def serve(core: Callable[[bytes, Call], Any], awaited: bool) -> Any:
            async def method(raw: bytes, context: grpc.aio.ServicerContext) -> Any:
                try:
                    answer = core(raw, _AioCall(context))
                    return await answer if awaited else answer
                except InferenceError as exc:
                    await context.abort(_code(exc), str(exc))

            return method

        methods = {name: serve(core, False) for name, core in self._answers().items()}
        methods["ModelInfer"] = serve(self.model_infer, True)
        return self._generic(methods)

    def _thread_methods(self) -> dict[str, Callable[[bytes, grpc.ServicerContext], Any]]:
        def serve(core: Core) -> Callable[[bytes, grpc.ServicerContext], Any]:
            def method(raw: bytes, context: grpc.ServicerContext) -> Any:
                try:
                    return core(raw, _ThreadCall(context))
                except InferenceError as exc:
                    context.abort(_code(exc), str(exc))

            return method

        return {name: serve(core) for name, core in self._answers().items()}

    def threads_handler(self) -> grpc.GenericRpcHandler:
        """grpcio's thread-pool server, each call served whole in its handler thread."""

        def model_infer(raw: bytes, context: grpc.ServicerContext) -> Any:
            try:
                return self.model_infer_here(raw, context)
            except InferenceError as exc:
                context.abort(_code(exc), str(exc))
            except concurrent.futures.CancelledError:  # grpcio has ended the call
                context.abort(grpc.StatusCode.CANCELLED, "the call ended before its answer")

        methods = self._thread_methods()
        methods["ModelInfer"] = model_infer
        return self._generic(methods)

    def loop_handler(self, loop: asyncio.AbstractEventLoop) -> grpc.GenericRpcHandler:
        """grpcio's thread-pool server, ModelInfer handed over to the event loop."""

        async def run(raw: bytes, call: _HandedOverCall) -> Any:
            call.task = asyncio.current_task()
            return await self.model_infer(raw, call)

        def model_infer(raw: bytes, context: grpc.ServicerContext) -> Any:
            call = _HandedOverCall(context)
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

        methods = self._thread_methods()
        methods["ModelInfer"] = model_infer
        return self._generic(methods)

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
    def server_live(self, raw: bytes, call: Call) -> Any:
        return pb.ServerLiveResponse(live=True)

    def server_ready(self, raw: bytes, call: Call) -> Any:
        return pb.ServerReadyResponse(ready=self.server.model.ready and not self.server.draining)

    def model_ready(self, raw: bytes, call: Call) -> Any:
        def answer() -> tuple[Any, str | None]:
            msg = _parse(pb.ModelReadyRequest, raw)
            try:
                model = self.server.lookup(msg.name, msg.version or None)
            except InferenceError:  # not a model we serve: not ready (clients see a 404)
                return pb.ModelReadyResponse(ready=False), msg.name
            ready = model.ready and not self.server.draining
            return pb.ModelReadyResponse(ready=ready), msg.name

        return self._described("ModelReady", raw, call, answer)

    def server_metadata(self, raw: bytes, call: Call) -> Any:
        def answer() -> tuple[Any, str | None]:
            response = pb.ServerMetadataResponse(
                name="modelserve", version=__version__, extensions=["binary_tensor_data"]
            )
            return response, None

        return self._described("ServerMetadata", raw, call, answer)

    def model_metadata(self, raw: bytes, call: Call) -> Any:
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

        return self._described("ModelMetadata", raw, call, answer)

    def _described(
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
        """ModelInfer on the event loop (the asyncio server; the `loop` server)."""
        with _InferCall(self, raw, call) as infer:
            model, request = infer.prepare()
            outputs = await model.infer(request)
            return infer.respond(model, request, outputs)

    def model_infer_here(self, raw: bytes, context: grpc.ServicerContext) -> Any:
        """ModelInfer in grpcio's handler thread, start to end: it queues its rows on
        the model's batcher and blocks for them. The event loop sees the call only as
        rows in the batch it forms; the thread is woken once, by its answer."""
        with _InferCall(self, raw, _ThreadCall(context)) as infer:
            model, request = infer.prepare()
            future = model.enqueue_from_thread(request)
            # The call ends early (client cancelled, deadline passed): a request still
            # queued leaves the queue and the thread goes (499 through _InferCall);
            # one whose batch runs is answered to nobody (499 too).
            if not context.add_callback(future.cancel):
                future.cancel()
            outputs = model.select_outputs(request, future.result())
            return infer.respond(model, request, outputs)


def _credentials(settings: Settings) -> grpc.ServerCredentials | None:
    if not settings.tls_cert:
        return None
    with open(settings.tls_key, "rb") as key, open(settings.tls_cert, "rb") as cert:  # type: ignore[arg-type]
        return grpc.ssl_server_credentials([(key.read(), cert.read())])


class GrpcListener:
    """The running gRPC server, either kind, stopped the same way."""

    def __init__(self, server: grpc.aio.Server | grpc.Server) -> None:
        self.server = server

    async def stop(self, grace: float | None) -> None:
        if isinstance(self.server, grpc.aio.Server):
            await self.server.stop(grace)
        else:  # the thread-pool server's stop() returns an Event set once it is done
            done = self.server.stop(grace)
            await asyncio.get_running_loop().run_in_executor(None, done.wait)


# MODELSERVE_GRPC_SERVER: which grpcio server runs the service, and where ModelInfer runs.
GRPC_SERVERS = ("threads", "loop", "asyncio")


async def start_grpc(server: RuntimeServer, settings: Settings, reuse_port: bool) -> GrpcListener:
    """Listen on --grpc-port; the caller stops it (`await listener.stop(grace)`).

    MODELSERVE_GRPC_SERVER chooses how calls are served:
    - `threads` (the default): grpcio's thread-pool server; each handler thread does its
      call's work itself (key, parse, decode, validate, encode, audit, metrics), queues
      the rows on the model's batcher and blocks for them: one thread wake-up per call
      (its answer). The event loop only forms and runs batches.
    - `loop`: the same server, but each handler thread hands its call to this loop and
      waits: two hand-overs between threads per call, each a wake-up of a sleeping
      thread (~300 us of CPU on the H200 host; see docs/runtime.md).
    - `asyncio`: grpc.aio on this loop; grpcio passes every completion-queue event
      through a poller thread and a wake-up of the loop (~19 context switches per call
      against ~7 for the thread-pool server's floor).
    The engine process's workers (--engine-process) reach the engine through their
    loop, so there `threads` serves ModelInfer as `loop` does."""
    kind = os.environ.get("MODELSERVE_GRPC_SERVER", "threads")
    if kind not in GRPC_SERVERS:
        raise RuntimeError(f"MODELSERVE_GRPC_SERVER is {kind!r}; use one of {GRPC_SERVERS}")
    if kind == "threads" and not server.model.batches_here:
        kind = "loop"
    service = InferenceService(server, arrives_alone=kind == "asyncio")
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
        handler = (
            service.threads_handler()
            if kind == "threads"
            else service.loop_handler(asyncio.get_running_loop())
        )
        grpc_server = grpc.server(
            pool,
            handlers=[handler],
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
