"""Every error code the source can answer is documented in docs/errors.md."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_every_code_is_documented() -> None:
    documented = set(re.findall(r"`([A-Za-z_.]+)`", (ROOT / "docs" / "errors.md").read_text()))
    used: set[str] = set()
    for path in (ROOT / "src" / "reelforge").rglob("*.py"):
        text = path.read_text()
        used.update(re.findall(r'\bcode="([A-Za-z_.]+)"', text))
        used.update(re.findall(r'\bcode, title(?:, retryable)? = (?:\d+, )?"([A-Za-z_.]+)"', text))
    used.update(re.findall(r'"([a-z_]+)"', re.search(r"_HTTP_CODES = \{[^}]*\}", (
        ROOT / "src" / "reelforge" / "api" / "problems.py").read_text(), re.S).group(0)))  # type: ignore[union-attr]
    assert used, "no codes found: the pattern is out of date"
    assert {"login_throttled", "password_too_common", "input_too_deep", "invalid_refresh_token"} <= used
    assert sorted(used - documented) == []
