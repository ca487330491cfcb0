"""Settings for every process. Built by get_settings(), never at import time."""

from __future__ import annotations

import os
import secrets
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict


class DatabaseSettings(BaseModel):
    # Empty means SQLite under data_dir.
    url: str = ""
    echo: bool = False
    pool_size: int = 10


class StorageSettings(BaseModel):
    backend: Literal["local", "s3"] = "local"
    # Local backend root; empty means data_dir / "objects".
    root: str = ""
    s3_bucket: str = "reelforge"
    s3_endpoint_url: str | None = None
    s3_region: str = "us-east-1"
    s3_access_key: str | None = None
    s3_secret_key: str | None = None
    s3_addressing_style: Literal["auto", "path", "virtual"] = "auto"
    upload_expiry_s: int = 15 * 60
    download_expiry_s: int = 60 * 60
    # Job outputs carry a signed `*_url` beside each `*asset_id`; each URL lives this long (at least two thirds
    # of it from the moment it is served: URLs are signed per third, so a polled job keeps its ETag meanwhile).
    result_url_ttl_s: int = Field(default=15 * 60, ge=60, le=7 * 86400)
    # At most this many result URLs per answer (a list of jobs shares them); the rest keep only their ids.
    result_urls_max: int = Field(default=200, ge=0, le=1000)
    max_upload_bytes: int = 5 * 1024**3
    # Uploads above this size are offered as multipart.
    multipart_threshold: int = 64 * 1024**2
    part_size: int = 16 * 1024**2
    # S3 server-side encryption on every write (and in presigned PUTs and multipart uploads): none for
    # S3-compatible servers, AES256 (SSE-S3) or aws:kms (SSE-KMS, with s3_kms_key_id or the account's AWS key).
    s3_sse: Literal["none", "AES256", "aws:kms"] = "none"
    s3_kms_key_id: str | None = None
    # Write each object in its lifecycle class's storage class (domain/cloud.py STORAGE_CLASS); turn off for an
    # S3-compatible server that refuses the classes. The lifecycle tag is written either way.
    s3_storage_classes: bool = True
    # Downloads through CloudFront (the deployment's distribution with Origin Access Control and a trusted key
    # group): the distribution's https:// URL, the public key's id, and the private key (PEM text or a file). Empty
    # cdn_url: S3 presigned URLs. Attachments (a download name) keep S3 presigned URLs.
    cdn_url: str = ""
    cdn_key_pair_id: str = ""
    cdn_private_key_file: str = ""
    cdn_private_key: str = Field(default="", repr=False)

    @model_validator(mode="after")
    def _kms_key_needs_kms(self) -> StorageSettings:
        if self.s3_kms_key_id and self.s3_sse != "aws:kms":
            raise ValueError("storage.s3_kms_key_id is set but storage.s3_sse is not aws:kms")
        return self


class AuthSettings(BaseModel):
    # Empty means a secret generated once and kept in data_dir/secret-key.
    jwt_secret: str = ""
    jwt_issuer: str = "reelforge"
    access_ttl_s: int = 15 * 60
    refresh_ttl_s: int = 30 * 24 * 3600
    admin_email: str = "admin@example.com"
    allow_registration: bool = True
    # Sign-in throttling per e-mail address, besides the per-IP write limit. Kept in the database, so every
    # API process counts the same failures. The login_free_failures-th failure in a row refuses sign-ins for
    # that address (429 login_throttled) for login_backoff_base_s, each further failure doubles the wait up to
    # login_backoff_max_s; a successful sign-in clears the count, and so do login_failure_window_s without one.
    login_free_failures: int = Field(default=5, ge=1, le=1000)
    login_backoff_base_s: float = Field(default=1.0, gt=0, le=3600)
    login_backoff_max_s: float = Field(default=900.0, gt=0, le=86400)
    login_failure_window_s: float = Field(default=3600.0, gt=0, le=30 * 86400)


class RateLimitSettings(BaseModel):
    enabled: bool = True
    writes_per_window_ip: int = 100
    writes_per_window_account: int = 300
    # Reads (GET/HEAD under /v1, signed-URL transfers excepted) have their own budgets: polling clients read far
    # more than they write. 0: reads are not limited.
    reads_per_window_ip: int = Field(default=3000, ge=0)
    reads_per_window_account: int = Field(default=6000, ge=0)
    window_s: int = 300
    # Where the counters live. memory: in each API process (N processes allow N times the limits); database: a
    # counter table in the application database, shared by every process; redis: shared through Redis at
    # redis_url. Unset: redis when redis_url is set, else database.
    backend: Literal["memory", "database", "redis"] | None = None
    redis_url: str = ""
    redis_prefix: str = "reelforge:rl:"
    # A process takes 1/lease_divisor of a budget from the shared counter at once and spends it locally, so a hot
    # client costs one shared write per that many requests; unspent shares lapse with the window, so with P
    # processes a client may be refused up to (P-1)*limit/lease_divisor requests early, never allowed more.
    # 1 counts every request in the shared store.
    lease_divisor: int = Field(default=50, ge=1, le=10_000)

    @property
    def resolved_backend(self) -> str:
        """The backend in use: the configured one, else redis when a URL is set, else database."""
        return self.backend or ("redis" if self.redis_url else "database")


