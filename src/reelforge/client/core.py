"""The request core both faces share: every operation is written once, as a `Call` or as a flow.

A `Call` describes one API request and how to read its answer. A flow is a generator that yields steps
(`Call`, `Send`, `Sleep`, ...) and receives each step's answer (or has its exception thrown in); it holds
the logic of operations with more than one request: token refresh and retries, uploads, downloads,
waiting for a job. `reelforge.client.sync.Client` runs the steps with blocking I/O,
`reelforge.client.aio.AsyncClient` with asyncio: nothing above the steps knows which.

Namespaces (`Namespace`) group the operations of one resource. Their methods are decorated with `call`
(answers one value) or `stream` (answers an iterator), which runs them on the owning client: the same
method gives ``Job`` on `Client` and ``Awaitable[Job]`` on `AsyncClient`.
"""

from __future__ import annotations

import functools
import json
import os
import random
import time
import uuid
from collections.abc import AsyncIterator, Callable, Coroutine, Generator, Iterable, Iterator, Mapping
from dataclasses import dataclass
from importlib.metadata import entry_points
from pathlib import Path
from typing import Any, Concatenate, Generic, Literal, ParamSpec, TypeVar, overload
from urllib.parse import quote

import httpx

from reelforge import __version__
from reelforge.client.errors import ApiError, retry_after_of, transport_error
from reelforge.client.records import M, StreamEvent, TokenPair

T = TypeVar("T")
P = ParamSpec("P")
R = TypeVar("R", bound="Session", covariant=True)

DEFAULT_URL = "http://127.0.0.1:8000"
CHUNK = 1024 * 1024
# Refresh an access token this long before it expires, so that a request never races its expiry.
REFRESH_MARGIN_S = 30.0
# Applications add namespaces to the client through this entry-point group (name = attribute).
ENTRY_POINT_GROUP = "reelforge.client"


# --- steps --------------------------------------------------------------------------------------------------
@dataclass
class Call(Generic[T]):
    """One API request and how to read its answer: defined once, sent by either client.

    As a step it answers ``parse(response)``; ``stream=True`` leaves the body unread (``parse`` gets the open
    response, which the face closes when the operation ends).
    """

    method: str
    path: str
    parse: Callable[[httpx.Response], T]
    params: dict[str, Any] | None = None
    json: Any = None
    headers: dict[str, str] | None = None
    auth: bool = True
    # False where a repeated request could act twice (no Idempotency-Key): only 429, which the server
    # answers before doing anything, is retried then.
    repeatable: bool = True
    stream: bool = False
    timeout: httpx.Timeout | None = None


@dataclass(frozen=True)
class Send:
    """One HTTP exchange, as is: no credentials, no retries (signed storage URLs, and `Call` underneath).
    Answers the `httpx.Response`; transport failures are thrown into the flow as `httpx.TransportError`."""

    method: str
    url: str
    params: Mapping[str, Any] | None = None
    json: Any = None
    content: Iterable[bytes] | None = None
    headers: Mapping[str, str] | None = None
    timeout: httpx.Timeout | None = None
    stream: bool = False


@dataclass(frozen=True)
class Sleep:
    seconds: float


@dataclass(frozen=True)
class Close:
    """Close a streamed response (reading what is left first when ``drain``)."""

    response: httpx.Response
    drain: bool = False


@dataclass(frozen=True)
class Chunks:
    """A streamed response's body as an iterator handle for `Next`: text lines, or byte blocks of ``size``."""

    response: httpx.Response
    kind: Literal["lines", "bytes"]
    size: int = CHUNK


@dataclass(frozen=True)
class Next:
    """The next item of a `Chunks` handle, or None at its end."""

    chunks: Any


@dataclass(frozen=True)
class Blocking:
    """A blocking function (file hashing): called in place by the blocking face, in a thread by asyncio."""

    fn: Callable[..., Any]
    args: tuple[Any, ...] = ()


@dataclass(frozen=True)
class Locked:
    """Run a flow holding the client's lock (token refresh: one at a time)."""

    flow: Flow[Any]


@dataclass(frozen=True)
class Emit:
    """An item of a `stream` operation, handed to the caller's loop."""

    item: Any


