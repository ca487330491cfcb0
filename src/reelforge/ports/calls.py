"""The wire between an API process and the workers' call servers (interactive calls, services/calls.py)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol


class WorkerUnreachable(Exception):
    """The worker could not be reached, or the connection dropped before an answer: another worker may take the
    call."""


class WorkerTimedOut(Exception):
    """The worker took the call but gave no answer in time."""


@dataclass(frozen=True, slots=True)
class CallReply:
    """A worker's answer: its HTTP status and JSON body (a result, or a problem)."""

    status: int
    body: bytes


class CallTransport(Protocol):
    """Sends one signed call to the worker whose call server is at `base_url`; the worker waits at most
    `timeout_s` for the call's function. Raises WorkerUnreachable or WorkerTimedOut; any answer (an error one
    included) is a CallReply."""

    async def post(self, base_url: str, name: str, body: bytes, timeout_s: float) -> CallReply:
        """On the running event loop (one pooled client per loop)."""
        ...

    def post_sync(self, base_url: str, name: str, body: bytes, timeout_s: float) -> CallReply:
        """From a plain thread (one pooled client for all of them)."""
        ...

    async def aclose(self) -> None:
        """Close the running loop's client."""
        ...

    def close(self) -> None:
        """Close the thread client (and forget the loops' clients)."""
        ...
