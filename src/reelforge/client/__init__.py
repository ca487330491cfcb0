"""Python client for the reelforge HTTP API: `Client` (blocking) and `AsyncClient` (asyncio).

It depends on the standard library and httpx only, so it can be copied into any project::

    from reelforge.client import Client

    with Client("http://127.0.0.1:8000") as rf:
        rf.auth.login("ada@example.com", "a long password")   # or Client(url, api_key="rf_...")
        job = rf.jobs.submit("system.noop", {"echo": 1}).wait(60, on_progress=print)
        asset = rf.assets.upload("clip.mp4")                  # single PUT or multipart, sha256 checked
        rf.assets.download(asset.id, "copy.mp4")              # streamed, sha256 verified

The API's resources are namespaces: ``rf.auth``, ``rf.api_keys``, ``rf.jobs``, ``rf.pipelines``,
``rf.models``, ``rf.uploads``, ``rf.assets``, ``rf.credits``, ``rf.webhooks``, ``rf.admin``, ``rf.system``;
installed applications add theirs (entry-point group ``reelforge.client``, made on first use). On
`AsyncClient` the same methods are coroutines (and streams async iterators).

Behaviour every method shares:

- The server is ``base_url``, else ``$REELFORGE_URL``, else http://127.0.0.1:8000.
- Authentication by API key (``api_key=`` or ``$REELFORGE_API_KEY``) or by access token; with a refresh
  token held, an expired access token is refreshed once, transparently (``on_tokens`` sees the new pair).
- 429 and 503 answers are retried after ``Retry-After`` (bounded by ``max_retries`` and ``max_retry_wait``);
  job submits carry an ``Idempotency-Key`` so that a retried submit never makes two jobs.
- Every error answer raises `ApiError` with the problem+json body's ``status``, ``code`` and ``detail``;
  a server that cannot be reached raises `ServerUnreachable`, an exchange that breaks off `ConnectionLost`
  (both `ApiError` with status 0).
- Signed storage URLs are sent without the ``Authorization`` header (they carry their own signature).
"""

from reelforge.client.aio import AsyncClient, AsyncJobHandle
from reelforge.client.errors import (
    ApiError,
    ChecksumMismatch,
    ConnectionLost,
    ResumeError,
    ServerUnreachable,
    UploadFailed,
    WaitTimeout,
)
from reelforge.client.namespaces import JobHandle
from reelforge.client.records import (
    ApiKey,
    Asset,
    CreditEntry,
    Credits,
    Delivery,
    Job,
    JobError,
    JobEvent,
    JobHistory,
    JobPage,
    JobProgress,
    Model,
    Pipeline,
    Progress,
    Registration,
    SignedRequest,
    StreamEvent,
    TokenPair,
    Upload,
    UploadPart,
    User,
    Webhook,
    WebhookTest,
)
from reelforge.client.sync import Client

__all__ = [
    "ApiError", "ApiKey", "Asset", "AsyncClient", "AsyncJobHandle", "ChecksumMismatch", "Client", "ConnectionLost",
    "CreditEntry",
    "Credits", "Delivery", "Job", "JobError", "JobEvent", "JobHandle", "JobHistory", "JobPage", "JobProgress",
    "Model", "Pipeline", "Progress", "Registration", "ResumeError", "ServerUnreachable", "SignedRequest", "StreamEvent",
    "TokenPair", "Upload", "UploadFailed", "UploadPart", "User", "WaitTimeout", "Webhook", "WebhookTest",
]
