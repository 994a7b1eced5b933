"""HTTP server: Open Inference Protocol v2 over aiohttp (uvloop when installed), and the
process around it (the gRPC listener beside it is grpc_service.py).

Why aiohttp: measured against the alternatives (hack/bench-runtime; docs/runtime.md), a
single aiohttp process on uvloop keeps the GPU fed, and it is already a core dependency.
"""

from __future__ import annotations

import asyncio
import faulthandler
import inspect
import logging
import os
import signal
import ssl
import sys
import time
from collections.abc import Awaitable, Callable

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, Counter, generate_latest

from . import __version__, progress
from .audit import AuditLog
from .auth import ApiKeys, presented_key
from .backends import create_backend
from .busypoll import POLL
from .codec import HEADER_LENGTH, decode_request, encode_response
from .config import ConfigError, Settings, load_settings
from .connections import ConnectionLimits
from .contract import PROGRESS_PATH
from .errors import (
    BadRequest,
    ClientClosed,
    InferenceError,
    NotFound,
    Overloaded,
    PayloadTooLarge,
    RequestTimeout,
    Unavailable,
    quote,
)
from .metrics import Metrics
from .model import Model

log = logging.getLogger("modelserve.server")

OPEN_PATHS = ("/v2/health/", "/metrics", PROGRESS_PATH)
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def _error(status: int, message: str, headers: dict[str, str] | None = None) -> web.Response:
    return web.json_response({"error": message}, status=status, headers=headers)


def _route_error(request: web.Request, exc: web.HTTPException) -> web.Response:
    """aiohttp's own 404/405 (no such route) as the documented JSON error."""
    if exc.status == 405:
        message = f"method {request.method} is not allowed on {quote(request.path, 200)}"
    elif exc.status == 404:
        message = (
            f"no such endpoint: {request.method} {quote(request.path, 200)}; see "
            "/v2/models/{model}[/versions/{version}]/infer"
        )
    else:
        message = exc.reason
    headers = {k: v for k, v in exc.headers.items() if k == "Allow"}
    return _error(exc.status, message, headers)


