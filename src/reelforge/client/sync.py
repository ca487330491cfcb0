"""`Client`: the blocking face. It runs the core's steps with an `httpx.Client`; the operations themselves
live in the namespaces (``rf.jobs``, ``rf.assets``, ...)."""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any, ClassVar, TypeVar

import httpx

from reelforge.client.core import (
    Blocking,
    Call,
    Chunks,
    Close,
    Emit,
    Flow,
    Locked,
    Next,
    Op,
    Send,
    Sleep,
    SyncRunner,
    as_flow,
    user_agent,
)
from reelforge.client.namespaces import JobHandle, Resources
from reelforge.client.records import TokenPair

T = TypeVar("T")


class Client(SyncRunner, Resources):
    """Blocking client. Thread-safe: one instance may serve many threads (token refresh is locked)."""

    job_handle_class: ClassVar[type[JobHandle[Any]]] = JobHandle

    def __init__(self, base_url: str | None = None, *, api_key: str | None = None, access_token: str | None = None,
                 refresh_token: str | None = None, token_expires_at: float | None = None, timeout: float = 30.0,
                 max_retries: int = 4, max_retry_wait: float = 60.0,
                 on_tokens: Callable[[TokenPair], None] | None = None,
                 upload_state_dir: str | os.PathLike[str] | None = None,
                 transport: httpx.BaseTransport | None = None) -> None:
        super().__init__(base_url, api_key=api_key, access_token=access_token, refresh_token=refresh_token,
                         token_expires_at=token_expires_at, max_retries=max_retries, max_retry_wait=max_retry_wait,
                         on_tokens=on_tokens, upload_state_dir=upload_state_dir)
        self._http = httpx.Client(base_url=self.base_url, timeout=timeout, transport=transport,
                                  headers={"User-Agent": user_agent()})
        self._lock = threading.Lock()
        self._attach_namespaces()

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # running operations ------------------------------------------------------------------------------
    def run(self, op: Op[T]) -> T:
        """Run an operation to its answer."""
        opened: list[httpx.Response] = []
        try:
            return self._complete(as_flow(self, op), opened)
        finally:
            for r in opened:
                r.close()

    def iterate(self, flow: Flow[None]) -> Iterator[Any]:
        """Run a `stream` flow, handing out its items."""
        opened: list[httpx.Response] = []
        try:
            yield from self._walk(flow, [], opened)
        finally:
            for r in opened:
                r.close()

    def _complete(self, flow: Flow[T], opened: list[httpx.Response]) -> T:
        box: list[T] = []
        for _ in self._walk(flow, box, opened):
            pass
        return box[0]

    def _walk(self, flow: Flow[Any], box: list[Any], opened: list[httpx.Response]) -> Iterator[Any]:
        answer: Any = None
        error: BaseException | None = None
        try:
            while True:
                try:
                    step = flow.throw(error) if error is not None else flow.send(answer)
                except StopIteration as stop:
                    box.append(stop.value)
                    return
                answer, error = None, None
                if isinstance(step, Emit):
                    yield step.item
                    continue
                try:
                    answer = self._step(step, opened)
                except BaseException as exc:  # the flow decides: retry, wrap, or let it pass
                    error = exc
        finally:
            flow.close()

    def _step(self, step: Any, opened: list[httpx.Response]) -> Any:
        if isinstance(step, Call):
            return self._complete(as_flow(self, step), opened)
        if isinstance(step, Send):
            extra: dict[str, Any] = {} if step.timeout is None else {"timeout": step.timeout}
            request = self._http.build_request(step.method, step.url, params=step.params, json=step.json,
                                               content=step.content, headers=step.headers, **extra)
            answer = self._http.send(request, stream=step.stream)
            if step.stream:
                opened.append(answer)
            return answer
        if isinstance(step, Sleep):
            time.sleep(step.seconds)
            return None
        if isinstance(step, Close):
            if step.drain:
                step.response.read()
            step.response.close()
            return None
        if isinstance(step, Chunks):
            if step.kind == "lines":
                return step.response.iter_lines()
            return step.response.iter_bytes(step.size)
        if isinstance(step, Next):
            return next(step.chunks, None)
        if isinstance(step, Blocking):
            return step.fn(*step.args)
        if isinstance(step, Locked):
            with self._lock:
                return self._complete(step.flow, opened)
        raise TypeError(f"not a step: {step!r}")