class CorsSettings(BaseModel):
    # Origins (scheme://host[:port]) whose browser pages may call the API; empty: no CORS headers at all.
    # "*" allows any origin (never with credentials).
    allow_origins: list[str] = Field(default_factory=list)
    # Cookies and HTTP auth from those origins (Access-Control-Allow-Credentials). API clients send a bearer
    # token, which needs no credentials mode; refused together with "*".
    allow_credentials: bool = False
    max_age_s: int = Field(default=600, ge=0, le=86400)

    @model_validator(mode="after")
    def _no_wildcard_credentials(self) -> CorsSettings:
        if self.allow_credentials and "*" in self.allow_origins:
            raise ValueError("cors.allow_credentials cannot be combined with the origin '*'")
        for o in self.allow_origins:
            if o != "*" and (not o.startswith(("http://", "https://")) or o.rstrip("/") != o or
                             o.count("/") != 2):
                raise ValueError(f"cors.allow_origins: {o!r} is not an origin (scheme://host[:port])")
        return self


class JobSettings(BaseModel):
    lease_s: float = 30.0
    heartbeat_s: float = 5.0
    max_attempts: int = 3
    retry_base_s: float = 2.0
    retry_max_s: float = 300.0
    ttl_s: int = 7 * 24 * 3600
    poll_interval_s: float = 1.0
    shutdown_grace_s: float = 30.0
    max_wait_s: int = 60
    # A worker whose heartbeat is older than this is reported lost (admin workers, /readyz); unset: the larger
    # of three heartbeats and one lease.
    worker_lost_after_s: float | None = Field(default=None, gt=0)
    # How often a running step may read its job's cancel flag from the database (ctx.stopping(),
    # ctx.check_cancelled(), the model adapters' cancel probes), so a cancel stops a long model call within
    # one step rather than at the next heartbeat; 0 reads at every check.
    cancel_poll_s: float = Field(default=0.25, ge=0.0, le=60.0)
    # Scratch folders of crashed steps (<data_dir>/tmp) and partial downloads (<data_dir>/cache/**/.*.part) are
    # removed by each worker's maintenance once untouched this long and not owned by a running attempt.
    scratch_grace_s: float = Field(default=900.0, ge=0.0)
    # Jobs a worker claims per claim transaction (prefetch); 1 claims one at a time; unset: 4 per slot (as
    # Celery's default prefetch multiplier). Prefetched jobs wait in the worker (leases renewed by its
    # heartbeat) and are handed back on shutdown. A worker prefetches only while its recent jobs are short: when
    # their moving-average run time reaches prefetch_max_job_s it claims one job per free slot, so a long job
    # never waits in one worker's buffer while another worker is idle (prefetch_max_job_s 0: never prefetch).
    prefetch: int | None = Field(default=None, ge=1, le=100)
    prefetch_max_job_s: float = Field(default=1.0, ge=0.0, le=86400.0)
    # Successes finishing within this window go into one transaction (each job fenced on its own); 0 = one
    # transaction per job.
    finish_window_s: float = Field(default=0.005, ge=0.0, le=1.0)
    finish_batch_max: int = Field(default=64, ge=1, le=1000)
    # Jobs that reserve no credits (system.noop, any kind while credits are off) one account may submit per
    # rolling window, counted in the database across all API processes; past it 429 free_jobs_limited. 0: no limit.
    free_jobs_per_window: int = Field(default=1000, ge=0)
    free_jobs_window_s: float = Field(default=600.0, gt=0, le=86400.0)


class CreditSettings(BaseModel):
    starting_grant: int = 100
    enabled: bool = True


class WebhookSettings(BaseModel):
    # Refuse loopback/private/link-local/metadata targets unless a developer turns this on.
    allow_private_targets: bool = False
    timeout_s: float = 10.0
    max_attempts: int = 8
    retry_base_s: float = 5.0
    retry_max_s: float = 3600.0
    signing_secret: str = ""
    # After a subscription's secret is rotated, deliveries carry a signature with the old secret too, this long.
    rotation_overlap_s: float = Field(default=24 * 3600.0, ge=0, le=30 * 86400.0)
    # The pre-Standard-Webhooks header `Reelforge-Signature` (deprecated; sent beside the `webhook-*` headers).
    legacy_signature: bool = True
    # Subscriptions one account may hold; creating one more answers 409 webhook_limit_reached.
    max_per_account: int = Field(default=20, ge=1, le=10_000)
    # Deliveries one worker process sends at once (a thread pool), and how many of them one account may take, so
    # that an account with a slow or flooded target never holds every sender while another account waits.
    concurrency: int = Field(default=8, ge=1, le=256)
    account_concurrency: int = Field(default=4, ge=1, le=256)
    # Circuit breaker per target (host and port): after this many consecutive failures (no answer, timeout, 5xx,
    # 408, 429) nothing more is sent there for the cool-down; its deliveries stay pending (no attempt counted),
    # then one delivery probes the target: success closes the breaker, failure opens it again.
    breaker_failures: int = Field(default=5, ge=1, le=1000)
    breaker_cooldown_s: float = Field(default=60.0, gt=0, le=86400.0)


