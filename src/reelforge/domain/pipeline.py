"""Pipelines as code: a small, typed model of an Amazon States Language (ASL) state machine.

A pipeline is a named, versioned graph of states. The graph is data (frozen dataclasses) so it can be
validated when the module defining it is imported, exported as ASL JSON for the AWS deployment, and
interpreted by :mod:`reelforge.runtime.runner`. Nothing here does I/O.

Semantics follow ASL where ASL has an answer (Retry/Catch matching, ``States.ALL`` and
``States.TaskFailed`` wildcards, ``MaxAttempts`` counting retries, ``ResultPath`` on catchers) so that
the exported definition behaves the same on AWS Step Functions as it does here.
"""

from __future__ import annotations

import math
import random
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any, Literal

from reelforge import errors

__all__ = [
    "ALL",
    "NO_CHOICE_MATCHED",
    "RESULT_PATH_MATCH_FAILURE",
    "RUNTIME",
    "TASK_FAILED",
    "TIMEOUT",
    "Catch",
    "Choice",
    "ChoiceRule",
    "Fail",
    "Graph",
    "Map",
    "Parallel",
    "Pass",
    "Pipeline",
    "PipelineRegistry",
    "Resources",
    "Retry",
    "State",
    "Succeed",
    "Task",
    "error_matches",
    "fn_ref",
]

# Error names defined by ASL that the runner produces or matches.
ALL = "States.ALL"
TASK_FAILED = "States.TaskFailed"
TIMEOUT = "States.Timeout"
RUNTIME = "States.Runtime"
NO_CHOICE_MATCHED = "States.NoChoiceMatched"
RESULT_PATH_MATCH_FAILURE = "States.ResultPathMatchFailure"

# Characters the runner uses to build step paths ("chunks/item[3]/encode", "poll#2", "x!catch");
# a state name containing one of them would make two different steps share a checkpoint.
_RESERVED_NAME_CHARS = frozenset("/[]#!")
_MAX_NAME_LEN = 80  # the ASL limit


def error_matches(patterns: tuple[str, ...], error: str) -> bool:
    """Whether an ASL ``ErrorEquals`` list matches an error name.

    ``States.ALL`` matches every error except ``States.Runtime`` (ASL: runtime errors such as an
    unserializable step output are programming errors and are not retried or caught by the wildcard;
    name ``States.Runtime`` explicitly to handle them). ``States.TaskFailed`` matches everything except
    ``States.Timeout`` (and ``States.Runtime``).
    """
    for pattern in patterns:
        if pattern == error:
            return True
        if pattern == ALL and error != RUNTIME:
            return True
        if pattern == TASK_FAILED and error not in (TIMEOUT, RUNTIME):
            return True
    return False


def fn_ref(fn: Callable[..., Any]) -> str:
    """The ``module:qualname`` reference of a callable, used in exports and history."""
    module = getattr(fn, "__module__", None) or "unknown"
    qualname = getattr(fn, "__qualname__", None) or getattr(fn, "__name__", None) or type(fn).__name__
    return f"{module}:{qualname}"


def _number(value: float) -> int | float:
    """Render whole floats as ints so the exported JSON reads like hand-written ASL."""
    return int(value) if float(value).is_integer() else value


@dataclass(frozen=True)
class Resources:
    """What one execution of a step needs; the executor decides where that fits."""

    cpu: float = 1
    gpu: float = 0
    memory_mb: int = 512

    def __post_init__(self) -> None:
        if self.cpu < 0 or self.gpu < 0 or self.memory_mb < 0:
            raise ValueError(f"resources must not be negative: {self}")

    def to_dict(self) -> dict[str, Any]:
        """JSON form (used in ASL ``x-reelforge`` and ``describe()``)."""
        return {"cpu": _number(self.cpu), "gpu": _number(self.gpu), "memory_mb": self.memory_mb}


