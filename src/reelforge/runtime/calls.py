"""A worker's call server: interactive calls (`AppManifest.calls`) from the API, answered while it waits.

Every `reelforge worker` with at least one registered call runs a small HTTP/1.1 server on a thread of its own
(stdlib `ThreadingHTTPServer`: one thread per connection, keep-alive) at `calls.host`:`calls.port` (port 0: any
free one) and records its URL in its row of the workers registry (`workers.call_url`), which its heartbeats keep
fresh. The API (services/calls.py) picks a live worker and posts `POST /calls/<name>` with a JSON object.

A request is taken only when it is signed (adapters/calls/signing.py: HMAC-SHA256 with a key derived from the
instance secret, over the method, call name, timestamp, timeout and body) and its timestamp is fresh; anything
else is 401, so the server is never an open door to the workers' functions. Bodies are JSON objects of at most
`calls.max_body_bytes`. The call's function runs on the worker's executor (`executor.submit(call.run,
services, payload, resources=...)`, like a step) and the handler waits at most the signed timeout. Answers:

- 200 and the function's result (a JSON object);
- a problem (`application/problem+json`: status, code, title, detail, details) for a ReelforgeError the function
  raised, with its own status and code; 500 `internal_error` for any other exception (logged here with its
  traceback; nothing of it is sent); 504 `call_timeout`; 401 `invalid_call_signature`; 404 `unknown_call`;
  413 `payload_too_large`; 503 `worker_stopping` once the worker is shutting down (the API then tries another).

`stop()` (the worker's SIGTERM path) clears the URL from the registry first, answers new requests
`worker_stopping`, lets the calls in flight finish (within a grace), then closes the listening socket and every
connection.
"""

from __future__ import annotations

import json
import logging
import socket
import threading
import time
from collections.abc import Callable, Mapping
from concurrent.futures import TimeoutError as FutureTimeout
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from reelforge import errors
from reelforge.adapters.calls import signing
from reelforge.domain.pipeline import Resources
from reelforge.observability import request_id_var
from reelforge.runtime.executors import Executor, ResourcesUnavailable
from reelforge.services.calls import CallSignatureRefused, CallTimeout, UnknownCall, WorkerStopping

log = logging.getLogger("reelforge.calls")

PROBLEM = "application/problem+json"
_SOCKET_IDLE_S = 30.0  # a keep-alive connection idle this long is closed (the API's pool lets go after 5 s)


class _Server(ThreadingHTTPServer):
    daemon_threads = True  # idle keep-alive connections never hold the process; stop() closes them
    allow_reuse_address = True
    request_queue_size = 128

    def __init__(self, address: tuple[str, int], calls: CallServer) -> None:
        if ":" in address[0]:
            self.address_family = socket.AF_INET6
        self.calls = calls
        super().__init__(address, _Handler)


class _Handler(BaseHTTPRequestHandler):
    server: _Server
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True  # headers and body leave at once: no 40 ms delayed-ACK stall
    timeout = _SOCKET_IDLE_S
    server_version = "reelforge-calls"
    sys_version = ""

    def setup(self) -> None:
        super().setup()
        self.server.calls._opened(self.connection)

    def finish(self) -> None:
        try:
            super().finish()
        finally:
            self.server.calls._closed(self.connection)

    def log_message(self, format: str, *args: Any) -> None:
        log.debug("call server: " + format, *args)

    def do_POST(self) -> None:
        status, body, ctype = self.server.calls.handle(self)
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Cache-Control", "no-store")
        if self.close_connection:
            self.send_header("Connection", "close")
        self.end_headers()
        self.wfile.write(body)

    def _refuse(self) -> None:
        body = _problem(errors.ReelforgeError("Only POST /calls/<name> is served here", code="method_not_allowed"),
                        status=405)
        self.close_connection = True
        self.send_response(405)
        self.send_header("Allow", "POST")
        self.send_header("Content-Type", PROBLEM)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Connection", "close")
        self.end_headers()
        self.wfile.write(body)

    do_GET = do_PUT = do_DELETE = do_PATCH = do_HEAD = do_OPTIONS = _refuse


def _problem(exc: errors.ReelforgeError, *, status: int | None = None) -> bytes:
    code = exc.code
    status = status or exc.status
    body: dict[str, Any] = {"type": f"https://reelforge.dev/problems/{code}", "title": exc.title,
                            "status": status, "code": code, "detail": errors.scrub(exc.message)}
    if exc.details and status != 500:  # an internal error's details stay in the log
        body["details"] = errors.scrub_value(exc.details)
    return json.dumps(body, default=str).encode()


