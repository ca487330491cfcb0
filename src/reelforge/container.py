"""Builds every adapter and service named by Settings: the only place that chooses implementations."""

from __future__ import annotations

from functools import cached_property, partial
from typing import Any

from reelforge.adapters.db.engine import Database
from reelforge.adapters.db.store import Store
from reelforge.config import Settings, get_settings
from reelforge.observability import Metrics


class Container:
    """Process-wide state lives here, never in module globals. Parts are built on first use."""

    def __init__(self, settings: Settings | None = None) -> None:
        self.settings = settings or get_settings()
        self.settings.data_dir.mkdir(parents=True, exist_ok=True)

    @cached_property
    def db(self) -> Database:
        return Database(self.settings.database_url, echo=self.settings.database.echo,
                        pool_size=self.settings.database.pool_size)

    @cached_property
    def store(self) -> Store:
        return Store(self.db)

    @cached_property
    def objects(self) -> Any:
        from reelforge.adapters.storage import build_object_store

        return build_object_store(self.settings)

    @cached_property
    def models(self) -> Any:
        from reelforge.adapters.models.registry import build_default_registry

        return build_default_registry(self.settings)

    @cached_property
    def pipelines(self) -> Any:
        from reelforge.pipelines import build_registry

        return build_registry(self.settings.extra_pipelines)

    @cached_property
    def events(self) -> Any:
        from reelforge.services.events import EventService

        return EventService(self.store, self.settings)

    @cached_property
    def auth(self) -> Any:
        from reelforge.services.auth import AuthService

        return AuthService(self.store, self.settings)

    @cached_property
    def credits(self) -> Any:
        from reelforge.services.credits import CreditService

        return CreditService(self.store)

    @cached_property
    def jobs(self) -> Any:
        from reelforge.pipelines import image_generate
        from reelforge.services.jobs import JobService

        svc = JobService(self.store, self.settings, self.pipelines, url_guard=self.events.guard)
        svc.checks[image_generate.TASK] = lambda data: image_generate.check(self.models, data)
        from reelforge.pipelines import image_upscale, video_upscale

        for up in (image_upscale, video_upscale):
            svc.checks[up.KIND] = lambda data: image_upscale.check_model(self.models, data)
            svc.owner_checks[up.KIND] = partial(up.submit_check, self)
        svc.owner_checks["video.analyze"] = lambda p, data: self.mobs.check_analyze(p, data)
        return svc

    @cached_property
    def vectors(self) -> Any:
        from reelforge.adapters.vectors import build_vector_index

        return build_vector_index(self.settings, self.db)

    @cached_property
    def mobs(self) -> Any:
        from reelforge.services.mobs import MobService

        return MobService(self.store, self.settings, assets=self.assets, objects=self.objects, jobs=self.jobs,
                          vectors=lambda: self.vectors)

    @cached_property
    def assets(self) -> Any:
        from reelforge.services.assets import AssetService

        return AssetService(self.store, self.objects, self.settings)

    @cached_property
    def metrics(self) -> Metrics:
        from reelforge.observability import FiguresCollector

        m = Metrics()
        m.add_db_collector(self._db_stats)
        # Worker-side figures (steps, jobs, models, credits, deliveries) come from the database at scrape time.
        mc = self.settings.metrics
        m.add_collector(FiguresCollector(self.stats.read_figures, lag_s=mc.db_lag_s,
                                         max_rows=mc.max_rows_per_scrape))
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
    def alarms(self) -> Any:
        from reelforge.services.alarms import AlarmService

        return AlarmService(self.store, self.settings)

    @cached_property
    def recovery(self) -> Any:
        from reelforge.services.recovery import RecoveryService

        return RecoveryService(self.store, self.settings, self.jobs)

    @cached_property
    def ip_limiter(self) -> Any:
        from reelforge.api.middleware import RateLimiter

        rl = self.settings.rate_limit
        return RateLimiter(rl.writes_per_window_ip, rl.window_s)

    @cached_property
    def account_limiter(self) -> Any:
        from reelforge.api.middleware import RateLimiter

        rl = self.settings.rate_limit
        return RateLimiter(rl.writes_per_window_account, rl.window_s)

    def _db_stats(self) -> dict[str, Any]:
        with self.store.tx(write=False) as tx:
            return {"jobs": tx.alarms.queue_stats(), "oldest_age": tx.alarms.oldest_queued_age(),
                    "deliveries": tx.alarms.delivery_stats()}

    def migrate(self) -> None:
        from reelforge.adapters.db.migrate import upgrade

        upgrade(self.settings.database_url)

    def close(self) -> None:
        if "tracing" in self.__dict__:
            self.tracing.shutdown()
        if "vectors" in self.__dict__:
            self.vectors.close()
        if "db" in self.__dict__:
            self.db.dispose()