@dataclass(frozen=True)
class Retry:
    """An ASL retrier.

    ``max_attempts`` counts retries after the first try (ASL ``MaxAttempts``; 0 = never retry). The
    delay before retry ``n`` (1-based) is ``interval_s * backoff_rate ** (n - 1)``, capped by
    ``max_delay_s``; with ``jitter="FULL"`` the delay is drawn uniformly from ``[0, delay]``.
    """

    errors: tuple[str, ...] = (ALL,)
    interval_s: float = 1.0
    max_attempts: int = 3
    backoff_rate: float = 2.0
    max_delay_s: float | None = None
    jitter: Literal["FULL", "NONE"] = "NONE"

    def __post_init__(self) -> None:
        if not self.errors:
            raise ValueError("Retry.errors must name at least one error")
        if isinstance(self.errors, str):
            raise ValueError("Retry.errors must be a tuple of error names, not a string")
        if self.interval_s < 0:
            raise ValueError("Retry.interval_s must be >= 0")
        if self.max_attempts < 0:
            raise ValueError("Retry.max_attempts must be >= 0")
        if self.backoff_rate < 1.0:
            raise ValueError("Retry.backoff_rate must be >= 1.0")
        if self.max_delay_s is not None and self.max_delay_s <= 0:
            raise ValueError("Retry.max_delay_s must be > 0")
        if self.jitter not in ("FULL", "NONE"):
            raise ValueError("Retry.jitter must be 'FULL' or 'NONE'")

    def matches(self, error: str) -> bool:
        """Whether this retrier handles the error name."""
        return error_matches(self.errors, error)

    def delay(self, retry_number: int, rng: random.Random | None = None) -> float:
        """Seconds to wait before retry ``retry_number`` (1-based)."""
        if retry_number < 1:
            raise ValueError("retry_number is 1-based")
        delay = self.interval_s * self.backoff_rate ** (retry_number - 1)
        if self.max_delay_s is not None:
            delay = min(delay, self.max_delay_s)
        if self.jitter == "FULL":
            delay = (rng or random.Random()).uniform(0, delay)
        return delay

    def to_asl(self) -> dict[str, Any]:
        """The ASL ``Retry`` entry."""
        out: dict[str, Any] = {
            "ErrorEquals": list(self.errors),
            "IntervalSeconds": _number(self.interval_s),
            "MaxAttempts": self.max_attempts,
            "BackoffRate": _number(self.backoff_rate),
        }
        if self.max_delay_s is not None:
            out["MaxDelaySeconds"] = _number(self.max_delay_s)
        out["JitterStrategy"] = self.jitter
        return out


@dataclass(frozen=True)
class Catch:
    """An ASL catcher: on a matching error go to ``next``.

    The state's output becomes its input with ``{"error": name, "cause": message}`` placed at
    ``result_path``: ``"$"`` replaces the whole input, ``"$.a"`` / ``"$.a.b"`` set a key, ``None``
    discards the error and keeps the input.
    """

    errors: tuple[str, ...]
    next: str
    result_path: str | None = "$.error"

    def __post_init__(self) -> None:
        if not self.errors:
            raise ValueError("Catch.errors must name at least one error")
        if isinstance(self.errors, str):
            raise ValueError("Catch.errors must be a tuple of error names, not a string")
        if self.result_path is not None:
            parse_result_path(self.result_path)

    def matches(self, error: str) -> bool:
        """Whether this catcher handles the error name."""
        return error_matches(self.errors, error)

    def to_asl(self) -> dict[str, Any]:
        """The ASL ``Catch`` entry."""
        return {"ErrorEquals": list(self.errors), "Next": self.next, "ResultPath": self.result_path}


def parse_result_path(result_path: str) -> tuple[str, ...]:
    """Split a ResultPath into keys: ``"$"`` -> ``()``, ``"$.a.b"`` -> ``("a", "b")``.

    Only the reference-path subset the runner implements is accepted, so a definition that would
    behave differently on AWS fails at import time rather than at the first error.
    """
    if result_path == "$":
        return ()
    if not result_path.startswith("$."):
        raise ValueError(f"unsupported ResultPath {result_path!r}: use '$', '$.key' or '$.a.b'")
    keys = tuple(result_path[2:].split("."))
    if any(not k or any(c in k for c in "[]*$ ") for k in keys):
        raise ValueError(f"unsupported ResultPath {result_path!r}: use '$', '$.key' or '$.a.b'")
    return keys


