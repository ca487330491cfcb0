"""Alarm rules, evaluated by one worker per tick (the CloudWatch alarms of the AWS designs).

Each rule yields observations: a key (the rule, or the rule and a subject such as a model), a value,
the threshold and whether it breaches. A breach moves the alarm to `alarm` and writes `alarm.raised`;
the first evaluation without one moves it back to `ok` and writes `alarm.resolved`. State, history and
events change in one transaction. Events go through the outbox once per admin account (owner = the
admin), so each admin's webhooks subscribed to `alarm.*` receive them and delivery stays at least once
with a stable id per admin.

The tick also records a queue-depth sample (the console's queue chart) and prunes old samples.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any

from reelforge.config import AlarmRule, Settings
from reelforge.domain.records import Alarm, AlarmHistory
from reelforge.ports.repositories import Store, UnitOfWork

log = logging.getLogger("reelforge.alarms")

SCHEDULE = "alarms"

RULES: dict[str, tuple[str, str]] = {
    "job_failure_rate": ("Share of jobs that ended failed or dead among those that ended in the window", "ratio"),
    "queue_age": ("Seconds the oldest due job has waited in the queue", "seconds"),
    "worker_heartbeat": ("Seconds since any running worker's last heartbeat, while jobs are due", "seconds"),
    "model_error_rate": ("Share of a model adapter's runs that failed in the window (one alarm per model)", "ratio"),
}


@dataclass
class Observation:
    key: str
    rule: str
    value: float | None
    threshold: float
    breaching: bool
    message: str
    details: dict[str, Any] = field(default_factory=dict)


@dataclass
class Change:
    key: str
    rule: str
    event: str  # "raised" | "resolved"
    value: float | None
    message: str


def alarm_payload(alarm: Alarm) -> dict[str, Any]:
    """An alarm as events carry it."""
    return {"key": alarm.key, "rule": alarm.rule, "state": alarm.state, "value": alarm.value,
            "threshold": alarm.threshold, "message": alarm.message, "details": alarm.details or {},
            "raised_at": alarm.raised_at, "resolved_at": alarm.resolved_at}


class AlarmService:
    def __init__(self, store: Store, settings: Settings) -> None:
        self.store = store
        self.settings = settings

    # --- configuration ---------------------------------------------------------------------------
    def rule(self, name: str) -> AlarmRule:
        rule: AlarmRule = getattr(self.settings.alarms, name)
        return rule

    def rules(self) -> list[dict[str, Any]]:
        """Every rule with its settings (for the console)."""
        out = []
        for name, (description, unit) in RULES.items():
            r = self.rule(name)
            out.append({"name": name, "description": description, "unit": unit, "enabled": r.enabled,
                        "threshold": r.threshold, "window_s": r.window_s, "min_samples": r.min_samples})
        return out

    # --- the scheduled tick --------------------------------------------------------------------------
    def tick(self, runner: str) -> bool:
        """Evaluate when this caller wins the tick (one runner per interval across all workers)."""
        a = self.settings.alarms
        if not a.enabled:
            return False
        with self.store.tx(write=False) as tx:
            if tx.ops.schedule_pending(SCHEDULE):  # the common case: no write transaction at all
                return False
        with self.store.tx() as tx:
            due = tx.ops.try_schedule(SCHEDULE, a.interval_s, runner)
        if due:
            self.evaluate()
        return due

    def evaluate(self) -> list[Change]:
        """Sample the queue, evaluate every rule, apply state changes and emit their events (one transaction)."""
        with self.store.tx() as tx:
            now = tx.now()
            queue = tx.alarms.queue_now()
            tx.alarms.add_queue_sample(queued=int(queue["queued"]), running=int(queue["running"]),
                                       oldest_age_s=queue["oldest_ready_age_s"])
            observations = self._observe(tx, now, queue)
            changes = self._apply(tx, now, observations)
            tx.alarms.prune_observability(now - self.settings.alarms.retention_s)
        for c in changes:
            log.warning("alarm %s %s: %s", c.key, c.event, c.message)
        return changes

    # --- rules -------------------------------------------------------------------------------------
    def _observe(self, tx: UnitOfWork, now: float, queue: dict[str, float]) -> list[Observation]:
        out: list[Observation] = []
        r = self.rule("job_failure_rate")
        if r.enabled:
            counts = tx.alarms.finished_counts(now - r.window_s)
            bad = counts.get("failed", 0) + counts.get("dead", 0)
            total = bad + counts.get("succeeded", 0)
            rate = bad / total if total else None
            breaching = rate is not None and total >= r.min_samples and rate > r.threshold
            out.append(Observation(
                "job_failure_rate", "job_failure_rate", rate, r.threshold, breaching,
                f"{bad} of {total} jobs failed in the last {r.window_s / 60:g} min"
                + (f" ({rate:.1%} > {r.threshold:.1%})" if breaching and rate is not None else ""),
                {"failed": bad, "ended": total, "window_s": r.window_s}))
        r = self.rule("queue_age")
        if r.enabled:
            age = queue["oldest_ready_age_s"]
            out.append(Observation(
                "queue_age", "queue_age", age, r.threshold, age > r.threshold,
                f"oldest due job has waited {age:.0f} s ({int(queue['ready'])} due)",
                {"ready": int(queue["ready"]), "queued": int(queue["queued"])}))
        r = self.rule("worker_heartbeat")
        if r.enabled:
            last = tx.alarms.last_worker_heartbeat()
            silence = (now - last) if last is not None else None
            ready = int(queue["ready"])
            breaching = ready > 0 and (silence is None or silence > r.threshold)
            what = ("no running worker has reported" if silence is None
                    else f"last worker heartbeat {silence:.0f} s ago")
            out.append(Observation("worker_heartbeat", "worker_heartbeat", silence, r.threshold, breaching,
                                   f"{what}; {ready} job(s) due", {"ready": ready}))
        r = self.rule("model_error_rate")
        if r.enabled:
            seen = set()
            for task, model, runs, errs in tx.alarms.model_invocation_counts(now - r.window_s):
                key = f"model_error_rate:{task}/{model}"
                seen.add(key)
                rate = errs / runs if runs else 0.0
                breaching = runs >= r.min_samples and rate > r.threshold
                out.append(Observation(key, "model_error_rate", rate, r.threshold, breaching,
                                       f"{task}/{model}: {errs} of {runs} runs failed in the last "
                                       f"{r.window_s / 60:g} min",
                                       {"task": task, "model": model, "runs": runs, "errors": errs}))
            # A model that stopped running has no runs in the window: its alarm resolves.
            for alarm in tx.alarms.alarms(state="alarm"):
                if alarm.rule == "model_error_rate" and alarm.key not in seen:
                    out.append(Observation(alarm.key, alarm.rule, None, r.threshold, False,
                                           f"{alarm.key.split(':', 1)[-1]}: no runs in the window",
                                           dict(alarm.details or {})))
        # Rules switched off resolve whatever they had raised.
        enabled = {name for name in RULES if self.rule(name).enabled}
        for alarm in tx.alarms.alarms(state="alarm"):
            if alarm.rule not in enabled:
                out.append(Observation(alarm.key, alarm.rule, None, alarm.threshold, False, "rule disabled"))
        return out

    def _apply(self, tx: UnitOfWork, now: float, observations: list[Observation]) -> list[Change]:
        changes: list[Change] = []
        admins: list[str] | None = None
        for ob in observations:
            current = tx.alarms.alarm(ob.key)
            was = current.state if current is not None else "ok"
            state = "alarm" if ob.breaching else "ok"
            values: dict[str, Any] = {"rule": ob.rule, "state": state, "value": ob.value, "threshold": ob.threshold,
                                      "message": ob.message[:500], "details": ob.details, "evaluated_at": now}
            if current is None:
                values["changed_at"] = now
            if state != was:
                values["changed_at"] = now
                values["raised_at" if state == "alarm" else "resolved_at"] = now
            alarm = tx.alarms.save_alarm(ob.key, **values)
            if state == was:
                continue
            event = "raised" if state == "alarm" else "resolved"
            tx.alarms.add_alarm_history(key=ob.key, rule=ob.rule, event=event, value=ob.value, threshold=ob.threshold,
                                        message=ob.message[:500])
            if admins is None:
                admins = tx.accounts.admin_ids()
            payload = alarm_payload(alarm)
            for admin_id in admins:
                tx.events.emit(f"alarm.{event}", payload, owner_id=admin_id)
            changes.append(Change(ob.key, ob.rule, event, ob.value, ob.message))
        return changes

    # --- reading -----------------------------------------------------------------------------------
    def overview(self, *, hours: float = 24) -> dict[str, Any]:
        """Rules, alarms now firing, and what was raised or resolved in the last `hours`."""
        with self.store.tx(write=False) as tx:
            active = list(tx.alarms.alarms(state="alarm"))
            recent: list[AlarmHistory] = list(tx.alarms.alarm_history(tx.now() - hours * 3600))
        return {"rules": self.rules(), "active": active, "recent": recent}