class CreditPack(BaseModel):
    """One credit pack on sale: `price` in the currency's minor units (cents), `currency` as ISO 4217 in lower case."""

    id: str = Field(pattern=r"^[a-z0-9][a-z0-9_-]{0,39}$")
    credits: int = Field(ge=1, le=10**9)
    price: int = Field(ge=1, le=10**10)
    currency: str = Field(default="usd", pattern=r"^[a-z]{3}$")
    name: str = Field(default="", max_length=200)


def _default_packs() -> list[CreditPack]:
    return [CreditPack(id="starter", credits=100, price=500, name="Starter"),
            CreditPack(id="creator", credits=500, price=2000, name="Creator"),
            CreditPack(id="studio", credits=2000, price=6000, name="Studio")]


class StripeSettings(BaseModel):
    # The secret API key (sk_live_... / sk_test_...); empty: billing is off (503 billing_not_configured).
    secret_key: str = Field(default="", repr=False)
    # Endpoint signing secrets (whsec_...) webhooks are verified with; several while a secret is being rolled.
    webhook_secrets: list[str] = Field(default_factory=list, repr=False)
    api_base: str = "https://api.stripe.com"
    timeout_s: float = Field(default=20.0, gt=0, le=300)


class BillingSettings(BaseModel):
    """Credit purchases through Stripe Checkout (services/billing.py)."""

    stripe: StripeSettings = Field(default_factory=StripeSettings)
    packs: list[CreditPack] = Field(default_factory=_default_packs)
    # A webhook whose signed timestamp is further than this from now is refused (Stripe's default tolerance).
    webhook_tolerance_s: int = Field(default=300, ge=1, le=86400)
    # Where Checkout sends the browser back; empty: <public_url>/credits.
    console_url: str = ""

    @property
    def configured(self) -> bool:
        return bool(self.stripe.secret_key)

    @model_validator(mode="after")
    def _unique_packs(self) -> BillingSettings:
        ids = [p.id for p in self.packs]
        if len(set(ids)) != len(ids):
            raise ValueError("billing.packs: pack ids must be unique")
        return self


class SalesforceSettings(BaseModel):
    # OAuth 2.0 client credentials flow of a connected app: POST <login_url>/services/oauth2/token.
    login_url: str = "https://login.salesforce.com"
    client_id: str = ""
    client_secret: str = Field(default="", repr=False)
    api_version: str = Field(default="v60.0", pattern=r"^v\d+\.\d$")
    # Contacts are upserted by this external id field (the account id); purchases into purchase_object by
    # purchase_external_id (the purchase id), linked to the contact through contact_lookup.
    contact_external_id: str = Field(default="Reelforge_Id__c", pattern=r"^\w{1,80}$")
    purchase_object: str = Field(default="Reelforge_Purchase__c", pattern=r"^\w{1,80}$")
    purchase_external_id: str = Field(default="Reelforge_Purchase_Id__c", pattern=r"^\w{1,80}$")
    contact_lookup: str = Field(default="Contact__c", pattern=r"^\w{1,80}$")
    timeout_s: float = Field(default=20.0, gt=0, le=300)


class CrmSettings(BaseModel):
    """CRM sync from the outbox (services/crm.py): off unless a provider is named."""

    provider: Literal["none", "salesforce"] = "none"
    salesforce: SalesforceSettings = Field(default_factory=SalesforceSettings)


class ModelSettings(BaseModel):
    # Applications read keys of their own here too (a backend choice for their task, for example), so those
    # sit next to the device they run on; each application validates its keys.
    model_config = ConfigDict(extra="allow")

    # Empty means data_dir / "models".
    dir: str = ""
    device: Literal["auto", "cpu", "cuda"] = "auto"
    max_pixels: int = 2048 * 2048
    # A worker unloads a model not used for this long (its weights' memory is given back, and the next use loads
    # it again); 0 keeps every model loaded for the life of the worker.
    idle_unload_s: float = Field(default=0.0, ge=0.0)


class OtelSettings(BaseModel):
    # OTLP/HTTP traces endpoint (e.g. http://collector:4318/v1/traces); empty turns tracing off (no-op spans).
    endpoint: str = ""
    service_name: str = ""  # empty: "reelforge-api" / "reelforge-worker"
    headers: dict[str, str] = Field(default_factory=dict)
    sample_ratio: float = Field(default=1.0, ge=0.0, le=1.0)
    timeout_s: float = 10.0