@dataclass(frozen=True)
class Task:
    """Run one Python function ``fn(ctx, data) -> output``; the output must be JSON-serializable."""

    name: str
    fn: Callable[[Any, Any], Any]
    resources: Resources = field(default_factory=Resources)
    timeout_s: float | None = None
    retry: tuple[Retry, ...] = ()
    catch: tuple[Catch, ...] = ()
    next: str | None = None
    end: bool = False
    comment: str = ""
    # "module:qualname" of fn; derived when left empty. Kept as data because ASL names resources by
    # string and a lambda or partial has no importable name of its own.
    fn_ref: str = field(default="", compare=False)

    def __post_init__(self) -> None:
        if not self.fn_ref:
            object.__setattr__(self, "fn_ref", fn_ref(self.fn))


@dataclass(frozen=True)
class Parallel:
    """Run every branch on the same input concurrently; the output is the list of branch outputs."""

    name: str
    branches: tuple[Graph, ...]
    retry: tuple[Retry, ...] = ()
    catch: tuple[Catch, ...] = ()
    next: str | None = None
    end: bool = False
    comment: str = ""


@dataclass(frozen=True)
class Map:
    """Run ``iterator`` once per item; the output is the list of iterator outputs in item order.

    ``items(data)`` selects the items (default: the input itself must be a list). ``max_concurrency``
    bounds how many items run at once (0 = no bound of its own; the runner still caps threads).
    """

    name: str
    iterator: Graph
    items: Callable[[Any], list[Any]] | None = None
    max_concurrency: int = 0
    retry: tuple[Retry, ...] = ()
    catch: tuple[Catch, ...] = ()
    next: str | None = None
    end: bool = False
    comment: str = ""


@dataclass(frozen=True)
class ChoiceRule:
    """One branch of a Choice: when ``condition(data)`` is true, go to ``next``.

    Conditions must be pure functions of the data: a resumed execution re-evaluates them and must
    take the same route as the first run did.
    """

    condition: Callable[[Any], bool]
    next: str
    description: str = ""


@dataclass(frozen=True)
class Choice:
    """Route to the first rule whose condition holds, else ``default``, else fail."""

    name: str
    choices: tuple[ChoiceRule, ...]
    default: str | None = None
    comment: str = ""

    @property
    def next(self) -> str | None:
        """A Choice has no single ``Next``; its rules and default say where to go."""
        return None

    @property
    def end(self) -> bool:
        """A Choice never ends an execution."""
        return False


@dataclass(frozen=True)
class Succeed:
    """Stop the (sub-)execution successfully with the input as output."""

    name: str
    comment: str = ""

    @property
    def next(self) -> str | None:
        """Terminal: no next state."""
        return None

    @property
    def end(self) -> bool:
        """Terminal."""
        return True


@dataclass(frozen=True)
class Fail:
    """Stop the (sub-)execution with an error name and a cause."""

    name: str
    error: str
    cause: str = ""
    comment: str = ""

    @property
    def next(self) -> str | None:
        """Terminal: no next state."""
        return None

    @property
    def end(self) -> bool:
        """Terminal."""
        return True


@dataclass(frozen=True)
class Pass:
    """Output ``result`` (or the input when ``result`` is None) and move on."""

    name: str
    result: Any | None = None
    next: str | None = None
    end: bool = False
    comment: str = ""


State = Task | Parallel | Map | Choice | Succeed | Fail | Pass


def _successors(state: State) -> list[str]:
    """Every state name this state may transition to (normal, choice and catch edges)."""
    out: list[str] = []
    if isinstance(state, Choice):
        out.extend(rule.next for rule in state.choices)
        if state.default is not None:
            out.append(state.default)
    elif state.next is not None:
        out.append(state.next)
    if isinstance(state, Task | Parallel | Map):
        out.extend(c.next for c in state.catch)
    return out


def _is_terminal(state: State) -> bool:
    return isinstance(state, Succeed | Fail) or (not isinstance(state, Choice) and state.end)


