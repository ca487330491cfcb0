"""Builds every adapter and service named by Settings: the only place that chooses implementations."""

from __future__ import annotations

import logging
import threading
from functools import cached_property
from typing import Any

from reelforge.adapters.db.engine import Database
from reelforge.adapters.db.store import Store
from reelforge.adapters.files import private_dir
from reelforge.applications import AppError, AppManifest, Call, Tick, discover
from reelforge.config import Settings, get_settings
from reelforge.observability import Metrics


class Container:
    """Process-wide state lives here, never in module globals. Parts are built on first use."""

    def __init__(self, settings: Settings | None = None, *, apps: tuple[AppManifest, ...] | None = None) -> None:
        """`apps`: the applications, instead of the installed ones (tests, benchmarks)."""
        self.settings = settings or get_settings()
        if apps is not None:
            self.__dict__["apps"] = tuple(apps)
        private_dir(self.settings.data_dir)
        self._app_lock = threading.RLock()
        self._app_services: dict[str, Any] = {}
        # The worker processes this process keeps running (`reelforge run`), or None: /readyz reads it.
        self.supervisor: Any = None

    @cached_property
    def db(self) -> Database:
        return Database(self.settings.database_url, echo=self.settings.database.echo,
                        pool_size=self.settings.database.pool_size)

    @cached_property
    def store(self) -> Store:
        return Store(self.db, changes=self.change_feed)

    @cached_property
    def change_feed(self) -> Any:
        """Change notices between processes (live.notifier): PostgreSQL LISTEN/NOTIFY, Redis pub/sub, in-process."""
        live = self.settings.live
        kind = live.resolved_notifier(self.db.is_postgres)
        if kind == "redis":
            from reelforge.adapters.notify.redis import RedisChangeFeed

            return RedisChangeFeed(live.redis_url or "redis://127.0.0.1:6379/0", channel=live.redis_channel)
        if kind == "postgres":
            if not self.db.is_postgres:
                raise ValueError("live.notifier=postgres needs a PostgreSQL database_url")
            from reelforge.adapters.notify.postgres import PostgresChangeFeed

            return PostgresChangeFeed(self.settings.database_url, channel=live.pg_channel)
        from reelforge.adapters.notify.local import LocalChangeFeed

        return LocalChangeFeed()

    @cached_property
    def live(self) -> Any:
        """The process's dispatcher of change notices to its live streams (services/live.py)."""
        from reelforge.services.live import LiveEvents

        feed = self.change_feed
        poll = self.settings.live.fallback_poll_s
        if poll is None:
            poll = 5.0 if feed.crosses_processes else 0.25
        return LiveEvents(feed, fallback_poll_s=poll)

    @cached_property
    def objects(self) -> Any:
        from reelforge.adapters.storage import build_object_store

        return build_object_store(self.settings)

    @cached_property
    def apps(self) -> tuple[AppManifest, ...]:
        """The installed applications (entry-point group `reelforge.apps`)."""
        return tuple(discover())

    @cached_property
    def error_codes(self) -> frozenset[str]:
        """Every documented error code: the platform's and each installed application's."""
        from reelforge.errors import CODES

        return frozenset(CODES).union(*(a.error_codes for a in self.apps))

    def app(self, name: str) -> Any:
        """Application `name`'s service object, built on first use."""
        services = self._app_services
        if name not in services:
            manifest = next((a for a in self.apps if a.name == name), None)
            if manifest is None or manifest.service is None:
                raise LookupError(f"no installed application named {name!r} provides a service")
            with self._app_lock:
                if name not in services:
                    services[name] = manifest.service(self)
        return services[name]

    def app_services(self) -> dict[str, Any]:
        """Every application's service object by application name (what pipeline steps may use)."""
        return {a.name: self.app(a.name) for a in self.apps if a.service is not None}

    def app_calls(self) -> dict[str, Call]:
        """The interactive calls the applications register, by name ("<application>.<verb>")."""
        return dict(self._calls)

    @cached_property
    def _calls(self) -> dict[str, Call]:
        found: dict[str, Call] = {}
        for application in self.apps:
            for call in application.calls(self.settings):
                if not isinstance(call, Call):
                    raise AppError(f"application {application.name!r}: calls must be Call, got {type(call).__name__}")
                if not call.name.startswith(f"{application.name}.") or "/" in call.name or len(call.name) > 100:
                    raise AppError(f"application {application.name!r}: call {call.name!r} must be named "
                                   f"'{application.name}.<verb>'")
                if call.name in found:
                    raise AppError(f"two calls are named {call.name!r}")
                found[call.name] = call
        return found

    @cached_property
    def calls(self) -> Any:
        """Interactive calls from this process to the workers (services/calls.py)."""
        from reelforge.adapters.calls.http import HttpCallTransport
        from reelforge.services.calls import CallService

        cfg = self.settings.calls
        transport = HttpCallTransport(self.settings.signing_secret, connect_timeout_s=cfg.connect_timeout_s,
                                      max_result_bytes=cfg.max_result_bytes)
        return CallService(self.store, self.settings, transport, self._calls)

    def ticks(self) -> list[Tick]:
        """The periodic work the installed applications register, run by every worker's maintenance."""
        return [t for a in self.apps for t in a.ticks]

    @cached_property
    def models(self) -> Any:
        from reelforge.adapters.models.registry import build_default_registry

        return build_default_registry(self.settings, self.apps)

    @cached_property
    def pipelines(self) -> Any:
        from reelforge.pipelines import build_registry

        return build_registry(self.apps, self.settings.extra_pipelines, self.settings)

    @cached_property
    def events(self) -> Any:
        from reelforge.services.events import EventService

        svc = EventService(self.store, self.settings, self.secret_box,
                           event_types=tuple(t for a in self.apps for t in a.event_types))
        if self.crm is not None:
            from reelforge.services.crm import EVENT_TYPES as CRM_EVENTS

            svc.add_consumer("crm", CRM_EVENTS, self.crm.handle)
        svc.tx_consumers.append(lambda tx, events: self.mail.on_events(tx, events))
        return svc

    @cached_property
    def billing(self) -> Any:
        """Credit purchases (Stripe Checkout); its gateway is None while billing.stripe.secret_key is empty."""
        from reelforge.adapters.billing.stripe import StripeGateway
        from reelforge.adapters.db.repositories.billing import BillingRepository
        from reelforge.services.billing import BillingService

        cfg = self.settings.billing
        gateway = StripeGateway(cfg.stripe.secret_key, cfg.stripe.webhook_secrets, api_base=cfg.stripe.api_base,
                                timeout_s=cfg.stripe.timeout_s, tolerance_s=cfg.webhook_tolerance_s) \
            if cfg.configured else None
        return BillingService(self.store, self.settings, gateway, BillingRepository.of, audit=self.audit)

    @cached_property
    def crm(self) -> Any:
        """The CRM sync (an outbox consumer), or None while crm.provider is none."""
        cfg = self.settings.crm
        if cfg.provider != "salesforce":
            return None
        from reelforge.adapters.crm.salesforce import SalesforceClient
        from reelforge.services.crm import CrmSync

        sf = cfg.salesforce
        return CrmSync(SalesforceClient(
            login_url=sf.login_url, client_id=sf.client_id, client_secret=sf.client_secret,
            api_version=sf.api_version, contact_external_id=sf.contact_external_id,
            purchase_object=sf.purchase_object, purchase_external_id=sf.purchase_external_id,
            contact_lookup=sf.contact_lookup, timeout_s=sf.timeout_s))

    @cached_property
    def secret_box(self) -> Any:
        """Encrypts signing secrets at rest under a key derived from the instance secret."""
        from reelforge.adapters.secretbox import AesGcmSecretBox

        return AesGcmSecretBox(self.settings.jwt_secret)

    @cached_property
    def auth(self) -> Any:
        from reelforge.services.auth import AuthService

        svc = AuthService(self.store, self.settings, self.secret_box, audit=self.audit, oidc=self.oidc,
                          apps=[a.name for a in self.apps])
        svc.on_register.append(lambda tx, user: self.mail.on_register(tx, user))
        svc.on_password_changed.append(lambda tx, user: self.mail.password_changed(tx, user))
        return svc

    @cached_property
    def mail(self) -> Any:
        """E-mail: the provider named by `mail.provider`, the queue, the verification and reset flows."""
        from reelforge.adapters import auth as crypto
        from reelforge.adapters.mail import build_mail_sender
        from reelforge.services.auth import AuthService
        from reelforge.services.mail import MailService

        return MailService(self.store, self.settings, build_mail_sender(self.settings), self.secret_box,
                           hash_password=lambda pw: crypto.hash_password(pw), check_password=AuthService.check_password,
                           normalize_email=AuthService._normalize_email,
                           principal_changed=lambda user_id: self.auth._principal_changed(user_id))

    @cached_property
    def oidc(self) -> Any:
        """The external OIDC issuer's token verifier, or None when `oidc.issuer` is not set."""
        if not self.settings.oidc.issuer:
            return None
        from reelforge.adapters.oidc import OidcVerifier

        return OidcVerifier(self.settings.oidc)

    @cached_property
    def audit(self) -> Any:
        from reelforge.services.audit import AuditService

        return AuditService(self.store)

    @cached_property
    def accounts(self) -> Any:
        """Account export and deletion, with each application's hooks."""
        from reelforge.services.accounts import AccountService

        return AccountService(
            self.store, self.objects, self.settings, auth=self.auth, audit=self.audit, container=self,
            export_hooks={a.name: a.account_export for a in self.apps if a.account_export is not None},
            delete_hooks={a.name: a.account_delete for a in self.apps if a.account_delete is not None})

    @cached_property
    def credits(self) -> Any:
        from reelforge.services.credits import CreditService

        return CreditService(self.store, audit=self.audit)

    @cached_property
    def jobs(self) -> Any:
        from reelforge.services.jobs import JobService

        svc = JobService(self.store, self.settings, self.pipelines, url_guard=self.events.guard,
                         error_codes=self.error_codes)
        svc.live = self.live
        from reelforge.pipelines import build_registry

        for application in self.apps:
            svc.checks.update(application.submit_checks(self))
            svc.owner_checks.update(application.owner_checks(self))
            own = build_registry([application], (), self.settings).all()
            svc.kind_apps.update({p.kind: application.name for p in own if not p.kind.startswith("system.")})
        return svc

    @cached_property
    def vectors(self) -> Any:
        from reelforge.adapters.vectors import build_vector_index

        return build_vector_index(self.settings, self.db)

    @cached_property
    def assets(self) -> Any:
        from reelforge.services.assets import AssetService

        return AssetService(self.store, self.objects, self.settings)

    @cached_property
    def media(self) -> Any:
        from reelforge.adapters.media.inspector import LocalMediaInspector
        from reelforge.services.media import MediaService

        return MediaService(self.objects, self.settings, LocalMediaInspector())

    @cached_property
    def metrics(self) -> Metrics:
        from reelforge.observability import FiguresCollector

        m = Metrics()
        m.add_db_collector(self._db_stats)
        # Worker-side figures (steps, jobs, models, credits, deliveries) come from the database at scrape time.
        mc = self.settings.metrics
        m.add_collector(FiguresCollector(self.stats.read_figures, lag_s=mc.db_lag_s,
                                         max_rows=mc.max_rows_per_scrape))
        if mc.cloudwatch.enabled:
            from reelforge.observability import CloudMetricsCollector

            m.add_collector(CloudMetricsCollector(lambda: self.cloud_metrics.status()))
        return m

    @cached_property
    def tracing(self) -> Any:
        from reelforge.tracing import Tracing

        return Tracing(self.settings)

    @cached_property
    def stats(self) -> Any:
        from reelforge.services.stats import StatsService

        return StatsService(self.store, self.settings)

    @cached_property
    def queue_metrics(self) -> Any:
        from reelforge.services.queue_metrics import QueueMetrics

        return QueueMetrics(self.store, self.pipelines)

    @cached_property
    def cloud_metrics(self) -> Any:
        """The queue and alarm figures published to CloudWatch (metrics.cloudwatch); a no-op while disabled."""
        from reelforge.services.cloud_metrics import CloudMetricsPublisher

        cfg = self.settings.metrics.cloudwatch
        sink = None
        if cfg.enabled:
            from reelforge.adapters.metrics.cloudwatch import CloudWatchSink

            sink = CloudWatchSink(cfg.region, cfg.endpoint_url, timeout_s=cfg.timeout_s)
        return CloudMetricsPublisher(self.store, self.settings, self.queue_metrics, sink)

    @cached_property
    def alarms(self) -> Any:
        from reelforge.services.alarms import AlarmService

        return AlarmService(self.store, self.settings)

    @cached_property
    def recovery(self) -> Any:
        from reelforge.services.recovery import RecoveryService

        return RecoveryService(self.store, self.settings, self.jobs)

    @cached_property
    def results(self) -> Any:
        """Signed result URLs beside the asset ids of job outputs (services/results.py)."""
        from reelforge.services.results import ResultLinks

        st = self.settings.storage
        return ResultLinks(self.store, self.objects, ttl_s=st.result_url_ttl_s, max_urls=st.result_urls_max)

    @cached_property
    def limit_counter(self) -> Any:
        """The counters every API process shares (rate_limit.backend), or None for per-process memory."""
        rl = self.settings.rate_limit
        backend = rl.resolved_backend
        if backend == "redis":
            from reelforge.adapters.limits.redis import RedisWindowCounter

            return RedisWindowCounter(rl.redis_url or "redis://127.0.0.1:6379/0", prefix=rl.redis_prefix)
        if backend == "database":
            from reelforge.adapters.limits.database import DatabaseWindowCounter

            return DatabaseWindowCounter(self.db)
        return None

    def _limiter(self, name: str, limit: int) -> Any:
        rl = self.settings.rate_limit
        if limit <= 0:
            return None
        if self.limit_counter is None:
            from reelforge.services.limits import RateLimiter

            return RateLimiter(limit, rl.window_s)
        from reelforge.services.limits import SharedRateLimiter

        return SharedRateLimiter(self.limit_counter, limit, rl.window_s, name=name, lease_divisor=rl.lease_divisor)

    @cached_property
    def ip_limiter(self) -> Any:
        """Writes per client address (None: not limited)."""
        return self._limiter("w:ip", self.settings.rate_limit.writes_per_window_ip)

    @cached_property
    def account_limiter(self) -> Any:
        """Writes per account."""
        return self._limiter("w:acct", self.settings.rate_limit.writes_per_window_account)

    @cached_property
    def ip_read_limiter(self) -> Any:
        """Reads per client address."""
        return self._limiter("r:ip", self.settings.rate_limit.reads_per_window_ip)

    @cached_property
    def account_read_limiter(self) -> Any:
        """Reads per account."""
        return self._limiter("r:acct", self.settings.rate_limit.reads_per_window_account)

    # --- elasticity: the step executor, the autoscaler's scaler, Spot interruption notices ---------------------
    def step_executor(self, max_workers: int) -> Any:
        """Where a worker's steps run (settings `worker.executor`): a thread pool, or a Ray cluster."""
        if self.settings.worker.executor == "ray":
            from reelforge.runtime.ray_executor import RayExecutor

            return RayExecutor(self.settings)
        from reelforge.runtime.executors import LocalExecutor

        return LocalExecutor(max_workers=max_workers)

    def kinds_of_class(self, resource_class: str) -> list[str]:
        """The job kinds whose pipelines need workers of ``resource_class`` (cpu or gpu)."""
        return sorted(p.kind for p in self.pipelines.all() if p.resource_class == resource_class)

    def scaler(self, *, env: dict[str, str] | None = None) -> Any:
        """The autoscaler's target (settings `autoscale.scaler`): local worker processes or Auto Scaling groups."""
        a = self.settings.autoscale
        if a.scaler == "asg":
            from reelforge.adapters.scaling.asg import AsgScaler

            return AsgScaler(a.asg_groups, region=a.asg_region, endpoint_url=a.asg_endpoint_url or None)
        from reelforge.adapters.scaling.local import LocalProcessScaler

        grace = self.settings.jobs.shutdown_grace_s
        return LocalProcessScaler(self.kinds_of_class, env=env,
                                  concurrency={"cpu": a.cpu.concurrency, "gpu": a.gpu.concurrency},
                                  grace_s=grace + min(10.0, grace) + 5)

    def autoscaler(self, scaler: Any = None) -> Any:
        from reelforge.services.autoscale import Autoscaler, policies_from

        return Autoscaler(self.queue_metrics, scaler if scaler is not None else self.scaler(),
                          policies_from(self.settings))

    def interruption_notices(self) -> Any:
        """The Spot interruption notice source (settings `spot`), or None when not enabled."""
        sp = self.settings.spot
        if not sp.enabled:
            return None
        from reelforge.adapters.cloud.imds import InstanceMetadataNotices

        return InstanceMetadataNotices(sp.metadata_url, timeout_s=sp.timeout_s, token_ttl_s=sp.token_ttl_s)

    def _db_stats(self) -> dict[str, Any]:
        with self.store.tx(write=False) as tx:
            stats = {"jobs": tx.alarms.queue_stats(), "oldest_age": tx.alarms.oldest_queued_age(),
                     "deliveries": tx.alarms.delivery_stats()}
        stats["queue"] = self.queue_metrics.figures()
        return stats

    def migrate(self) -> None:
        """Bring the schema up to date, then encrypt any signing secret an older version stored in plain text."""
        from reelforge.adapters.db.migrate import upgrade

        upgrade(self.settings.database_url, locations=self.migration_folders())
        sealed = self.events.seal_stored_secrets()
        if sealed:
            logging.getLogger("reelforge.db").info("encrypted %d signing secrets stored in plain text", sealed)

    def migration_folders(self) -> list[Any]:
        """Each installed application's Alembic version folder."""
        return [a.migrations for a in self.apps if a.migrations is not None]

    def close(self) -> None:
        if "calls" in self.__dict__:
            self.calls.close()
        if "events" in self.__dict__:
            self.events.close()
        if "mail" in self.__dict__:
            self.mail.close()
        if "tracing" in self.__dict__:
            self.tracing.shutdown()
        if "cloud_metrics" in self.__dict__ and self.cloud_metrics.sink is not None:
            self.cloud_metrics.sink.close()
        if "vectors" in self.__dict__:
            self.vectors.close()
        if self.__dict__.get("limit_counter") is not None:
            self.limit_counter.close()
        if "change_feed" in self.__dict__:
            self.change_feed.close()
        if "db" in self.__dict__:
            self.db.dispose()