Flow = Generator[Any, Any, T]
Op = Call[T] | Generator[Any, Any, T]


# --- request helpers ----------------------------------------------------------------------------------------
def seg(value: str) -> str:
    """One path segment: ids never contain '/', and a hostile one must not change the route."""
    return quote(str(value), safe="")


def clean(params: Mapping[str, Any]) -> dict[str, Any]:
    """The items that are not None."""
    return {k: v for k, v in params.items() if v is not None}


def one(cls: type[M]) -> Callable[[httpx.Response], M]:
    """Parse the answer as one record."""
    return lambda r: cls.from_dict(r.json())


def data(cls: type[M]) -> Callable[[httpx.Response], list[M]]:
    """Parse the answer's ``data`` list as records."""
    return lambda r: [cls.from_dict(x) for x in r.json()["data"]]


def nothing(_: httpx.Response) -> None:
    return None


def document(r: httpx.Response) -> dict[str, Any]:
    """The answer's JSON object as is."""
    out: dict[str, Any] = r.json()
    return out


def response(r: httpx.Response) -> httpx.Response:
    """The response itself (streamed calls)."""
    return r


def user_agent() -> str:
    return f"reelforge-client/{__version__} httpx/{httpx.__version__}"


class SseParser:
    """The text/event-stream format (WHATWG), one line at a time: fields until a blank line; ':' comments."""

    def __init__(self) -> None:
        self.event = "message"
        self.data: list[str] = []
        self.last_id: str | None = None

    def feed(self, line: str) -> StreamEvent | None:
        if not line:
            out = None
            if self.data:
                text = "\n".join(self.data)
                try:
                    payload = json.loads(text)
                except ValueError:
                    payload = {"text": text}
                out = StreamEvent(self.event, payload if isinstance(payload, dict) else {"value": payload},
                                  self.last_id)
            self.event, self.data = "message", []
            return out
        if line.startswith(":"):
            return None
        name, _, value = line.partition(":")
        value = value[1:] if value.startswith(" ") else value
        if name == "event":
            self.event = value
        elif name == "data":
            self.data.append(value)
        elif name == "id":
            self.last_id = value
        return None