@dataclass(frozen=True)
class Graph:
    """A state machine: ``start_at`` plus uniquely named states. Call :meth:`validate` to check it."""

    start_at: str
    states: tuple[State, ...]
    _by_name: dict[str, State] = field(init=False, repr=False, compare=False, hash=False)

    def __post_init__(self) -> None:
        # Last one wins on duplicates; validate() reports them.
        object.__setattr__(self, "_by_name", {s.name: s for s in self.states})

    def state(self, name: str) -> State:
        """The state called ``name`` (KeyError when absent)."""
        return self._by_name[name]

    def __contains__(self, name: object) -> bool:
        return name in self._by_name

    def validate(self, where: str = "") -> None:
        """Raise ValueError naming the first problem found, nested graphs included.

        Checks: names unique and free of path separators; ``start_at`` and every transition target
        exist; Task/Parallel/Map/Pass set exactly one of ``next``/``end``; a Choice has rules; every
        state is reachable; every state can reach a terminal state (no inescapable loop);
        ``States.ALL`` appears alone and only in the last retrier/catcher; nested graphs are valid.
        """
        at = f"{where}: " if where else ""
        if not self.states:
            raise ValueError(f"{at}graph has no states")
        seen: set[str] = set()
        for s in self.states:
            _check_name(s.name, at)
            if s.name in seen:
                raise ValueError(f"{at}duplicate state name {s.name!r}")
            seen.add(s.name)
        if self.start_at not in seen:
            raise ValueError(f"{at}start_at {self.start_at!r} is not a state")

        for s in self.states:
            here = f"{at}state {s.name!r}"
            if isinstance(s, Task | Parallel | Map | Pass) and (s.next is None) == (not s.end):
                raise ValueError(f"{here} must set exactly one of next/end")
            if isinstance(s, Choice):
                if not s.choices:
                    raise ValueError(f"{here}: a Choice needs at least one rule")
                for rule in s.choices:
                    if not callable(rule.condition):
                        raise ValueError(f"{here}: choice condition is not callable")
            if isinstance(s, Task):
                if not callable(s.fn):
                    raise ValueError(f"{here}: fn is not callable")
                if s.timeout_s is not None and not s.timeout_s > 0:
                    raise ValueError(f"{here}: timeout_s must be > 0")
            if isinstance(s, Fail) and not s.error:
                raise ValueError(f"{here}: a Fail state needs an error name")
            for target in _successors(s):
                if target not in seen:
                    raise ValueError(f"{here} goes to {target!r}, which is not a state")
            if isinstance(s, Task | Parallel | Map):
                _check_wildcard_last([r.errors for r in s.retry], f"{here} Retry")
                _check_wildcard_last([c.errors for c in s.catch], f"{here} Catch")
            if isinstance(s, Parallel):
                if not s.branches:
                    raise ValueError(f"{here}: a Parallel needs at least one branch")
                for i, branch in enumerate(s.branches):
                    branch.validate(f"{where + '/' if where else ''}{s.name}/branch[{i}]")
            if isinstance(s, Map):
                if s.max_concurrency < 0:
                    raise ValueError(f"{here}: max_concurrency must be >= 0")
                if s.items is not None and not callable(s.items):
                    raise ValueError(f"{here}: items must be callable")
                s.iterator.validate(f"{where + '/' if where else ''}{s.name}/item[*]")

        reachable = self._reachable_from([self.start_at])
        unreachable = [s.name for s in self.states if s.name not in reachable]
        if unreachable:
            raise ValueError(f"{at}unreachable states: {', '.join(map(repr, unreachable))}")

        # Reverse search from the terminals: a state that cannot reach one is an inescapable loop.
        preds: dict[str, set[str]] = {s.name: set() for s in self.states}
        for s in self.states:
            for t in _successors(s):
                preds[t].add(s.name)
        terminals = [s.name for s in self.states if _is_terminal(s)]
        if not terminals:
            raise ValueError(f"{at}graph has no terminal state (end=True, Succeed or Fail)")
        can_finish: set[str] = set()
        stack = list(terminals)
        while stack:
            name = stack.pop()
            if name in can_finish:
                continue
            can_finish.add(name)
            stack.extend(preds[name])
        stuck = [s.name for s in self.states if s.name not in can_finish]
        if stuck:
            raise ValueError(f"{at}states that can never reach an end (endless loop): "
                             f"{', '.join(map(repr, stuck))}")

    def _reachable_from(self, names: list[str]) -> set[str]:
        seen: set[str] = set()
        stack = list(names)
        while stack:
            name = stack.pop()
            if name in seen or name not in self._by_name:
                continue
            seen.add(name)
            stack.extend(_successors(self._by_name[name]))
        return seen

    def walk(self, prefix: str = "") -> Iterator[tuple[str, State]]:
        """Every state with its static path, nested ones included (map items appear as ``item[*]``)."""
        for s in self.states:
            path = f"{prefix}/{s.name}" if prefix else s.name
            yield path, s
            if isinstance(s, Parallel):
                for i, branch in enumerate(s.branches):
                    yield from branch.walk(f"{path}/branch[{i}]")
            elif isinstance(s, Map):
                yield from s.iterator.walk(f"{path}/item[*]")

    def to_asl(self) -> dict[str, Any]:
        """``{"StartAt": ..., "States": {...}}`` for this graph."""
        return {"StartAt": self.start_at, "States": {s.name: _state_to_asl(s) for s in self.states}}


