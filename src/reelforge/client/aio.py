"""`AsyncClient`: the asyncio face. It runs the core's steps with an `httpx.AsyncClient`; the operations
themselves live in the namespaces (``rf.jobs``, ``rf.assets``, ...), the same as for `Client`."""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator, Callable, Iterable
from typing import Any, ClassVar, TypeVar

import httpx

from reelforge.client.core import (
    AsyncRunner,
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
    as_flow,
    user_agent,
)
from reelforge.client.namespaces import JobHandle, Resources
from reelforge.client.records import TokenPair

T = TypeVar("T")


class AsyncJobHandle(JobHandle["AsyncClient"]):
    """`JobHandle` for `AsyncClient`: every method is a coroutine (``events`` an async iterator)."""


async def _blocks(content: Iterable[bytes]) -> AsyncIterator[bytes]:
    for block in content:
        yield block


class AsyncClient(AsyncRunner, Resources):
    """The same API for asyncio: every method is a coroutine (streams are async iterators)."""

    job_handle_class: ClassVar[type[JobHandle[Any]]] = AsyncJobHandle

    def __init__(self, base_url: str | None = None, *, api_key: str | None = None, access_token: str | None = None,
                 refresh_token: str | None = None, token_expires_at: float | None = None, timeout: float = 30.0,
                 max_retries: int = 4, max_retry_wait: float = 60.0,
                 on_tokens: Callable[[TokenPair], None] | None = None,
                 upload_state_dir: str | os.PathLike[str] | None = None,
                 transport: httpx.AsyncBaseTransport | None = None) -> None:
        super().__init__(base_url, api_key=api_key, access_token=access_token, refresh_token=refresh_token,
                         token_expires_at=token_expires_at, max_retries=max_retries, max_retry_wait=max_retry_wait,
                         on_tokens=on_tokens, upload_state_dir=upload_state_dir)
        self._http = httpx.AsyncClient(base_url=self.base_url, timeout=timeout, transport=transport,
                                       headers={"User-Agent": user_agent()})
        self._lock = asyncio.Lock()
        self._attach_namespaces()

    async def aclose(self) -> None:
        await self._http.aclose()

    async def __aenter__(self) -> AsyncClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    # running operations ------------------------------------------------------------------------------
    async def run(self, op: Op[T]) -> T:
        """Run an operation to its answer."""
        opened: list[httpx.Response] = []
        try:
            return await self._complete(as_flow(self, op), opened)
        finally:
            for r in opened:
                await r.aclose()

    async def iterate(self, flow: Flow[None]) -> AsyncIterator[Any]:
        """Run a `stream` flow, handing out its items."""
        opened: list[httpx.Response] = []
        try:
            async for item in self._walk(flow, [], opened):
                yield item
        finally:
            for r in opened:
                await r.aclose()

    async def _complete(self, flow: Flow[T], opened: list[httpx.Response]) -> T:
        box: list[T] = []
        async for _ in self._walk(flow, box, opened):
            pass
        return box[0]

    async def _walk(self, flow: Flow[Any], box: list[Any], opened: list[httpx.Response]) -> AsyncIterator[Any]:
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
                    answer = await self._step(step, opened)
                except BaseException as exc:  # the flow decides: retry, wrap, or let it pass
                    error = exc
        finally:
            flow.close()

    async def _step(self, step: Any, opened: list[httpx.Response]) -> Any:
        if isinstance(step, Call):
            return await self._complete(as_flow(self, step), opened)
        if isinstance(step, Send):
            extra: dict[str, Any] = {} if step.timeout is None else {"timeout": step.timeout}
            content = None if step.content is None else _blocks(step.content)
            request = self._http.build_request(step.method, step.url, params=step.params, json=step.json,
                                               content=content, headers=step.headers, **extra)
            answer = await self._http.send(request, stream=step.stream)
            if step.stream:
                opened.append(answer)
            return answer
        if isinstance(step, Sleep):
            await asyncio.sleep(step.seconds)
            return None
        if isinstance(step, Close):
            if step.drain:
                await step.response.aread()
            await step.response.aclose()
            return None
        if isinstance(step, Chunks):
            if step.kind == "lines":
                return step.response.aiter_lines()
            return step.response.aiter_bytes(step.size)
        if isinstance(step, Next):
            return await anext(step.chunks, None)
        if isinstance(step, Blocking):
            return await asyncio.to_thread(step.fn, *step.args)
        if isinstance(step, Locked):
            async with self._lock:
                return await self._complete(step.flow, opened)
        raise TypeError(f"not a step: {step!r}")