class RuntimeServer:
    def __init__(self, settings: Settings, metrics: Metrics | None = None) -> None:
        self.settings = settings
        self.metrics = metrics or Metrics()
        if os.environ.get("MODELSERVE_ROLE") == "worker":
            from .engine import RemoteModel

            socket_path = os.environ["MODELSERVE_ENGINE_SOCKET"]
            self.model: Model = RemoteModel(settings, self.metrics, socket_path)
        else:
            self.model = Model(settings, create_backend(settings), self.metrics)
        keys_file = settings.api_keys_file
        self.api_keys = ApiKeys.from_file(keys_file) if keys_file else None
        self.draining = False
        self.inflight = 0
        self.arrivals = 0  # inference requests begun so far (request_began)
        self.inflight_gauge = self.metrics.inflight.labels(settings.model_name)
        # Label children are looked up once, not per request (the hot path).
        self.duration = self.metrics.request_duration.labels(
            settings.model_name, settings.model_version
        )
        self._counters: dict[tuple[str, int], Counter] = {}
        # The success and server-error series exist from the start, at 0: an error-rate
        # query (status=~"5..") over a healthy version reads 0, not "no data", which a
        # canary analysis must otherwise treat as a failed measurement.
        for status in (200, 500):
            self._counters[(settings.model_name, status)] = self.metrics.requests.labels(
                settings.model_name, settings.model_version, str(status))
        self.audit = AuditLog(sys.stdout) if settings.access_log else None
        rejected = self.metrics.rejected_connections
        self.connections = ConnectionLimits(
            settings.max_connections,
            settings.header_timeout_s,
            lambda reason: rejected.labels(reason).inc(),
        )

    def request_began(self) -> int:
        """Count an inference request (HTTP or gRPC) in flight. Returns a token for
        `request_ended`: nonzero when the request found the process otherwise idle."""
        self.inflight += 1
        self.inflight_gauge.inc()
        self.arrivals += 1
        return self.arrivals if self.inflight == 1 else 0

    def request_ended(self, alone: int) -> None:
        """The request is answered. If it had the process to itself from start to end
        (no other began meanwhile), the next one is likely the same client's: keep the
        event loop polling for it (busypoll.py; a no-op unless --busy-poll-us is set)."""
        self.inflight -= 1
        self.inflight_gauge.dec()
        if alone and alone == self.arrivals:
            POLL.kick()

    def count(self, label_model: str, status: int) -> None:
        """One finished inference request in modelserve_requests_total (HTTP and gRPC)."""
        counter = self._counters.get((label_model, status))
        if counter is None:
            counter = self.metrics.requests.labels(label_model, self.model.version, str(status))
            self._counters[(label_model, status)] = counter
        counter.inc()

    def audit_record(self, **fields: object) -> None:
        """One audit line: who, what, outcome; never tensor contents (HTTP and gRPC)."""
        if self.audit is not None:
            self.audit.record(fields)

    # --- app -----------------------------------------------------------------------
    def app(self) -> web.Application:
        app = web.Application(
            client_max_size=self.settings.max_body_bytes,
            middlewares=[self._auth_and_audit],
        )
        r = app.router
        r.add_get("/v2", self.server_metadata)
        r.add_get("/v2/health/live", self.live)
        r.add_get("/v2/health/ready", self.ready)
        r.add_get("/metrics", self.prometheus)
        r.add_get(PROGRESS_PATH, self.progress)
        for base in ("/v2/models/{model}", "/v2/models/{model}/versions/{version}"):
            r.add_get(base, self.model_metadata)
            r.add_get(base + "/ready", self.model_ready)
            r.add_post(base + "/infer", self.infer)
        return app

    @web.middleware
    async def _auth_and_audit(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        # The request's headers are complete: the connection's header timer stops.
        guard = self.connections.guard_of(request.protocol)
        if guard is not None:
            guard.request_started()
        try:
            return await self._audited(request, handler)
        except web.HTTPException as exc:
            if exc.status < 400:
                raise
            return _route_error(request, exc)
        finally:
            if guard is not None:
                guard.request_finished()

    async def _audited(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        path = request.path
        if path.startswith(OPEN_PATHS):
            return await handler(request)
        started = time.perf_counter()
        key_id = None
        status = 500
        try:
            if self.api_keys is not None:
                key_id = self.api_keys.identify(presented_key(request.headers))
                if key_id is None:
                    status = 401
                    return _error(
                        401,
                        "missing or invalid API key (Authorization: Bearer <key>)",
                        {"WWW-Authenticate": "Bearer"},
                    )
            request["key_id"] = key_id
            response = await handler(request)
            status = response.status
            return response
        except web.HTTPException as exc:
            status = exc.status
            raise
        except asyncio.CancelledError:
            status = ClientClosed.status
            raise
        finally:
            if self.audit is not None:
                self.audit_record(
                    ts=round(time.time(), 3),
                    protocol="http",
                    remote=request.remote,
                    method=request.method,
                    path=path if len(path) <= 200 else path[:200] + "...",
                    key_id=key_id,
                    model=(request.match_info.get("model") or "")[:200] or None,
                    version=request.match_info.get("version")
                    or (self.settings.model_version if "model" in request.match_info else None),
                    # The inference handler's own verdict wins: a 200 that could not be
                    # delivered is a 499.
                    status=request.get("status", status),
                    latency_ms=round((time.perf_counter() - started) * 1000, 3),
                    request_id=request.get("request_id"),
                    # Bytes of body actually received, not the Content-Length claimed.
                    bytes_in=request.get("bytes_in", 0),
                )

    # --- health and metadata -------------------------------------------------------
    async def live(self, request: web.Request) -> web.Response:
        return web.json_response({"live": True})

    async def ready(self, request: web.Request) -> web.Response:
        ok = self.model.ready and not self.draining
        return web.json_response({"ready": ok}, status=200 if ok else 503)

    async def progress(self, request: web.Request) -> web.Response:
        """What the pod is doing until it is ready (progress.py): the operator reads it."""
        return web.json_response(progress.current())

    async def server_metadata(self, request: web.Request) -> web.Response:
        return web.json_response(
            {"name": "modelserve", "version": __version__, "extensions": ["binary_tensor_data"]}
        )

    async def prometheus(self, request: web.Request) -> web.Response:
        body = generate_latest(self.metrics.scrape_registry())
        return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})

    def _lookup(self, request: web.Request) -> Model:
        name = request.match_info["model"]
        version = request.match_info.get("version")
        return self.lookup(name, version)

    def lookup(self, name: str, version: str | None) -> Model:
        if name != self.model.name:
            raise NotFound(
                f"unknown model {quote(name, 100)}; this server serves {self.model.name!r}"
            )
        if version and version != self.model.version:
            raise NotFound(
                f"unknown version {quote(version, 40)} of model {name!r}; "
                f"served: {self.model.version!r}"
            )
        return self.model

    async def model_metadata(self, request: web.Request) -> web.Response:
        try:
            model = self._lookup(request)
        except InferenceError as exc:
            return _error(exc.status, str(exc))
        if not model.ready:
            return _error(503, f"model {model.name!r} is not ready")
        return web.json_response(model.metadata())

    async def model_ready(self, request: web.Request) -> web.Response:
        try:
            model = self._lookup(request)
        except InferenceError as exc:
            return _error(exc.status, str(exc))
        ok = model.ready and not self.draining
        return web.json_response({"name": model.name, "ready": ok}, status=200 if ok else 503)

    # --- inference -----------------------------------------------------------------
    async def infer(self, request: web.Request) -> web.Response:
        started = time.perf_counter()
        name = request.match_info["model"]
        known = name == self.model.name
        # Unknown names share one label value so callers cannot inflate cardinality.
        label_model = self.model.name if known else "_unknown"
        alone = self.request_began()
        status = 500
        try:
            response = await self._infer(request)
            status = response.status
            if request.transport is None or request.transport.is_closing():
                status = ClientClosed.status  # answered, but nobody is there to read it
            return response
        except ClientClosed as exc:
            log.info("client went away: %s", exc)
            status = exc.status
            return _error(exc.status, str(exc))
        except InferenceError as exc:
            status = exc.status
            headers = {"Retry-After": "1"} if isinstance(exc, Overloaded | Unavailable) else None
            response = _error(exc.status, str(exc), headers)
            if isinstance(exc, RequestTimeout):
                response.force_close()  # the rest of the body is not worth waiting for
            return response
        except asyncio.CancelledError:
            status = ClientClosed.status
            raise
        except Exception:
            log.exception("inference failed")
            status = 500
            return _error(500, "internal error during inference; see the server log")
        finally:
            self.request_ended(alone)
            request["status"] = status
            self.count(label_model, status)
            if known:
                self.duration.observe(time.perf_counter() - started)

    async def _infer(self, request: web.Request) -> web.Response:
        if self.draining:
            raise Unavailable("the server is shutting down")
        model = self._lookup(request)
        if request.content_length is not None and (
            request.content_length > self.settings.max_body_bytes
        ):
            raise PayloadTooLarge(
                f"body of {request.content_length} bytes exceeds --max-body-bytes "
                f"{self.settings.max_body_bytes}"
            )
        body = await self._read_body(request)
        decoded = decode_request(body, request.headers.get(HEADER_LENGTH))
        request["request_id"] = decoded.id
        outputs = await model.infer(decoded)
        chunks, header_length = encode_response(model.name, model.version, outputs, decoded.id)
        if header_length is None:
            return web.Response(body=chunks[0], content_type="application/json")
        return web.Response(
            body=b"".join(chunks),
            headers={
                HEADER_LENGTH: str(header_length),
                "Content-Type": "application/octet-stream",
            },
        )

    async def _read_body(self, request: web.Request) -> bytearray:
        """The whole body within --body-timeout-s, counting what arrives (bytes_in).

        One copy of the body (request.read() makes two; ResNet bodies are 300 KB). A
        client that hangs up or stops sending is its own failure: 499 or 408, not ours.
        """
        length = request.content_length
        limit = self.settings.max_body_bytes
        body = bytearray(length or 0)
        received = 0
        timeout_s = self.settings.body_timeout_s
        try:
            async with asyncio.timeout(timeout_s):
                while True:
                    chunk = await request.content.readany()
                    if not chunk:
                        break
                    end = received + len(chunk)
                    if length is not None:
                        body[received:end] = chunk
                    elif end > limit:  # chunked: no length to check up front
                        raise PayloadTooLarge(f"body exceeds --max-body-bytes {limit}")
                    else:
                        body += chunk
                    received = end
        except TimeoutError:
            raise RequestTimeout(
                f"body not received within --body-timeout-s {timeout_s:g} "
                f"({received} of {length if length is not None else '?'} bytes arrived)"
            ) from None
        except ConnectionError as exc:  # aiohttp's "Connection lost" when the client hangs up
            raise ClientClosed(
                f"client closed the connection after {received} of "
                f"{length if length is not None else '?'} body bytes ({exc})"
            ) from None
        finally:
            request["bytes_in"] = received
        if length is not None and received < length:
            raise BadRequest(f"body ended after {received} of its {length} bytes")
        return body