def _check_name(name: str, at: str) -> None:
    if not isinstance(name, str) or not name:
        raise ValueError(f"{at}state names must be non-empty strings, got {name!r}")
    if len(name) > _MAX_NAME_LEN:
        raise ValueError(f"{at}state name {name!r} is longer than {_MAX_NAME_LEN} characters")
    bad = sorted(set(name) & _RESERVED_NAME_CHARS)
    if bad:
        raise ValueError(f"{at}state name {name!r} contains reserved characters {''.join(bad)!r}")
    if name.startswith("$"):
        raise ValueError(f"{at}state name {name!r} must not start with '$'")


def _check_wildcard_last(lists: list[tuple[str, ...]], what: str) -> None:
    for i, names in enumerate(lists):
        if ALL in names:
            if len(names) != 1:
                raise ValueError(f"{what}: {ALL} must appear alone in its error list")
            if i != len(lists) - 1:
                raise ValueError(f"{what}: the {ALL} entry must be the last one")


def _transition(state: Task | Parallel | Map | Pass, out: dict[str, Any]) -> dict[str, Any]:
    if state.end:
        out["End"] = True
    else:
        out["Next"] = state.next
    return out


def _state_to_asl(s: State) -> dict[str, Any]:
    out: dict[str, Any]
    if isinstance(s, Task):
        out = {"Type": "Task", "Resource": f"arn:reelforge:step:{s.fn_ref}"}
        if s.timeout_s is not None:
            # ASL wants whole seconds; round up so AWS never times out earlier than we do.
            out["TimeoutSeconds"] = max(1, math.ceil(s.timeout_s))
        xr: dict[str, Any] = {"resources": s.resources.to_dict(), "fn": s.fn_ref}
        if s.timeout_s is not None:
            xr["timeout_s"] = _number(s.timeout_s)
        out["x-reelforge"] = xr
    elif isinstance(s, Parallel):
        out = {"Type": "Parallel", "Branches": [b.to_asl() for b in s.branches]}
    elif isinstance(s, Map):
        out = {
            "Type": "Map",
            "ItemsPath": "$",
            "ItemProcessor": {"ProcessorConfig": {"Mode": "INLINE"}, **s.iterator.to_asl()},
            "MaxConcurrency": s.max_concurrency,
        }
        if s.items is not None:
            out["x-reelforge"] = {"items": fn_ref(s.items)}
    elif isinstance(s, Choice):
        # Conditions are Python callables; the export keeps the routing and the human description,
        # with a placeholder rule that is valid ASL.
        out = {
            "Type": "Choice",
            "Choices": [
                {"Variable": "$", "IsPresent": True, "Next": r.next, "Comment": r.description}
                for r in s.choices
            ],
        }
        if s.default is not None:
            out["Default"] = s.default
    elif isinstance(s, Succeed):
        out = {"Type": "Succeed"}
    elif isinstance(s, Fail):
        out = {"Type": "Fail", "Error": s.error, "Cause": s.cause}
    elif isinstance(s, Pass):
        out = {"Type": "Pass"}
        if s.result is not None:
            out["Result"] = s.result
    else:  # pragma: no cover - the State union is closed
        raise TypeError(f"unknown state type {type(s).__name__}")
    if s.comment:
        out["Comment"] = s.comment
    if isinstance(s, Task | Parallel | Map):
        if s.retry:
            out["Retry"] = [r.to_asl() for r in s.retry]
        if s.catch:
            out["Catch"] = [c.to_asl() for c in s.catch]
    if isinstance(s, Task | Parallel | Map | Pass):
        _transition(s, out)
    return out


def _one_credit(_: dict[str, Any]) -> int:
    return 1