class CloudWatchSettings(BaseModel):
    """PutMetricData of the queue per job kind and resource class, and of each alarm rule's value."""

    enabled: bool = False
    # Empty: domain/cloud.py METRIC_NAMESPACE, the name the deployment's scaling policies and alarms read.
    namespace: str = ""
    region: str = "us-east-1"
    # A CloudWatch-compatible endpoint (tests: a local fake); None: AWS's own for the region.
    endpoint_url: str | None = None
    # One process publishes per interval (database schedule lock), whichever worker or API process wins it.
    interval_s: float = Field(default=60.0, ge=1.0, le=3600.0)
    # Added to every datum, e.g. {"Deployment": "prod"} (the scaling policies then name it too).
    dimensions: dict[str, str] = Field(default_factory=dict)
    timeout_s: float = Field(default=10.0, gt=0, le=120)

    @model_validator(mode="after")
    def _dimensions_fit(self) -> CloudWatchSettings:
        if len(self.dimensions) > 8:
            raise ValueError("metrics.cloudwatch.dimensions: at most 8 (each datum adds up to 2 of its own)")
        from reelforge.domain.cloud import DIM_KIND, DIM_MODEL, DIM_RESOURCE, DIM_RULE

        for name, value in self.dimensions.items():
            if not name or len(name) > 255 or not value or len(value) > 1024:
                raise ValueError("metrics.cloudwatch.dimensions: names 1-255 characters, values 1-1024")
            if name in (DIM_KIND, DIM_RESOURCE, DIM_RULE, DIM_MODEL):
                raise ValueError(f"metrics.cloudwatch.dimensions: {name} is set by the platform on each datum")
        return self


class MetricsSettings(BaseModel):
    # Worker-side figures are read from the database at scrape time. Rows younger than this are left for
    # the next scrape, so a transaction that commits a smaller id a little late is not skipped.
    db_lag_s: float = 2.0
    # Rows read per table and scrape; a large backlog (first scrape of an old database) catches up over scrapes.
    max_rows_per_scrape: int = 50_000
    # `/metrics` answers an admin's bearer token, or this one (`Authorization: Bearer <scrape_token>`) for a
    # Prometheus scraper that holds no account; empty: admins only. At least 24 characters.
    scrape_token: str = Field(default="", repr=False)
    # The queue and alarm figures published to CloudWatch (services/cloud_metrics.py), for the scaling policies.
    cloudwatch: CloudWatchSettings = Field(default_factory=lambda: CloudWatchSettings())

    @model_validator(mode="after")
    def _long_enough(self) -> MetricsSettings:
        if self.scrape_token and len(self.scrape_token) < 24:
            raise ValueError("metrics.scrape_token must be at least 24 characters (or empty: admins only)")
        return self


class AlarmRule(BaseModel):
    enabled: bool = True
    threshold: float
    window_s: float = 15 * 60
    # Rate rules stay quiet below this many samples in the window (one failed job of one is not a trend).
    min_samples: int = 5


class AlarmSettings(BaseModel):
    enabled: bool = True
    # One process evaluates the rules per tick (database schedule lock), and records a queue-depth sample.
    interval_s: float = 60.0
    # API processes offer to run the tick too (workers always do), so alarms fire while no worker is alive.
    evaluate_in_api: bool = True
    # Samples and model invocation rows older than this are pruned on the tick.
    retention_s: float = 7 * 24 * 3600
    # Defaults from the AWS designs' CloudWatch alarms.
    job_failure_rate: AlarmRule = Field(default_factory=lambda: AlarmRule(threshold=0.05))
    queue_age: AlarmRule = Field(default_factory=lambda: AlarmRule(threshold=600.0, window_s=0, min_samples=1))
    worker_heartbeat: AlarmRule = Field(default_factory=lambda: AlarmRule(threshold=120.0, window_s=0, min_samples=1))
    model_error_rate: AlarmRule = Field(default_factory=lambda: AlarmRule(threshold=0.10))


class VectorSettings(BaseModel):
    """Vector search (ports/vectors.py): NumPy exact search on the database, or pgvector HNSW."""

    # auto: pgvector when the vectors URL is a PostgreSQL server offering the extension, else numpy.
    backend: Literal["auto", "numpy", "pgvector"] = "auto"
    # pgvector's server; empty means the database URL. The NumPy index always uses the database.
    url: str = ""
    dimension: int = Field(default=256, ge=1, le=16_000)
    hnsw_m: int = Field(default=16, ge=2, le=100)
    hnsw_ef_construction: int = Field(default=64, ge=4, le=1000)
    hnsw_ef_search: int = Field(default=100, ge=1, le=1000)
    # pgvector 0.8 iterative index scans keep filtered searches returning k hits; max_scan_tuples bounds the
    # walk before the exact fallback.
    hnsw_iterative_scan: Literal["off", "relaxed_order", "strict_order"] = "relaxed_order"
    hnsw_max_scan_tuples: int = Field(default=20_000, ge=100)