# --- process -----------------------------------------------------------------------
def ssl_context(settings: Settings) -> ssl.SSLContext | None:
    if not settings.tls_cert:
        return None
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    ctx.load_cert_chain(settings.tls_cert, settings.tls_key)
    return ctx


async def serve(settings: Settings) -> int:
    POLL.configure(settings.busy_poll_us)
    server = RuntimeServer(settings)
    runner = web.AppRunner(
        server.app(),
        access_log=None,
        handle_signals=False,
        # In-flight inferences are drained by serve() itself (bounded by
        # --drain-timeout-s); what aiohttp still waits for at cleanup is idle keep-alive
        # connections, which need no more than a moment.
        shutdown_timeout=2.0,
        keepalive_timeout=settings.keepalive_timeout_s,
    )
    await runner.setup()
    loop = asyncio.get_running_loop()
    reuse_port = os.environ.get("MODELSERVE_REUSE_PORT") == "1"
    assert runner.server is not None
    # Our own listener rather than web.TCPSite: every connection's protocol is wrapped
    # in a ConnectionGuard (connection limit, header timeout). runner.cleanup() still
    # closes the connections, which aiohttp's server object tracks.
    listener = await loop.create_server(
        server.connections.wrap(runner.server),
        settings.host,
        settings.port,
        ssl=ssl_context(settings),
        backlog=4096,
        reuse_port=reuse_port or None,
    )
    log.info(
        "listening on %s:%d (%s)",
        settings.host,
        settings.port,
        "https" if settings.tls_cert else "http",
    )
    grpc_server = None
    if settings.grpc_port:
        try:
            from .grpc_service import start_grpc

            grpc_server = await start_grpc(server, settings, reuse_port)
        except (ImportError, RuntimeError) as exc:  # not generated; port taken
            log.error("cannot serve gRPC on port %d: %s", settings.grpc_port, exc)
            listener.close()
            await runner.cleanup()
            return 1

    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)

    # Live now; ready only after load + warm-up, which may take minutes (engine builds).
    load = loop.run_in_executor(None, server.model.load)
    stopped = loop.create_task(stop.wait())
    await asyncio.wait({load, stopped}, return_when=asyncio.FIRST_COMPLETED)
    if load.done():
        try:
            load.result()
        except Exception:
            log.exception("model %s failed to load", settings.model_name)
            listener.close()
            if grpc_server is not None:
                await grpc_server.stop(0)
            await runner.cleanup()
            return 1
        started = server.model.start_batching()
        if inspect.isawaitable(started):
            await started
        log.info("ready: model %s version %s", settings.model_name, settings.model_version)
        await stopped

    # Drain: readiness and new requests answer 503 at once; in-flight ones finish.
    log.info("signal received: draining %d in-flight request(s)", server.inflight)
    server.draining = True
    deadline = time.monotonic() + settings.drain_timeout_s
    while server.inflight and time.monotonic() < deadline:
        await asyncio.sleep(0.02)
    if server.inflight:
        log.warning("drain timed out with %d request(s) still in flight", server.inflight)
        for task in asyncio.all_tasks():
            task.print_stack(file=sys.stderr)
    if server.model.batcher is not None:
        await server.model.batcher.close()
    listener.close()
    if grpc_server is not None:
        await grpc_server.stop(1.0)
    await runner.cleanup()
    if server.audit is not None:
        server.audit.flush()
    server.model.close()
    log.info("drained; exiting")
    return 0