# --- client state: credentials and the retry policy -----------------------------------------------------------
class Session:
    """Credentials, token refresh and retry policy: everything but the I/O. Base of both faces."""

    def __init__(self, base_url: str | None, *, api_key: str | None, access_token: str | None,
                 refresh_token: str | None, token_expires_at: float | None, max_retries: int,
                 max_retry_wait: float, on_tokens: Callable[[TokenPair], None] | None,
                 upload_state_dir: str | os.PathLike[str] | None) -> None:
        self.base_url = (base_url or os.environ.get("REELFORGE_URL") or DEFAULT_URL).rstrip("/")
        if api_key is None and access_token is None and refresh_token is None:
            api_key = os.environ.get("REELFORGE_API_KEY") or None
        self.api_key = api_key
        self.access_token = access_token
        self.refresh_token = refresh_token
        self.token_expires_at = token_expires_at
        self.max_retries = max(0, max_retries)
        self.max_retry_wait = max_retry_wait
        self.on_tokens = on_tokens
        self.upload_state_dir = Path(upload_state_dir) if upload_state_dir is not None else None

    # credentials -------------------------------------------------------------------------------------
    def auth_header(self) -> dict[str, str]:
        token = self.api_key or self.access_token
        return {"Authorization": f"Bearer {token}"} if token else {}

    def wants_refresh(self) -> bool:
        if self.api_key or not self.refresh_token:
            return False
        if not self.access_token:
            return True
        return self.token_expires_at is not None and time.time() > self.token_expires_at - REFRESH_MARGIN_S

    def can_refresh_after(self, response: httpx.Response) -> bool:
        return response.status_code == 401 and not self.api_key and bool(self.refresh_token)

    def set_tokens(self, pair: TokenPair) -> None:
        self.api_key = None
        self.access_token = pair.access_token
        self.refresh_token = pair.refresh_token
        self.token_expires_at = time.time() + float(pair.expires_in or 0)
        if self.on_tokens is not None:
            self.on_tokens(pair)

    # retries -----------------------------------------------------------------------------------------
    def retry_delay(self, response: httpx.Response, attempt: int, method: str,
                    repeatable: bool = True) -> float | None:
        """Seconds to wait before sending again, or None to raise now."""
        status = response.status_code
        retryable = status == 429 or (repeatable and (
            status == 503 or (status in (502, 504) and method in ("GET", "HEAD"))))
        if not retryable or attempt >= self.max_retries:
            return None
        wait = retry_after_of(response)
        if wait is None:
            return min(self.max_retry_wait, 0.5 * 2**attempt) * (0.5 + random.random() / 2)
        if wait > self.max_retry_wait:
            return None  # the server asks for longer than the caller is willing to block: say so now
        return wait + 0.05

    def transfer_delay(self, attempt: int) -> float:
        return min(self.max_retry_wait, 0.25 * 2**attempt)

    # flows -------------------------------------------------------------------------------------------
    def request(self, call: Call[Any]) -> Flow[httpx.Response]:
        """Send ``call`` with credentials: refresh a stale token first, once more after a 401, and retry
        429/503 answers after their ``Retry-After``."""
        attempt = 0
        refreshed = False
        while True:
            if call.auth and self.wants_refresh():
                yield Locked(self.refresh_flow(self.access_token))
            sent_token = self.access_token
            headers = {**(call.headers or {}), **(self.auth_header() if call.auth else {})}
            try:
                answer: httpx.Response = yield Send(call.method, call.path, params=call.params, json=call.json,
                                                    headers=headers, timeout=call.timeout, stream=call.stream)
            except httpx.TransportError as exc:
                raise transport_error(exc, self.base_url) from exc
            if answer.status_code < 400:
                return answer
            if call.stream:
                yield Close(answer, drain=True)
            if call.auth and not refreshed and self.can_refresh_after(answer):
                refreshed = True
                yield Locked(self.refresh_flow(sent_token))
                continue
            delay = self.retry_delay(answer, attempt, call.method, call.repeatable)
            if delay is None:
                raise ApiError.from_response(answer)
            attempt += 1
            yield Sleep(delay)

    def refresh_flow(self, stale_access_token: str | None) -> Flow[None]:
        """Trade the refresh token for a new pair, unless another caller did while this one waited."""
        if self.access_token != stale_access_token and self.access_token:
            return
        token = self.refresh_token
        if not token:
            return
        pair: TokenPair = yield refresh_call(token)
        self.set_tokens(pair)

    # extensions --------------------------------------------------------------------------------------
    def __getattr__(self, name: str) -> Any:
        """An application's namespace (entry-point group ``reelforge.client``), made on first use."""
        if name.startswith("_"):
            raise AttributeError(name)
        found = [ep for ep in entry_points(group=ENTRY_POINT_GROUP) if ep.name == name]
        if not found:
            raise AttributeError(f"{type(self).__name__!r} object has no attribute {name!r}")
        namespace = found[0].load()(self)
        setattr(self, name, namespace)
        return namespace


def refresh_call(refresh_token: str) -> Call[TokenPair]:
    return Call("POST", "/v1/auth/refresh", one(TokenPair), json={"refresh_token": refresh_token}, auth=False)


def new_idempotency_key() -> str:
    """A key for a submit, so that the automatic retry of a 429/503 makes at most one job."""
    return f"client-{uuid.uuid4()}"


# --- the two faces' contracts ---------------------------------------------------------------------------------
class SyncRunner(Session):
    """The blocking face: runs operations to their answer."""

    def run(self, op: Op[T]) -> T:
        raise NotImplementedError

    def iterate(self, flow: Flow[None]) -> Iterator[Any]:
        raise NotImplementedError


class AsyncRunner(Session):
    """The asyncio face: runs operations as coroutines."""

    async def run(self, op: Op[T]) -> T:
        raise NotImplementedError

    def iterate(self, flow: Flow[None]) -> AsyncIterator[Any]:
        raise NotImplementedError


class Bound(Generic[R]):
    """Something whose `call` and `stream` methods run on a client: a namespace, a job handle."""

    def __init__(self, client: R) -> None:
        self._client = client

    @property
    def client(self) -> R:
        return self._client