class MediaSettings(BaseModel):
    """The media policy every application applies to input videos and images, from their headers, at submit or
    upload completion and again on the worker before decoding (domain/media.py). An application may only
    tighten it for itself."""

    max_width: int = Field(default=7680, ge=16)
    max_height: int = Field(default=7680, ge=16)
    max_pixels: int = Field(default=7680 * 4320, ge=256)
    max_duration_s: float = Field(default=3600.0, gt=0)
    max_fps: float = Field(default=240.0, gt=0)
    # Video decoders accepted (FFmpeg names); empty accepts any the server can decode.
    video_codecs: list[str] = Field(default_factory=lambda: [
        "h264", "hevc", "vp8", "vp9", "libvpx", "libvpx-vp9", "av1", "libdav1d", "libaom-av1", "mpeg4",
        "mpeg2video", "mpeg1video", "mjpeg", "prores", "theora", "ffv1", "dnxhd", "h263", "msmpeg4v3", "wmv3", "vc1"])
    image_max_width: int = Field(default=16384, ge=16)
    image_max_height: int = Field(default=16384, ge=16)
    image_max_pixels: int = Field(default=8192 * 8192, ge=256)
    image_formats: list[str] = Field(default_factory=lambda: ["PNG", "JPEG", "WEBP", "GIF", "BMP", "TIFF"])
    image_max_frames: int = Field(default=1000, ge=1)

    def limits(self) -> MediaLimits:
        """The policy as the domain's rules take it."""
        from reelforge.domain.media import MediaLimits

        return MediaLimits(
            max_width=self.max_width, max_height=self.max_height, max_pixels=self.max_pixels,
            max_duration_s=self.max_duration_s, max_fps=self.max_fps, video_codecs=frozenset(self.video_codecs),
            image_max_width=self.image_max_width, image_max_height=self.image_max_height,
            image_max_pixels=self.image_max_pixels, image_formats=frozenset(self.image_formats),
            image_max_frames=self.image_max_frames)


class CallSettings(BaseModel):
    """Interactive calls (`AppManifest.calls`): each worker with a registered call answers them on an HTTP server
    of its own, which the API reaches directly (runtime/calls.py, services/calls.py)."""

    # Where a worker's call server listens: the loopback address by default (API and workers on one machine);
    # 0.0.0.0 (or a private address) when API processes run on other machines. Port 0: any free port.
    host: str = "127.0.0.1"
    port: int = Field(default=0, ge=0, le=65535)
    # The host the API should dial, when it is not the bound one (a wildcard bind, NAT, a container's name);
    # empty: the bound address (a wildcard bind advertises this machine's hostname).
    public_host: str = ""
    # Largest request body a worker accepts (413 beyond), and largest answer the API reads back.
    max_body_bytes: int = Field(default=1024 * 1024, ge=1024, le=1024**3)
    max_result_bytes: int = Field(default=16 * 1024**2, ge=1024, le=1024**3)
    # A call's timeout when neither the call (`Call.timeout_s`) nor the caller gives one, and the ceiling of any.
    timeout_s: float = Field(default=30.0, gt=0, le=3600.0)
    max_timeout_s: float = Field(default=300.0, gt=0, le=3600.0)
    # How long the API may dial a worker before it tries the next one.
    connect_timeout_s: float = Field(default=1.0, gt=0, le=60.0)
    # How long the API keeps its list of live workers (one registry read per this interval at most; a worker it
    # could not reach empties it, and goes last until it heartbeats again).
    workers_cache_s: float = Field(default=1.0, ge=0.0, le=60.0)
    # Signed requests older (or further in the future) than this are refused by the worker: 401.
    max_clock_skew_s: float = Field(default=30.0, gt=0, le=3600.0)


