"""`film.youtube` settings and the mapping of YouTube's error answers to the documented codes (no server)."""

from __future__ import annotations

import httpx
import pytest
from pydantic import ValidationError

from reelforge.apps.film.settings import FilmSettings
from reelforge.apps.film.youtube import api_error


def test_settings_defaults_and_chunk_size() -> None:
    cfg = FilmSettings().youtube
    assert not cfg.configured and cfg.chunk_bytes == 8 * 1024 * 1024
    assert cfg.upload_base == "https://www.googleapis.com/upload" and cfg.token_uri.startswith("https://oauth2.")
    assert FilmSettings(youtube={"client_id": "x", "chunk_bytes": 512 * 1024}).youtube.configured
    with pytest.raises(ValidationError, match="multiple of 256 KiB"):
        FilmSettings(youtube={"chunk_bytes": 300_000})
    with pytest.raises(ValidationError):
        FilmSettings(youtube={"chunk_bytes": 128 * 1024})


def _google(status: int, reason: str) -> httpx.Response:
    return httpx.Response(status, json={"error": {"code": status, "message": "no",
                                                  "errors": [{"reason": reason, "domain": "youtube"}]}})


@pytest.mark.parametrize(("status", "reason", "code"), [
    (403, "quotaExceeded", "youtube_quota_exceeded"),
    (403, "rateLimitExceeded", "youtube_quota_exceeded"),
    (403, "uploadLimitExceeded", "youtube_quota_exceeded"),
    (429, "whatever", "youtube_quota_exceeded"),
    (401, "authError", "youtube_auth_failed"),
    (403, "forbidden", "youtube_forbidden"),
    (400, "invalidTitle", "youtube_rejected"),
    (404, "videoNotFound", "youtube_rejected"),
    (500, "backendError", "youtube_unavailable"),
    (503, "backendError", "youtube_unavailable"),
])
def test_error_answers_map_to_codes(status: int, reason: str, code: str) -> None:
    err = api_error(_google(status, reason), "uploading")
    assert err.code == code and str(status) in err.message
    assert err.retryable is (code == "youtube_unavailable")


def test_an_answer_that_is_not_json_still_maps() -> None:
    assert api_error(httpx.Response(502, text="<html>Bad Gateway</html>"), "x").code == "youtube_unavailable"
    assert api_error(httpx.Response(403, text="nope"), "x").code == "youtube_forbidden"
