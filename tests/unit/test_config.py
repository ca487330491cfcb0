"""Settings: the public URL (base of signed URLs) follows the address the server listens on unless it is set."""

from __future__ import annotations

import pytest

from reelforge.config import Settings, local_url


@pytest.fixture(autouse=True)
def _no_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("REELFORGE_PUBLIC_URL", "REELFORGE_HOST", "REELFORGE_PORT"):
        monkeypatch.delenv(name, raising=False)


@pytest.mark.parametrize(("host", "port", "url"), [
    ("127.0.0.1", 8000, "http://127.0.0.1:8000"),
    ("127.0.0.1", 9123, "http://127.0.0.1:9123"),
    ("0.0.0.0", 8080, "http://127.0.0.1:8080"),
    ("::", 8080, "http://[::1]:8080"),
    ("::1", 81, "http://[::1]:81"),
    ("[::1]", 81, "http://[::1]:81"),
    ("fd00::5", 81, "http://[fd00::5]:81"),
    ("api.internal", 8000, "http://api.internal:8000"),
])
def test_public_url_is_derived_from_host_and_port(host: str, port: int, url: str) -> None:
    assert local_url(host, port) == url
    assert Settings(host=host, port=port).public_url == url


def test_default_public_url_is_the_default_address() -> None:
    assert Settings().public_url == "http://127.0.0.1:8000"


def test_port_from_the_environment_moves_the_public_url(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("REELFORGE_PORT", "8765")
    assert Settings().public_url == "http://127.0.0.1:8765"
    monkeypatch.setenv("REELFORGE_PUBLIC_URL", "")  # empty is unset
    assert Settings().public_url == "http://127.0.0.1:8765"


def test_a_set_public_url_is_kept(monkeypatch: pytest.MonkeyPatch) -> None:
    s = Settings(public_url="https://media.example.com", port=9000)
    assert s.public_url == "https://media.example.com"
    assert s.serving("0.0.0.0", 9001).public_url == "https://media.example.com"
    monkeypatch.setenv("REELFORGE_PUBLIC_URL", "https://proxy.example.com")
    monkeypatch.setenv("REELFORGE_PORT", "9002")
    assert Settings().public_url == "https://proxy.example.com"


def test_serving_follows_the_bound_address() -> None:
    s = Settings(port=8000)
    bound = s.serving("0.0.0.0", 43210)
    assert (bound.host, bound.port, bound.public_url) == ("0.0.0.0", 43210, "http://127.0.0.1:43210")
    assert s.public_url == "http://127.0.0.1:8000"  # the original is untouched
    assert bound.serving("::", 43211).public_url == "http://[::1]:43211"