class MailSettings(BaseModel):
    """E-mail (services/mail.py): verification and password-reset links, notices and receipts, through a queue in
    the database that the workers send from, at least once."""

    # none: mails are queued and recorded as skipped, nothing leaves the server (the default: no mail server).
    provider: Literal["none", "smtp", "sendgrid"] = "none"
    from_address: str = "reelforge <noreply@localhost>"
    reply_to: str = ""
    product_name: str = "reelforge"
    # SMTP: starttls upgrades a plain connection (port 587) and refuses a server that cannot; tls connects over
    # TLS from the start (port 465); none sends in clear (a local relay only). Authenticates when a username is set.
    smtp_host: str = "localhost"
    smtp_port: int = Field(default=587, ge=1, le=65535)
    smtp_security: Literal["starttls", "tls", "none"] = "starttls"
    smtp_username: str = ""
    smtp_password: str = Field(default="", repr=False)
    # A CA bundle to trust for the server's certificate instead of the system's (a private relay).
    smtp_ca_file: str = ""
    smtp_timeout_s: float = Field(default=15.0, gt=0, le=300)
    # SendGrid v3 HTTP API (`POST {sendgrid_url}/v3/mail/send` with the key as a bearer token).
    sendgrid_api_key: str = Field(default="", repr=False)
    sendgrid_url: str = "https://api.sendgrid.com"
    sendgrid_timeout_s: float = Field(default=15.0, gt=0, le=300)
    # Sending: attempts per mail before it is marked failed, backoff between them, mails per pass.
    max_attempts: int = Field(default=8, ge=1, le=100)
    retry_base_s: float = Field(default=30.0, gt=0, le=86400)
    retry_max_s: float = Field(default=3600.0, gt=0, le=7 * 86400)
    batch: int = Field(default=20, ge=1, le=1000)
    # Link tokens: lifetime of verification and reset links; one new link per account and purpose per interval.
    verify_ttl_s: float = Field(default=48 * 3600.0, gt=0, le=30 * 86400)
    reset_ttl_s: float = Field(default=3600.0, gt=0, le=7 * 86400)
    resend_interval_s: float = Field(default=60.0, ge=0, le=86400)
    # A forgot-password answer takes at least this long, whether or not the address has an account.
    forgot_min_response_s: float = Field(default=0.25, ge=0, le=10)
    # A verification mail on registration.
    verify_on_register: bool = True
    # "Credits low" is sent once each time a balance falls below this (0: never); checked this often.
    credits_low_threshold: int = Field(default=10, ge=0)
    credits_low_interval_s: float = Field(default=60.0, gt=0, le=86400)
    # Mail every admin when an alarm is raised.
    alarm_mails: bool = True


class OidcSettings(BaseModel):
    """Sign-in with JWTs from an external OpenID Connect issuer (Amazon Cognito or any other), verified against its
    JWKS; off while `issuer` is empty. See docs/architecture.md, "OIDC sign-in"."""

    # The `iss` every accepted token carries, exactly (Cognito: https://cognito-idp.<region>.amazonaws.com/<pool>).
    issuer: str = ""
    # Where the keys are: `jwks_url` when set, else the `jwks_uri` of the discovery document (`discovery_url`, by
    # default <issuer>/.well-known/openid-configuration).
    discovery_url: str = ""
    jwks_url: str = ""
    # Accepted audiences: a token's `aud` (ID tokens; access tokens of most issuers), or Cognito's `client_id`
    # for an access token without `aud`. At least one is needed when `issuer` is set.
    audiences: list[str] = Field(default_factory=list)
    # Accepted `token_use` claim values (Cognito's; a token without the claim passes unless require_token_use).
    token_use: list[Literal["id", "access"]] = Field(default_factory=lambda: ["id", "access"])  # type: ignore[arg-type]
    require_token_use: bool = False
    # Asymmetric algorithms only: a token's header never chooses HS256 (signed with the public key) or "none".
    algorithms: list[Literal["RS256", "RS384", "RS512", "PS256", "ES256", "ES384"]] = Field(
        default_factory=lambda: ["RS256", "ES256"])  # type: ignore[arg-type]
    leeway_s: float = Field(default=30.0, ge=0, le=300)
    # Keys are kept this long; a token naming a key id not in the set refetches it, at most once per
    # jwks_min_refresh_s (a flood of made-up key ids cannot turn into a flood of requests to the issuer).
    jwks_cache_s: float = Field(default=3600.0, gt=0, le=86400)
    jwks_min_refresh_s: float = Field(default=30.0, ge=0, le=3600)
    http_timeout_s: float = Field(default=5.0, gt=0, le=60)
    # The first sign-in of an identity: link it to the account with the same e-mail when the token says the address
    # is verified (`email_verified`), else create an account when create_accounts.
    link_verified_email: bool = True
    create_accounts: bool = True
    # The longest lifetime (exp - iat) accepted; longer-lived tokens are refused.
    max_token_lifetime_s: float = Field(default=24 * 3600.0, gt=0)

    @model_validator(mode="after")
    def _audience_needed(self) -> OidcSettings:
        if self.issuer and not self.audiences:
            raise ValueError("oidc.audiences must name at least one audience (client id) when oidc.issuer is set")
        return self


class AccountSettings(BaseModel):
    """Account export and deletion, API key scopes and the audit trail (docs/architecture.md, "Accounts")."""

    # DELETE /v1/account: re-authentication with the password, or a token issued at most this long ago.
    reauth_max_age_s: float = Field(default=300.0, gt=0, le=3600)
    # What the deletion request itself removes past its personal data (objects, records): the rest is left to
    # the sweeper, which runs every sweep_interval_s and retries until done. Promised in the docs: all within
    # deletion_deadline_s.
    delete_inline_objects: int = Field(default=200, ge=0, le=100_000)
    deletion_deadline_s: float = Field(default=24 * 3600.0, gt=0)
    # Export: records are read this many rows at a time; objects are copied in chunks of this size.
    export_page_rows: int = Field(default=500, ge=10, le=10_000)
    export_chunk_bytes: int = Field(default=1024 * 1024, ge=4096, le=64 * 1024**2)
    # Audit entries are kept this long (the sweeper prunes older ones); 0 keeps them for ever.
    audit_retention_s: float = Field(default=365 * 86400.0, ge=0)