class CallServer:
    """The HTTP server of one worker: `start()` returns the URL to advertise, `stop()` shuts it down."""

    def __init__(self, calls: Mapping[str, Any], executor: Executor, services: Any, settings: Any, *,
                 on_stopping: Callable[[], None] | None = None) -> None:
        self.calls = dict(calls)
        self.executor = executor
        self.services = services
        self.cfg = settings.calls
        self.key = signing.call_key(settings.signing_secret)
        self.max_timeout_s = float(self.cfg.max_timeout_s)
        self.on_stopping = on_stopping
        self.url: str | None = None
        self.stopping = threading.Event()
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None
        self._lock = threading.Condition()
        self._in_flight = 0
        self._connections: set[socket.socket] = set()

    # --- lifecycle -----------------------------------------------------------------------------------
    def start(self) -> str:
        host, port = self.cfg.host, int(self.cfg.port)
        try:
            self._server = _Server((host.strip("[]"), port), self)
        except OSError as exc:
            raise OSError(f"the call server cannot listen on {host}:{port}: {exc.strerror or exc}") from exc
        bound_port = self._server.server_address[1]
        self.url = advertised_url(self.cfg.public_host or host, bound_port)
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.1},
                                        name="reelforge-calls", daemon=True)
        self._thread.start()
        log.info("call server listening on %s (%d call(s): %s)", self.url, len(self.calls),
                 ", ".join(sorted(self.calls)))
        return self.url

    def stop(self, grace_s: float = 10.0) -> None:
        """Refuse new calls, let those in flight end (at most `grace_s`), then close the socket and connections."""
        if self._server is None or self.stopping.is_set():
            return
        self.stopping.set()
        if self.on_stopping is not None:
            try:
                self.on_stopping()  # the registry forgets the URL: the API stops choosing this worker
            except Exception:
                log.exception("could not clear the call URL from the workers registry")
        deadline = time.monotonic() + max(0.0, grace_s)
        with self._lock:
            while self._in_flight and time.monotonic() < deadline:
                self._lock.wait(max(0.0, min(0.1, deadline - time.monotonic())))
            left = self._in_flight
        if left:
            log.warning("call server: %d call(s) still running at shutdown; their answers are lost", left)
        self._server.shutdown()
        self._server.server_close()
        with self._lock:
            conns = list(self._connections)
        for conn in conns:  # idle keep-alive connections: their threads wake up and end
            try:
                conn.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
        if self._thread is not None:
            self._thread.join(timeout=5)
        log.info("call server stopped")

    def _opened(self, conn: socket.socket) -> None:
        with self._lock:
            self._connections.add(conn)

    def _closed(self, conn: socket.socket) -> None:
        with self._lock:
            self._connections.discard(conn)

    # --- one request ---------------------------------------------------------------------------------
    def handle(self, req: _Handler) -> tuple[int, bytes, str]:
        """(status, body, content type) for one request."""
        try:
            return 200, self._handle(req), "application/json"
        except errors.ReelforgeError as exc:
            if exc.status >= 500 and not isinstance(exc, WorkerStopping | CallTimeout):
                log.warning("call failed: %s %s", exc.code, exc.message)
            return exc.status, _problem(exc), PROBLEM
        except Exception:
            log.exception("call server: request failed")
            return 500, _problem(errors.ReelforgeError()), PROBLEM

    def _handle(self, req: _Handler) -> bytes:
        path = req.path
        if not path.startswith(signing.PATH):
            req.close_connection = True
            raise errors.NotFound("Only POST /calls/<name> is served here")
        name = path[len(signing.PATH):]
        length = req.headers.get("Content-Length", "")
        if not length.isdigit():
            req.close_connection = True  # a body of unknown size cannot be skipped: the connection ends here
            raise errors.BadRequest("A call needs a Content-Length")
        size = int(length)
        if size > self.cfg.max_body_bytes:
            req.close_connection = True
            raise errors.PayloadTooLarge(f"Call bodies are limited to {self.cfg.max_body_bytes} bytes",
                                         limit=self.cfg.max_body_bytes)
        body = req.rfile.read(size)
        if len(body) != size:
            req.close_connection = True
            raise errors.BadRequest("The body ended early")
        h = req.headers
        timeout_header = h.get(signing.TIMEOUT)
        why = signing.verify(self.key, "POST", name, body, h.get(signing.TIMESTAMP), timeout_header,
                             h.get(signing.SIGNATURE), max_skew_s=self.cfg.max_clock_skew_s)
        if why is not None:
            log.warning("call server: refused a request for %r from %s: %s", name[:100], req.client_address[0],
                        why)
            raise CallSignatureRefused("The call is not signed by this installation, or too old")
        if self.stopping.is_set():
            req.close_connection = True
            raise WorkerStopping("This worker is stopping; another one takes the call")
        call = self.calls.get(name)
        if call is None:
            raise UnknownCall(f"This worker offers no call {name!r}", call=name)
        try:
            payload = json.loads(body)
        except ValueError:
            raise errors.BadRequest("The call's body is not JSON") from None
        if not isinstance(payload, dict):
            raise errors.BadRequest("The call's body is a JSON object")
        try:
            timeout = min(float(timeout_header or 0), self.max_timeout_s)
        except ValueError:
            raise errors.BadRequest("Malformed timeout") from None
        return self._run(call, payload, timeout, h.get(signing.REQUEST_ID))

    def _run(self, call: Any, payload: dict[str, Any], timeout: float, request_id: str | None) -> bytes:
        resources = call.resources or Resources()
        if not self.executor.resources_ok(resources):
            raise ResourcesUnavailable(f"The call {call.name} needs more than this worker provides",
                                       call=call.name)
        token = request_id_var.set(request_id[:100] if request_id else None)
        with self._lock:
            self._in_flight += 1
        try:
            future = self.executor.submit(call.run, self.services, payload, resources=resources)
            try:
                result = future.result(timeout=max(0.0, timeout))
            except FutureTimeout:
                future.cancel()  # still queued: it never runs; running: it ends on its own, unheard
                raise CallTimeout(f"No answer to {call.name} within {timeout:g} s", call=call.name) from None
        finally:
            request_id_var.reset(token)
            with self._lock:
                self._in_flight -= 1
                self._lock.notify_all()
        if not isinstance(result, dict):
            log.error("call %s returned %s, not a dict", call.name, type(result).__name__)
            raise errors.ReelforgeError()
        try:
            return json.dumps(result, separators=(",", ":"), allow_nan=False).encode()
        except (TypeError, ValueError):
            log.exception("call %s returned a result that is not JSON", call.name)
            raise errors.ReelforgeError() from None


def advertised_url(host: str, port: int) -> str:
    """`http://host:port` the API dials: a wildcard bind advertises this machine's name."""
    host = host.strip().removeprefix("[").removesuffix("]")
    if host in ("", "0.0.0.0", "::"):
        host = socket.gethostname()
    return f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"