@dataclass(frozen=True)
class Pipeline:
    """A named, versioned graph for one job kind. The graph is validated on construction."""

    kind: str
    version: int
    description: str
    graph: Graph
    input_model: type[Any] | None = None
    price: Callable[[dict[str, Any]], int] = _one_credit
    max_attempts: int | None = None
    # The final price, once the job succeeded: from its outputs and the credits reserved at submit (the price of
    # the input, which may only estimate the work). At most the reservation; the rest is refunded with the
    # settlement. None: the reservation is the price.
    settle: Callable[[dict[str, Any], int], int] | None = None

    def __post_init__(self) -> None:
        if not self.kind:
            raise ValueError("Pipeline.kind must not be empty")
        if self.version < 1:
            raise ValueError("Pipeline.version must be >= 1")
        if self.max_attempts is not None and self.max_attempts < 1:
            raise ValueError("Pipeline.max_attempts must be >= 1")
        try:
            self.graph.validate()
        except ValueError as exc:
            raise ValueError(f"pipeline {self.kind!r} v{self.version}: {exc}") from exc

    @property
    def resource_class(self) -> str:
        """``"gpu"`` when any of its tasks asks for a GPU, else ``"cpu"``: the worker fleet its jobs need (the
        queue metrics, the autoscaler and the deployment's worker groups are split by it)."""
        for _, s in self.graph.walk():
            if isinstance(s, Task) and s.resources.gpu > 0:
                return "gpu"
        return "cpu"

    def to_asl(self) -> dict[str, Any]:
        """The definition as Amazon States Language JSON (plus ``x-reelforge`` keys on Tasks)."""
        return {
            "Comment": f"{self.kind} v{self.version}: {self.description}",
            "Version": "1.0",
            **self.graph.to_asl(),
        }

    def describe(self) -> dict[str, Any]:
        """A flat, JSON-able summary: every state with its path, type and (for tasks) resources."""
        steps: list[dict[str, Any]] = []
        for path, s in self.graph.walk():
            entry: dict[str, Any] = {"path": path, "name": s.name, "type": type(s).__name__}
            if isinstance(s, Task):
                entry["fn"] = s.fn_ref
                entry["resources"] = s.resources.to_dict()
                entry["timeout_s"] = s.timeout_s
            if isinstance(s, Task | Parallel | Map):
                entry["retry"] = [r.to_asl() for r in s.retry]
                entry["catch"] = [c.to_asl() for c in s.catch]
            if isinstance(s, Map):
                entry["max_concurrency"] = s.max_concurrency
            if s.comment:
                entry["comment"] = s.comment
            steps.append(entry)
        out: dict[str, Any] = {
            "kind": self.kind,
            "version": self.version,
            "description": self.description,
            "max_attempts": self.max_attempts,
            "steps": steps,
        }
        schema = getattr(self.input_model, "model_json_schema", None)
        if callable(schema):
            out["input_schema"] = schema()
        return out


class PipelineRegistry:
    """Pipelines by job kind. One instance lives on the container (no module-global registry)."""

    def __init__(self, pipelines: tuple[Pipeline, ...] | list[Pipeline] = ()) -> None:
        self._by_kind: dict[str, Pipeline] = {}
        for p in pipelines:
            self.register(p)

    def register(self, pipeline: Pipeline) -> Pipeline:
        """Add a pipeline; a second, different pipeline for the same kind is a ValueError."""
        existing = self._by_kind.get(pipeline.kind)
        if existing is not None and existing is not pipeline:
            raise ValueError(f"pipeline kind {pipeline.kind!r} is already registered")
        self._by_kind[pipeline.kind] = pipeline
        return pipeline

    def get(self, kind: str) -> Pipeline:
        """The pipeline for ``kind``; ``errors.NotFound(code="unknown_kind")`` when there is none."""
        try:
            return self._by_kind[kind]
        except KeyError:
            raise errors.NotFound(f"unknown job kind {kind!r}", code="unknown_kind", kind=kind) from None

    def all(self) -> list[Pipeline]:
        """Every registered pipeline, sorted by kind."""
        return [self._by_kind[k] for k in sorted(self._by_kind)]

    def __contains__(self, kind: object) -> bool:
        return kind in self._by_kind

    def __len__(self) -> int:
        return len(self._by_kind)
