"""`reelforge.client` against the real app: a uvicorn server on a real socket and an in-process worker.

Every client method is exercised on both databases: accounts, tokens and API keys, jobs followed to their
end by server-sent events (and by polling), uploads by signed URL (single PUT and multipart, resumed),
downloads with their checksum, automatic retries on 429, problem+json errors, and the asyncio client.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from reelforge.client import (
    ApiError,
    Asset,
    AsyncClient,
    ChecksumMismatch,
    Client,
    ConnectionLost,
    Job,
    Progress,
    Registration,
    ResumeError,
    ServerUnreachable,
    UploadFailed,
    User,
    WaitTimeout,
)
from tests.conftest import wait_for
from tests.integration.live_server import PART_SIZE, bind_socket, closed_port_url, live_settings, serve

PW = "correct horse battery"
TINY = {"prompt": "a red fox in the snow", "width": 64, "height": 64, "steps": 2, "guidance_scale": 6.0,
        "seed": 7, "num_images": 1, "model": "tiny-sd"}


@pytest.fixture
def server_socket() -> Iterator[Any]:
    sock = bind_socket()
    yield sock
    sock.close()


@pytest.fixture
def settings(request: pytest.FixtureRequest, tmp_path: Path, db_url: str, server_socket: Any) -> Any:
    overrides = dict(getattr(request, "param", {}))
    if overrides.pop("s3", False):
        seaweed = request.getfixturevalue("seaweed")
        overrides["storage"] = {
            "backend": "s3", "s3_bucket": f"rf-{uuid.uuid4().hex[:12]}", "s3_endpoint_url": seaweed.endpoint_url,
            "s3_access_key": seaweed.access_key, "s3_secret_key": seaweed.secret_key, "s3_addressing_style": "path"}
    return live_settings(tmp_path, db_url, server_socket, **overrides)


@pytest.fixture
def url(container: Any, worker: Any, server_socket: Any) -> Iterator[str]:
    with serve(container, server_socket) as u:
        yield u


def account(url: str, email: str, **kw: Any) -> Client:
    c = Client(url, api_key="", **kw)
    c.auth.register(email, PW)
    c.auth.login(email, PW)
    return c


def raises(status: int, code: str | None = None) -> Any:
    class _Check:
        def __enter__(self) -> _Check:
            self.cm = pytest.raises(ApiError)
            self.info = self.cm.__enter__()
            return self

        def __exit__(self, *exc: Any) -> bool:
            handled = self.cm.__exit__(*exc)
            err = self.info.value
            assert err.status == status, (err.status, err.code, err.detail)
            if code is not None:
                assert err.code == code, (err.code, err.detail)
            assert err.detail and err.problem.get("status") == status
            return bool(handled)

        @property
        def error(self) -> ApiError:
            return self.info.value

    return _Check()


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_accounts_tokens_keys_admin_webhooks(url: str, container: Any) -> None:
    from reelforge.domain.types import Role

    with Client(url, api_key="") as anon:
        assert anon.system.health()["status"] == "ok"
        assert anon.system.ready()["status"] == "ready"
        with raises(401, "missing_credentials"):
            anon.auth.me()
        registered = anon.auth.register("Ada@example.com", PW)
        assert isinstance(registered, Registration) and registered.email == "ada@example.com"
        # Again: the same answer (registration never tells whether an address has an account).
        assert anon.auth.register("ada@example.com", "another password").to_dict() == registered.to_dict()
        with raises(422, "validation_error") as bad:
            anon.auth.register("bob@example.com", "short")
        assert [e["field"] for e in bad.error.errors] == ["password"]
        with raises(401, "invalid_credentials") as wrong:
            anon.auth.login("ada@example.com", "not the password")
        assert wrong.error.request_id

    seen: list[Any] = []
    ada = Client(url, api_key="", on_tokens=seen.append)
    pair = ada.auth.login("ada@example.com", PW)
    assert seen == [pair] and pair.expires_in > 0
    me = ada.auth.me()
    assert isinstance(me, User) and me.credits == 100
    assert me.role == "user" and me.to_dict()["email"] == me.email == "ada@example.com"

    # Refresh tokens rotate: the old one stops working.
    old = pair.refresh_token
    again = ada.auth.refresh()
    assert again.refresh_token != old and ada.refresh_token == again.refresh_token
    # A refused access token is refreshed once, transparently, and the new pair is reported.
    fresh: list[Any] = []
    with Client(url, access_token="not-a-token", refresh_token=ada.refresh_token, on_tokens=fresh.append) as c2:
        assert c2.auth.me().id == me.id
        assert c2.access_token != "not-a-token" and len(fresh) == 1
        # An access token about to expire is refreshed before the request is sent.
        with Client(url, access_token=c2.access_token, refresh_token=c2.refresh_token,
                    token_expires_at=time.time() - 1) as c3:
            assert c3.auth.me().id == me.id and c3.access_token != c2.access_token
            newest_token = c3.refresh_token
    # The rotated-away token comes back: it stops working, and so does every token of its sign-in.
    with raises(401, "invalid_refresh_token"), Client(url, refresh_token=old) as stale:
        stale.auth.me()
    with raises(401, "invalid_refresh_token"), Client(url, refresh_token=newest_token) as newest:
        newest.auth.me()
    # ...and the session they belong to ends at once: its access tokens are refused too; ada signs in again.
    with raises(401, "session_revoked"), Client(url, access_token=ada.access_token) as gone:
        gone.auth.me()
    ada.auth.login("ada@example.com", PW)

    # A password change answers a new pair, which the client takes; the old password stops signing in.
    changed = ada.auth.change_password(PW, "a brand new secret")
    assert ada.refresh_token == changed.refresh_token and ada.auth.refresh().access_token
    with raises(401, "invalid_credentials"), Client(url, api_key="") as anon:
        anon.auth.login("ada@example.com", PW)
    ada.auth.change_password("a brand new secret", PW)

    # API keys.
    key = ada.api_keys.create("ci")
    assert key.key and key.key.startswith("rf_") and key.name == "ci"
    assert key.id in [k.id for k in ada.api_keys.list()]
    with Client(url, api_key=key.key) as by_key:
        assert by_key.auth.me().id == me.id
        assert ada.api_keys.revoke(key.id).revoked_at
        with raises(401, "invalid_api_key"):
            by_key.auth.me()

    # Credits and admin.
    credits = ada.credits.get()
    assert credits.balance == 100 and credits.ledger[0].kind == "grant"
    container.auth.register("root@example.com", PW, role=Role.admin)
    root = Client(url, api_key="")
    root.auth.login("root@example.com", PW)
    assert {"ada@example.com", "root@example.com"} <= {u.email for u in root.admin.users()}
    entry = root.admin.grant_credits(me.id, 5, "bonus")
    assert entry.amount == 5 and entry.balance_after == 105 and ada.credits.get().balance == 105
    assert root.admin.update_user(me.id, disabled=True).disabled
    with raises(401), Client(url, access_token=ada.access_token) as disabled:
        disabled.auth.me()
    assert not root.admin.update_user(me.id, disabled=False).disabled
    with raises(403, "admin_only"):
        ada.admin.users()
    with raises(403, "admin_only"):
        ada.admin.grant_credits(me.id, 1000)
    with raises(404):
        root.admin.update_user("no-such-user", role="admin")
    # The admin console's routes.
    assert "depth" in root.admin.queue() and isinstance(root.admin.workers(), list)
    assert root.admin.system()["database"] and "rules" in root.admin.alarms(hours=1)
    assert root.admin.stats(hours=1)["hours"] == 1
    with raises(403, "admin_only"):
        ada.admin.queue()
    with raises(404):
        root.admin.redrive("no-such-job")

    # Pipelines and models.
    kinds = {p.kind for p in ada.pipelines.list()}
    assert {"system.noop", "image.generate"} <= kinds
    noop = ada.pipelines.get("system.noop")
    assert noop.version == 1 and noop.asl["StartAt"] == "noop"
    with raises(404):
        ada.pipelines.get("no.such.kind")
    models = ada.models.list("image.generate")
    assert any(m.name == "tiny-sd" and m.available and m.test_model for m in models)
    assert all(m.task == "image.generate" for m in models)

    # Webhooks (loopback targets are allowed in this server's settings; nothing listens there).
    hook = ada.webhooks.create(f"{closed_port_url()}/hook", ["job.succeeded"], "ci hook")
    assert hook.secret and hook.event_types == ["job.succeeded"] and hook.active
    assert [h.id for h in ada.webhooks.list()] == [hook.id]
    assert ada.webhooks.get(hook.id).secret is None  # shown once
    test = ada.webhooks.test(hook.id)
    assert test.status == "queued" and test.event_id
    deliveries = wait_for(lambda: ada.webhooks.deliveries(hook.id), timeout=10)
    assert deliveries[0].event_id == test.event_id and deliveries[0].webhook_id == hook.id
    assert len(ada.webhooks.signing_secret()) >= 16
    with raises(422):
        ada.webhooks.create("not a url")

    # Another user's objects answer 404, never 403.
    bob = account(url, "bob@example.com")
    with raises(404):
        bob.webhooks.get(hook.id)
    with raises(404):
        bob.webhooks.deliveries(hook.id)
    with raises(404):
        bob.webhooks.delete(hook.id)
    with raises(404):
        bob.api_keys.revoke(key.id)
    ada.webhooks.delete(hook.id)
    with raises(404):
        ada.webhooks.get(hook.id)
    for c in (ada, root, bob):
        c.close()


def test_jobs_followed_to_the_end(url: str, tmp_path: Path) -> None:
    ada = account(url, "ada@example.com")
    bob = account(url, "bob@example.com")

    # system.noop: submit, follow the events, read the result.
    progress: list[Progress] = []
    handle = ada.jobs.submit("system.noop", {"echo": {"a": [1, 2]}})
    assert handle.job.status in ("queued", "running", "succeeded") and handle.id == handle.job.id
    job = handle.wait(30, on_progress=progress.append)
    assert isinstance(job, Job) and job.ok and job.done and job.outputs == {"echo": {"a": [1, 2]}}
    assert progress and progress[-1].status == "succeeded" and progress[-1].job_id == job.id
    assert job.idempotency_key and job.idempotency_key.startswith("client-")  # safe automatic retries
    # The same Idempotency-Key makes one job.
    first = ada.jobs.submit("system.noop", {"echo": 2}, idempotency_key="k-1")
    assert ada.jobs.submit("system.noop", {"echo": 2}, idempotency_key="k-1").id == first.id
    with raises(409, "idempotency_key_reused"):
        ada.jobs.submit("system.noop", {"echo": 3}, idempotency_key="k-1")
    # ?wait= lets the server hold the answer until the end.
    assert ada.jobs.submit("system.noop", {"echo": 4}, wait=20).job.status == "succeeded"

    # image.generate on the tiny random-weight model: progress from the worker, then the PNG.
    updates: list[Progress] = []
    image = ada.jobs.submit("image.generate", TINY).wait(120, on_progress=updates.append)
    assert image.ok, image.error
    assert updates[-1].status == "succeeded"
    fractions = [u.fraction for u in updates]
    assert fractions == sorted(fractions) and fractions[-1] >= 0.95
    asset_id = image.outputs["images"][0]["asset_id"] if image.outputs else ""
    got: list[tuple[int, int]] = []
    png = ada.assets.download(asset_id, tmp_path / "fox.png", on_progress=lambda d, t: got.append((d, t)))
    asset = ada.assets.get(asset_id)
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and sha256(png) == asset.sha256
    assert got[-1] == (asset.size, asset.size) and asset.job_id == image.id
    assert asset_id in [a.id for a in ada.assets.list(job_id=image.id)]  # with the metadata JSON

    # Listing, paging, history and the raw event stream.
    assert [j.id for j in ada.jobs.list(kind="image.generate").data] == [image.id]
    page = ada.jobs.list(status="succeeded", limit=2)
    assert len(page.data) == 2 and page.next_cursor
    assert len(list(ada.jobs.iterate(page_size=2))) == 4
    history = ada.jobs.history(image.id)
    assert history.status == "succeeded" and history.events[0].type == "JobQueued"
    assert [e.id for e in ada.jobs.history(image.id, after=history.events[0].id).events] == \
        [e.id for e in history.events[1:]]
    events = list(ada.jobs.events(job.id))
    assert events[-1].event == "end" and events[-1].data["status"] == "succeeded"
    assert {"history", "status", "progress", "end"} <= {e.event for e in events}

    # Cancel a running job; the waiter sees the end.
    slow = ada.jobs.submit("test.slow", {"step_s": 5})
    wait_for(lambda: slow.refresh().status == "running", timeout=15)
    assert ada.jobs.cancel(slow.id).cancel_requested
    assert slow.wait(20).status == "cancelled"
    with raises(409, "job_finished"):
        slow.cancel()
    # A wait that runs out of time says so, with the last state seen.
    slow2 = ada.jobs.submit("test.slow", {"step_s": 0.4})  # four steps: 1.6 s at least
    with pytest.raises(WaitTimeout) as timeout:
        slow2.wait(0.5)
    assert timeout.value.job.id == slow2.id and not timeout.value.job.done
    # Polling instead of events reaches the same end.
    assert slow2.wait(30, use_events=False, poll_interval=0.1).ok

    # A failed job: retried as a new job by its owner, redriven in place by an admin.
    failed = ada.jobs.submit("test.invalid", {}).wait(30)
    assert failed.status == "failed" and failed.error and failed.error.code == "validation_error"
    again = ada.jobs.retry(failed.id)
    assert again.id != failed.id and again.kind == "test.invalid" and again.input == failed.input
    assert ada.jobs.handle(again.id).wait(30).status == "failed"
    with raises(409, "job_not_retryable"):
        ada.jobs.retry(job.id)  # it succeeded
    with raises(403, "admin_only"):
        ada.admin.redrive(failed.id)

    # A batch: all or none.
    batch = ada.jobs.batch([{"kind": "system.noop", "input": {"echo": i}} for i in range(3)])
    assert [h.wait(30).outputs for h in batch] == [{"echo": i} for i in range(3)]
    with raises(422):
        ada.jobs.batch([{"kind": "system.noop"}, {"kind": "system.noop", "input": {"bogus": 1}}])

    # Bad input and unknown kinds are 422 problems with the field.
    with raises(422, "validation_error") as bad:
        ada.jobs.submit("image.generate", {**TINY, "width": 63})
    assert bad.error.errors[0]["field"] == "width"
    with raises(422, "unknown_kind"):
        ada.jobs.submit("no.such.kind")
    # Another user's job answers 404 on every route.
    for call in (lambda: bob.jobs.get(job.id), lambda: bob.jobs.cancel(job.id), lambda: bob.jobs.history(job.id),
                 lambda: list(bob.jobs.events(job.id)), lambda: bob.assets.get(asset_id),
                 lambda: bob.assets.download(asset_id, tmp_path / "stolen.png"), lambda: bob.assets.delete(asset_id)):
        with raises(404):
            call()
    assert not (tmp_path / "stolen.png").exists()
    assert bob.jobs.list().data == []
    ada.close()
    bob.close()


def test_uploads_and_downloads(url: str, container: Any, tmp_path: Path) -> None:
    state = tmp_path / "state"
    ada = account(url, "ada@example.com", upload_state_dir=state)

    # One signed PUT.
    small = tmp_path / "notes.txt"
    small.write_bytes(b"hello reelforge\n" * 1000)
    sent: list[tuple[int, int]] = []
    asset = ada.assets.upload(small, lifecycle="temporary", on_progress=lambda d, t: sent.append((d, t)))
    assert isinstance(asset, Asset) and asset.size == small.stat().st_size and asset.sha256 == sha256(small)
    assert asset.content_type == "text/plain" and asset.filename == "notes.txt" and asset.lifecycle == "temporary"
    assert asset.expires_at and sent[-1] == (asset.size, asset.size)
    back = ada.assets.download(asset.id, tmp_path / "out.txt")
    assert back.read_bytes() == small.read_bytes()
    (tmp_path / "dir").mkdir()
    assert ada.assets.download(asset.id, tmp_path / "dir") == tmp_path / "dir" / "notes.txt"
    assert list(state.iterdir()) == []  # the journal goes once the upload completes

    # Multipart: three parts of at least 5 MiB but the last; interrupted after the first, then resumed.
    big = tmp_path / "big.bin"
    big.write_bytes(os.urandom(2 * PART_SIZE + 1024 * 1024))

    class Interrupted(Exception):
        pass

    def stop_after_first_part(done: int, total: int) -> None:
        if done > PART_SIZE:
            raise Interrupted  # as if the connection broke (or the user pressed Ctrl-C) during part 2

    with pytest.raises(Interrupted) as interrupted:
        ada.assets.upload(big, "application/octet-stream", on_progress=stop_after_first_part)
    upload_id = interrupted.value.__notes__[0].rsplit(" ", 1)[1]
    pending = ada.uploads.get(upload_id)
    assert pending.status == "pending" and pending.multipart and pending.part_size == PART_SIZE
    resumed: list[int] = []
    asset2 = ada.assets.upload(big, resume=upload_id, on_progress=lambda d, t: resumed.append(d))
    # Part 1 counts as sent at once and is not sent again: 5 + 1 chunks of 1 MiB follow.
    assert resumed == [PART_SIZE + n * 1024 * 1024 for n in range(7)]
    assert asset2.size == big.stat().st_size and asset2.sha256 == sha256(big)
    assert ada.uploads.get(upload_id).status == "completed"
    assert ada.assets.upload(big, resume=upload_id).id == asset2.id  # nothing left to send
    with pytest.raises(ResumeError):
        ada.assets.upload(small, resume=upload_id)  # another file
    with raises(404):
        ada.assets.upload(small, resume="no-such-upload")
    out = ada.assets.download(asset2.id, tmp_path / "big.copy")
    assert sha256(out) == asset2.sha256

    # A multipart upload with the whole file at once (forced), no journal.
    with Client(url, access_token=ada.access_token) as plain:
        asset3 = plain.assets.upload(small, multipart=True, filename="forced.txt")
        assert asset3.sha256 == asset.sha256 and asset3.filename == "forced.txt"
        open_upload = plain.uploads.create("text/plain", small.stat().st_size, multipart=True)
        with pytest.raises(ResumeError):
            plain.assets.upload(small, resume=open_upload.id)  # no journal in this client
        plain.uploads.abort(open_upload.id)

    # Bytes that do not match the asset's sha256 are refused, and nothing is left behind.
    with container.store.tx() as tx:
        from sqlalchemy import text

        key = tx.assets.asset(asset.id).key
        tx.s.execute(text("UPDATE assets SET sha256 = :s WHERE id = :i"), {"s": "0" * 64, "i": asset.id})
    with pytest.raises(ChecksumMismatch) as mismatch:
        ada.assets.download(asset.id, tmp_path / "corrupt.txt")
    assert mismatch.value.expected == "0" * 64 and mismatch.value.received == sha256(small)
    assert not (tmp_path / "corrupt.txt").exists()
    # Bytes altered at rest: the server notices while it streams and cuts the body short.
    container.objects.path_for(key).write_bytes(b"x" * asset.size)
    with pytest.raises(ConnectionLost):
        ada.assets.download(asset.id, tmp_path / "altered.txt")
    assert not (tmp_path / "altered.txt").exists()
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".part")]

    # Upload bookkeeping routes.
    up = ada.uploads.create("image/png", 10, filename="a.png")
    assert up.put is not None and up.parts is None and up.status == "pending"
    assert ada.uploads.abort(up.id).status == "aborted"
    with raises(409, "upload_not_pending"):
        ada.uploads.complete(up.id)
    with raises(422):
        ada.uploads.create("not a type", 10)
    bob = account(url, "bob@example.com")
    with raises(404):
        bob.uploads.get(upload_id)
    with raises(404):
        bob.uploads.abort(up.id)
    assert {a.id for a in ada.assets.list()} == {asset.id, asset2.id, asset3.id}
    ada.assets.delete(asset3.id)
    with raises(404):
        ada.assets.get(asset3.id)
    # A failing part upload names the upload, for --resume.
    up2 = ada.uploads.create("application/octet-stream", 3 * PART_SIZE, multipart=True)
    assert up2.parts and len(up2.parts) == 3
    ada.uploads.abort(up2.id)
    with raises(409, "upload_not_pending"):
        ada.uploads.complete(up2.id, parts=[(1, "x")])
    ada.close()
    bob.close()


@pytest.mark.s3
@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
@pytest.mark.parametrize("settings", [{"s3": True}], indirect=True)
def test_files_through_s3(url: str, tmp_path: Path) -> None:
    """Presigned URLs straight to a real S3 server (SeaweedFS): no Authorization header may go with them."""
    ada = account(url, "ada@example.com")
    small = tmp_path / "small.json"
    small.write_text('{"hello": "s3"}')
    one = ada.assets.upload(small)
    assert one.content_type == "application/json" and one.sha256 == sha256(small)
    big = tmp_path / "big.bin"
    big.write_bytes(os.urandom(2 * PART_SIZE + 4096))
    sent: list[int] = []
    many = ada.assets.upload(big, on_progress=lambda d, t: sent.append(d))
    assert many.sha256 == sha256(big) and sent[-1] == big.stat().st_size
    assert ada.assets.get(many.id).download is not None
    assert sha256(ada.assets.download(many.id, tmp_path / "big.copy")) == many.sha256
    assert ada.assets.download(one.id, tmp_path / "small.copy").read_text() == small.read_text()
    ada.close()


@pytest.mark.parametrize("settings", [{"rate_limit": {"writes_per_window_ip": 4, "window_s": 2}}], indirect=True)
def test_retries_after_429(url: str) -> None:
    ada = account(url, "ada@example.com")  # 2 writes of the 4
    t0 = time.monotonic()
    keys = [ada.api_keys.create(f"k{i}") for i in range(6)]  # the limiter answers 429 on the way; retried
    assert len({k.id for k in keys}) == 6
    assert time.monotonic() - t0 >= 1.0
    with Client(url, access_token=ada.access_token, max_retries=0) as impatient, raises(429, "rate_limited") as r:
        for i in range(10):
            impatient.api_keys.create(f"burst{i}")
    assert r.error.retry_after is not None and 1 <= r.error.retry_after <= 2
    # A Retry-After beyond max_retry_wait is raised at once rather than slept through.
    with Client(url, access_token=ada.access_token, max_retry_wait=0.5) as brief, raises(429):
        for i in range(10):
            brief.api_keys.create(f"brief{i}")
    # Reads are not limited.
    assert len(ada.api_keys.list()) >= 6
    ada.close()


def test_async_client(url: str, tmp_path: Path) -> None:
    data = tmp_path / "clip.bin"
    data.write_bytes(os.urandom(300_000))

    async def main() -> None:
        async with AsyncClient(url, api_key="") as c:
            await c.auth.register("ada@example.com", PW)
            pair = await c.auth.login("ada@example.com", PW)
            assert pair.access_token and (await c.auth.me()).email == "ada@example.com"
            seen: list[Progress] = []
            handle = await c.jobs.submit("system.noop", {"echo": "async"})
            job = await handle.wait(30, on_progress=seen.append)
            assert job.ok and job.outputs == {"echo": "async"} and seen[-1].status == "succeeded"
            events = [e async for e in c.jobs.events(job.id)]
            assert events[-1].event == "end"
            assert [j.id async for j in c.jobs.iterate()] == [job.id]
            assert (await c.jobs.history(job.id)).status == "succeeded"
            polled = await (await c.jobs.submit("system.noop", {})).wait(30, use_events=False, poll_interval=0.1)
            assert polled.ok
            asset = await c.assets.upload(data, on_progress=lambda d, t: None)
            assert asset.sha256 == sha256(data)
            path = await c.assets.download(asset.id, tmp_path / "clip.copy")
            assert path.read_bytes() == data.read_bytes()
            assert [m.name for m in await c.models.list("image.generate")]
            assert (await c.credits.get()).balance == 100
            with raises(404):
                await c.jobs.get("nope")
            with raises(422, "unknown_kind"):
                await c.jobs.submit("no.such.kind")
            # Refresh after a refused access token, in asyncio too.
            async with AsyncClient(url, access_token="bad", refresh_token=c.refresh_token) as c2:
                assert (await c2.auth.me()).email == "ada@example.com" and c2.access_token != "bad"
        async with AsyncClient(closed_port_url(), api_key="") as down:
            with pytest.raises(ServerUnreachable):
                await down.system.health()

    asyncio.run(main())


def test_unreachable_server_and_bad_answers() -> None:
    import httpx

    with Client(closed_port_url(), api_key="x") as c:
        with pytest.raises(ServerUnreachable) as exc:
            c.auth.me()
        assert exc.value.status == 0 and exc.value.code == "unreachable"

    # A proxy's plain-text 502 on a read is retried, then raised with a made-up code.
    calls: list[str] = []

    def handler(request: httpx.Request) -> httpx.Response:
        calls.append(request.headers.get("authorization", ""))
        if request.url.path == "/v1/jobs/j1":
            return httpx.Response(502, text="bad gateway")
        return httpx.Response(503, headers={"Retry-After": "0"}, json={"code": "unavailable", "detail": "busy",
                                                                        "status": 503})

    with Client("http://rf.test", api_key="rf_key", max_retries=2, max_retry_wait=0.05,
                transport=httpx.MockTransport(handler)) as c:
        with pytest.raises(ApiError) as bad:
            c.jobs.get("j1")
        assert bad.value.status == 502 and bad.value.code == "http_502" and bad.value.detail == "bad gateway"
        assert len(calls) == 3 and calls[0] == "Bearer rf_key"
        calls.clear()
        with pytest.raises(ApiError) as busy:
            c.jobs.cancel("j/../x")
        assert busy.value.code == "unavailable" and busy.value.retry_after == 0 and len(calls) == 3


def test_upload_failure_names_the_upload(tmp_path: Path) -> None:
    import httpx

    def handler(request: httpx.Request) -> httpx.Response:
        if request.url.path == "/v1/uploads":
            return httpx.Response(201, json={
                "id": "u1", "status": "pending", "filename": "a.txt", "content_type": "text/plain", "size": 3,
                "lifecycle": "hot", "multipart": False, "part_size": None, "expires_at": None, "asset_id": None,
                "put": {"url": "http://store.test/obj?sig=1", "method": "PUT", "headers": {"Content-Type": "text/plain"},
                        "expires_at": None}})
        assert "authorization" not in request.headers  # signed URLs carry their own credentials
        assert request.headers["content-length"] == "3"
        return httpx.Response(403, json={"code": "invalid_signature", "detail": "Invalid signature", "status": 403})

    f = tmp_path / "a.txt"
    f.write_bytes(b"abc")
    with Client("http://rf.test", api_key="rf_key", transport=httpx.MockTransport(handler)) as c, \
            pytest.raises(UploadFailed) as failed:
        c.assets.upload(f)
    assert failed.value.upload_id == "u1" and failed.value.status == 403 and failed.value.code == "invalid_signature"