class RaySettings(BaseModel):
    # Empty: a local Ray instance started by the worker (num_cpus/num_gpus below); "auto" or "ray://host:port" or
    # "host:port": an existing cluster.
    address: str = ""
    num_cpus: int | None = Field(default=None, ge=1)
    num_gpus: int | None = Field(default=None, ge=0)
    namespace: str = "reelforge"
    # Progress reports and stop signals travel between the worker and its Ray tasks this often.
    signal_interval_s: float = Field(default=0.2, gt=0, le=5.0)


class WorkerSettings(BaseModel):
    # Where steps run: "threads" (a pool in the worker process) or "ray" (tasks and model actors on a Ray
    # cluster; install the `ray` extra).
    executor: Literal["threads", "ray"] = "threads"
    ray: RaySettings = Field(default_factory=RaySettings)


class SpotSettings(BaseModel):
    # Poll the instance metadata service for a Spot interruption notice; on one (or on SIGTERM while enabled)
    # the worker stops claiming, checkpoints its running steps at their next safe point and hands its jobs back.
    enabled: bool = False
    metadata_url: str = "http://169.254.169.254"
    poll_s: float = Field(default=5.0, gt=0)
    timeout_s: float = Field(default=2.0, gt=0)
    token_ttl_s: int = Field(default=21600, ge=1, le=21600)


class AutoscaleClass(BaseModel):
    min_workers: int = Field(default=0, ge=0)
    max_workers: int = Field(default=4, ge=0)
    # Ready jobs one worker is expected to take on (desired = ceil((ready + running) / jobs_per_worker)).
    jobs_per_worker: float = Field(default=4.0, gt=0)
    # One more worker while the oldest ready job has waited longer than this (0: age is not looked at).
    max_age_s: float = Field(default=60.0, ge=0)
    # Down to min_workers once nothing was queued or running for this long.
    idle_s: float = Field(default=300.0, ge=0)
    # Slots (concurrency) of each worker started; the local scaler passes it to `reelforge worker -c`.
    concurrency: int = Field(default=1, ge=1, le=64)


class AutoscaleSettings(BaseModel):
    interval_s: float = Field(default=5.0, gt=0)
    # "local": worker processes on this machine; "asg": an EC2 Auto Scaling group's desired capacity per class.
    scaler: Literal["local", "asg"] = "local"
    cpu: AutoscaleClass = Field(default_factory=AutoscaleClass)
    gpu: AutoscaleClass = Field(default_factory=lambda: AutoscaleClass(jobs_per_worker=1.0))
    # Auto Scaling group names per resource class, and where boto3 reaches the service (empty: AWS's own).
    asg_groups: dict[str, str] = Field(default_factory=dict)
    asg_region: str = "us-east-1"
    asg_endpoint_url: str = ""


class LiveSettings(BaseModel):
    """Live event streams (SSE and WebSocket) and the change feed that wakes them (docs/architecture.md, Events)."""

    # auto: redis when redis_url is set, else postgres LISTEN/NOTIFY on PostgreSQL, else in-process (SQLite).
    notifier: Literal["auto", "local", "postgres", "redis"] = "auto"
    redis_url: str = ""
    redis_channel: str = "reelforge:changes"
    pg_channel: str = Field(default="reelforge_changes", pattern=r"^[a-z_][a-z0-9_]{0,62}$")
    # A stream reads again after this long without a notice (a lost notice costs at most this). Unset: 5 s where
    # notices cross processes (postgres, redis); 0.25 s in-process, where workers in other processes send none.
    fallback_poll_s: float | None = Field(default=None, gt=0, le=60)
    # WebSocket: seconds to send the first message with the token; an idle stream sends {"event": "ping"} this often.
    ws_auth_timeout_s: float = Field(default=10.0, gt=0, le=120)
    ping_s: float = Field(default=15.0, gt=0, le=600)

    def resolved_notifier(self, postgres: bool) -> str:
        if self.notifier != "auto":
            return self.notifier
        return "redis" if self.redis_url else "postgres" if postgres else "local"