def _configure_logging(level: str) -> None:
    logging.basicConfig(
        level=level.upper(),
        stream=sys.stderr,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )


def main(argv: list[str] | None = None) -> int:
    """`modelserve-runtime [serve] [flags]` serves; `modelserve-runtime fetch …` is the
    init container that downloads and verifies the model (the operator renders both)."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["fetch"]:
        from .fetch import main as fetch_main

        return fetch_main(argv[1:])
    if argv[:1] == ["serve"]:
        argv = argv[1:]
    try:
        settings = load_settings(argv)
    except ConfigError as exc:
        print(f"modelserve-runtime: {exc}", file=sys.stderr)
        return 2
    _configure_logging(settings.log_level)
    # Node model cache: keep this pod's model from being evicted while it serves.
    from .fetch.cache import pin_from_env

    pin_from_env()
    # In a server and in the engine process alike, the event loop thread holds the GIL
    # almost all the time under load; with Python's default 5 ms switch interval each GIL
    # hand-over to an inference thread (several per batch) can stall the device for up
    # to 5 ms. Measured in hack/bench-runtime.
    sys.setswitchinterval(float(os.environ.get("MODELSERVE_GIL_SWITCH_INTERVAL_S", "0.0002")))
    role = os.environ.get("MODELSERVE_ROLE")
    if role == "engine":
        from .engine import run_engine

        return run_engine(settings, os.environ["MODELSERVE_ENGINE_SOCKET"])
    if settings.workers > 1 and role is None:
        from .supervisor import supervise

        return supervise(argv, settings.workers, bool(settings.engine_process))
    # `kill -USR1 <pid>` dumps every thread's stack to stderr: a hung pod explains itself.
    faulthandler.register(signal.SIGUSR1, all_threads=True)
    loop_kind = os.environ.get("MODELSERVE_EVENT_LOOP", "uvloop")
    if loop_kind == "uvloop":
        try:
            import uvloop

            return uvloop.run(serve(settings))
        except ImportError:
            log.info("uvloop not installed; using asyncio's default loop")
    return asyncio.run(serve(settings))


if __name__ == "__main__":
    sys.exit(main())