class Namespace(Bound[R]):
    """The operations on one resource (``rf.jobs``, ``rf.assets``, or an application's), written once."""

    def __repr__(self) -> str:
        return f"<{type(self).__name__} of {self._client!r}>"


class call(Generic[P, T]):
    """Marks a method that returns an `Op`: called through a client it answers the result (``Client``) or a
    coroutine of it (``AsyncClient``)."""

    def __init__(self, fn: Callable[Concatenate[Any, P], Op[T]]) -> None:
        self.fn = fn
        functools.update_wrapper(self, fn)  # type: ignore[arg-type]

    @overload
    def __get__(self, obj: None, owner: type | None = None) -> call[P, T]: ...

    @overload
    def __get__(self, obj: Bound[SyncRunner], owner: type | None = None) -> Callable[P, T]: ...

    @overload
    def __get__(self, obj: Bound[AsyncRunner], owner: type | None = None
                ) -> Callable[P, Coroutine[Any, Any, T]]: ...

    def __get__(self, obj: Any, owner: type | None = None) -> Any:
        if obj is None:
            return self
        fn = self.fn
        runner = obj._client

        @functools.wraps(fn)
        def bound(*args: Any, **kwargs: Any) -> Any:
            return runner.run(fn(obj, *args, **kwargs))

        return bound

    def flow(self, obj: Bound[Session], *args: Any, **kwargs: Any) -> Flow[T]:
        """The operation as a flow, unrun (to compose it into another flow)."""
        return as_flow(obj.client, self.fn(obj, *args, **kwargs))


def stream(item: type[T]) -> Callable[[Callable[Concatenate[Any, P], Flow[None]]], Streamed[P, T]]:
    """Marks a flow that hands out items (`Emit`) of type ``item``: called through a client it is an iterator
    (``Client``) or an async iterator (``AsyncClient``)."""

    def mark(fn: Callable[Concatenate[Any, P], Flow[None]]) -> Streamed[P, T]:
        return Streamed(fn)

    return mark


class Streamed(Generic[P, T]):
    """A `stream` method."""

    def __init__(self, fn: Callable[Concatenate[Any, P], Flow[None]]) -> None:
        self.fn = fn
        functools.update_wrapper(self, fn)  # type: ignore[arg-type]

    @overload
    def __get__(self, obj: None, owner: type | None = None) -> Streamed[P, T]: ...

    @overload
    def __get__(self, obj: Bound[SyncRunner], owner: type | None = None) -> Callable[P, Iterator[T]]: ...

    @overload
    def __get__(self, obj: Bound[AsyncRunner], owner: type | None = None) -> Callable[P, AsyncIterator[T]]: ...

    def __get__(self, obj: Any, owner: type | None = None) -> Any:
        if obj is None:
            return self
        fn = self.fn
        runner = obj._client

        @functools.wraps(fn)
        def bound(*args: Any, **kwargs: Any) -> Any:
            return runner.iterate(fn(obj, *args, **kwargs))

        return bound

    def flow(self, obj: Bound[Session], *args: Any, **kwargs: Any) -> Flow[None]:
        """The flow itself, unrun."""
        return self.fn(obj, *args, **kwargs)


def each(inner: Flow[None], on_item: Callable[[Any], bool]) -> Flow[bool]:
    """Run a `stream` flow inside another flow, its items going to ``on_item``; True once ``on_item`` says
    stop, False when the stream ends."""
    answer: Any = None
    error: BaseException | None = None
    try:
        while True:
            try:
                step = inner.throw(error) if error is not None else inner.send(answer)
            except StopIteration:
                return False
            answer, error = None, None
            if isinstance(step, Emit):
                if on_item(step.item):
                    return True
                continue
            try:
                answer = yield step
            except GeneratorExit:
                raise
            except BaseException as exc:
                error = exc
    finally:
        inner.close()


def as_flow(session: Session, op: Op[T]) -> Flow[T]:
    """Any operation as a flow (a `Call` becomes its request and parse)."""
    if isinstance(op, Call):
        return _call_flow(session, op)
    return op


def _call_flow(session: Session, c: Call[T]) -> Flow[T]:
    answer = yield from session.request(c)
    return c.parse(answer)