class CoreSettings(BaseSettings):
    """The core's settings; each installed application adds its own section under its name (`Settings`)."""

    model_config = SettingsConfigDict(
        env_prefix="REELFORGE_", env_nested_delimiter="__", env_file=None, extra="ignore"
    )

    data_dir: Path = Path("var")
    # Base of the URLs the API hands out (signed storage URLs). Empty: derived from host and port, so a
    # server started on another port signs URLs that reach it; set it behind a proxy or a public name.
    public_url: str = ""
    host: str = "127.0.0.1"
    port: int = Field(default=8000, ge=0, le=65535)
    log_level: str = "INFO"
    log_json: bool = True
    max_body_bytes: int = 1024 * 1024
    # JSON that is stored and served back (job inputs) may nest this deep at most: 422 input_too_deep beyond.
    # Request bodies never nest deeper than 64 levels (domain.types.JSON_DEPTH_CEILING), whatever this says.
    max_json_depth: int = Field(default=32, ge=2, le=60)
    database: DatabaseSettings = Field(default_factory=DatabaseSettings)
    storage: StorageSettings = Field(default_factory=StorageSettings)
    auth: AuthSettings = Field(default_factory=AuthSettings)
    rate_limit: RateLimitSettings = Field(default_factory=RateLimitSettings)
    cors: CorsSettings = Field(default_factory=CorsSettings)
    jobs: JobSettings = Field(default_factory=JobSettings)
    credits: CreditSettings = Field(default_factory=CreditSettings)
    webhooks: WebhookSettings = Field(default_factory=WebhookSettings)
    models: ModelSettings = Field(default_factory=ModelSettings)
    otel: OtelSettings = Field(default_factory=OtelSettings)
    metrics: MetricsSettings = Field(default_factory=MetricsSettings)
    alarms: AlarmSettings = Field(default_factory=AlarmSettings)
    vectors: VectorSettings = Field(default_factory=VectorSettings)
    media: MediaSettings = Field(default_factory=MediaSettings)
    calls: CallSettings = Field(default_factory=CallSettings)
    billing: BillingSettings = Field(default_factory=BillingSettings)
    crm: CrmSettings = Field(default_factory=CrmSettings)
    mail: MailSettings = Field(default_factory=MailSettings)
    oidc: OidcSettings = Field(default_factory=OidcSettings)
    accounts: AccountSettings = Field(default_factory=AccountSettings)
    worker: WorkerSettings = Field(default_factory=WorkerSettings)
    spot: SpotSettings = Field(default_factory=SpotSettings)
    autoscale: AutoscaleSettings = Field(default_factory=AutoscaleSettings)
    live: LiveSettings = Field(default_factory=LiveSettings)
    # Periodic work inside the worker (seconds between runs).
    # Extra modules that define pipelines (each exposes PIPELINES: list[Pipeline]); plugins and tests use it.
    extra_pipelines: list[str] = Field(default_factory=list)
    sweep_interval_s: float = 60.0
    outbox_interval_s: float = 1.0

    _public_url_derived: bool = PrivateAttr(default=False)

    @model_validator(mode="after")
    def _derive_public_url(self) -> Settings:
        if not self.public_url:
            self.public_url = local_url(self.host, self.port)
            self._public_url_derived = True
        return self

    def serving(self, host: str, port: int) -> Settings:
        """These settings for a server bound to ``host:port``: a derived public_url follows the address, a
        configured one is kept."""
        public_url = local_url(host, port) if self._public_url_derived else self.public_url
        copy = self.model_copy(update={"host": host, "port": port, "public_url": public_url})
        copy._public_url_derived = self._public_url_derived
        return copy

    # Derived paths -------------------------------------------------------------------
    @property
    def database_url(self) -> str:
        if self.database.url:
            return self.database.url
        return f"sqlite:///{(self.data_dir / 'reelforge.db').resolve()}"

    @property
    def storage_root(self) -> Path:
        return Path(self.storage.root) if self.storage.root else self.data_dir / "objects"

    @property
    def models_dir(self) -> Path:
        return Path(self.models.dir) if self.models.dir else self.data_dir / "models"

    def secret(self, name: str) -> str:
        """A secret kept under data_dir, created on first use (mode 600 from the start)."""
        path = self.data_dir / f"{name}"
        if path.exists():
            return path.read_text().strip()
        self.data_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        value = secrets.token_urlsafe(48)
        tmp = path.with_suffix(".tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as fh:
            fh.write(value)
        os.chmod(tmp, 0o600)
        tmp.replace(path)
        return value

    @property
    def jwt_secret(self) -> str:
        return self.auth.jwt_secret or self.secret("secret-key")

    @property
    def signing_secret(self) -> str:
        """HMAC key for signed storage URLs and webhook signatures' default."""
        return self.auth.jwt_secret or self.secret("secret-key")


def local_url(host: str, port: int) -> str:
    """``http://host:port`` for a listening address; a wildcard address gives the loopback one of its family."""
    host = host.strip().removeprefix("[").removesuffix("]")
    if host in ("", "0.0.0.0"):
        host = "127.0.0.1"
    elif host == "::":
        host = "::1"
    return f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"


def _with_app_sections() -> type[CoreSettings]:
    """CoreSettings plus one section per installed application (`settings.<app>`, REELFORGE_<APP>__...)."""
    from pydantic import create_model

    from reelforge.applications import discover

    sections: dict[str, Any] = {
        app.name: (app.settings, Field(default_factory=app.settings)) for app in discover() if app.settings
    }
    if not sections:
        return CoreSettings
    return create_model("Settings", __base__=CoreSettings, __module__=__name__, **sections)


if TYPE_CHECKING:
    from reelforge.domain.media import MediaLimits

    Settings = CoreSettings
else:
    Settings = _with_app_sections()


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    return Settings()
