"""Connecting a YouTube channel through the real API and a local fake of Google's OAuth server: the
authorization-code flow with PKCE end to end, the refresh token encrypted at rest, single-use expiring states,
declined consent, disconnect with revocation, and a server without the settings. SQLite and PostgreSQL."""

from __future__ import annotations

from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
import sqlalchemy as sa

from tests.apps.film.fake_youtube import CLIENT_ID, FakeYoutube
from tests.apps.film.helpers import assert_problem
from tests.apps.film.youtube_helpers import connect, fake, follow_consent  # noqa: F401
from tests.conftest import UserHandle, make_settings


@pytest.fixture
def settings(tmp_path: Path, db_url: str, fake: FakeYoutube) -> Any:  # noqa: F811
    return make_settings(tmp_path, db_url, film={"youtube": fake.settings()})


def rows(container: Any, sql: str) -> list[Any]:
    with container.db.engine.connect() as conn:
        return list(conn.execute(sa.text(sql)).all())


def test_connect_end_to_end_stores_the_refresh_token_encrypted(client: Any, container: Any, alice: UserHandle,
                                                                 fake: FakeYoutube) -> None:  # noqa: F811
    before = alice.get("/v1/film/youtube").json()
    assert before == {"configured": True, "connected": False, "reason": "youtube_not_connected"}

    r = alice.post("/v1/film/youtube/connect")
    assert r.status_code == 200, r.text
    body = r.json()
    q = {k: v[0] for k, v in parse_qs(urlsplit(body["authorize_url"]).query).items()}
    assert q["client_id"] == CLIENT_ID and q["response_type"] == "code" and q["state"] == body["state"]
    assert q["redirect_uri"] == body["redirect_uri"] == "http://testserver/v1/film/youtube/callback"
    assert q["access_type"] == "offline" and q["code_challenge_method"] == "S256" and len(q["code_challenge"]) == 43
    assert "youtube.upload" in q["scope"]
    # the state is kept only as its hash
    assert body["state"] not in str(rows(container, "SELECT * FROM film_youtube_states"))

    path, query = follow_consent(fake, body["authorize_url"])
    cb = client.get(path, params=query)
    assert cb.status_code == 200, cb.text
    status = cb.json()
    assert status["connected"] is True and status["configured"] is True
    assert status["channel"] == {"id": fake.channel["id"], "title": fake.channel["title"]}
    assert alice.get("/v1/film/youtube").json()["connected"] is True
    assert not rows(container, "SELECT * FROM film_youtube_states")  # used up

    # Encrypted at rest: neither the refresh token nor the access token appears in the row, the sealed values do.
    (row,) = rows(container, "SELECT refresh_token, access_token, user_id, status FROM film_youtube_connections")
    assert row.user_id == alice.id and row.status == "connected"
    assert row.refresh_token.startswith("rfenc1:") and row.access_token.startswith("rfenc1:")
    dump = str(rows(container, "SELECT * FROM film_youtube_connections"))
    assert fake.issued and not any(token in dump for token in fake.issued)
    assert container.secret_box.open(row.refresh_token).endswith(fake.live_refresh_tokens()[0])

    # Disconnect: the grant is revoked at the fake and the row is gone.
    d = alice.delete("/v1/film/youtube")
    assert d.status_code == 200, d.text
    assert d.json()["revoked"] is True and d.json()["connected"] is False and d.json()["was_connected"] is True
    assert fake.live_refresh_tokens() == []
    assert rows(container, "SELECT * FROM film_youtube_connections") == []
    assert alice.delete("/v1/film/youtube").json()["was_connected"] is False


def test_a_sealed_token_moved_to_another_account_does_not_open(client: Any, container: Any, alice: UserHandle,
                                                               bob: UserHandle, fake: FakeYoutube  # noqa: F811
                                                               ) -> None:
    connect(client, alice, fake)
    connect(client, bob, fake)
    with container.db.engine.begin() as conn:
        sealed = conn.execute(sa.text("SELECT refresh_token FROM film_youtube_connections WHERE user_id = :u"),
                              {"u": alice.id}).scalar_one()
        conn.execute(sa.text("UPDATE film_youtube_connections SET refresh_token = :t, access_token = NULL "
                             "WHERE user_id = :u"), {"t": sealed, "u": bob.id})
    from reelforge import errors

    with pytest.raises(errors.SecretUnreadable):
        container.app("film").youtube.token_source(bob.id)(False)


def test_states_are_single_use_expire_and_cannot_be_forged(client: Any, container: Any, alice: UserHandle,
                                                           fake: FakeYoutube) -> None:  # noqa: F811
    start = alice.post("/v1/film/youtube/connect").json()
    path, query = follow_consent(fake, start["authorize_url"])
    assert client.get(path, params=query).status_code == 200
    # used twice
    body = assert_problem(client.get(path, params=query), 400, "invalid_oauth_state")
    assert "already used" in body["detail"]
    # forged
    assert_problem(client.get(path, params={**query, "state": "forged-" + query["state"]}), 400,
                   "invalid_oauth_state")
    assert_problem(client.get(path, params={"code": query["code"]}), 422, "validation_error")  # no state at all
    # expired
    start = alice.post("/v1/film/youtube/connect").json()
    path, query = follow_consent(fake, start["authorize_url"])
    with container.db.engine.begin() as conn:
        conn.execute(sa.text("UPDATE film_youtube_states SET expires_at = 1"))
    body = assert_problem(client.get(path, params=query), 400, "invalid_oauth_state")
    assert "expired" in body["detail"]
    # a code the token endpoint refuses (a forged one) with a valid state
    start = alice.post("/v1/film/youtube/connect").json()
    assert_problem(client.get(path, params={"state": start["state"], "code": "4/forged"}), 403,
                   "youtube_auth_failed")
    # a browser is sent on to the console either way
    start = alice.post("/v1/film/youtube/connect").json()
    path, query = follow_consent(fake, start["authorize_url"])
    r = client.get(path, params=query, headers={"Accept": "text/html"}, follow_redirects=False)
    assert r.status_code == 303 and r.headers["location"] == "http://testserver/film?youtube=connected"
    r = client.get(path, params=query, headers={"Accept": "text/html"}, follow_redirects=False)
    assert r.status_code == 303
    assert r.headers["location"] == "http://testserver/film?youtube_error=invalid_oauth_state"


def test_only_the_newest_states_of_an_account_are_kept(client: Any, container: Any, alice: UserHandle,
                                                       fake: FakeYoutube) -> None:  # noqa: F811
    first = alice.post("/v1/film/youtube/connect").json()
    for _ in range(10):
        alice.post("/v1/film/youtube/connect")
    assert len(rows(container, "SELECT id FROM film_youtube_states")) == 10
    path, query = follow_consent(fake, first["authorize_url"])
    assert_problem(client.get(path, params=query), 400, "invalid_oauth_state")


def test_declined_consent(client: Any, alice: UserHandle, fake: FakeYoutube) -> None:  # noqa: F811
    fake.deny_consent = True
    start = alice.post("/v1/film/youtube/connect").json()
    path, query = follow_consent(fake, start["authorize_url"])
    assert query["error"] == "access_denied" and "code" not in query
    assert_problem(client.get(path, params=query), 403, "youtube_access_denied")
    assert alice.get("/v1/film/youtube").json()["connected"] is False


def test_connect_needs_a_signed_in_caller(client: Any) -> None:
    assert_problem(client.post("/v1/film/youtube/connect"), 401)
    assert_problem(client.get("/v1/film/youtube"), 401)
