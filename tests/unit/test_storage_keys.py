"""Object key rules shared by every storage adapter."""

from __future__ import annotations

import re

import pytest

from reelforge.domain.keys import (
    MAX_KEY_LENGTH,
    MAX_SEGMENT_LENGTH,
    new_key,
    validate_key,
    validate_prefix,
)
from reelforge.errors import InvalidKey


@pytest.mark.parametrize(
    "key",
    [
        "a",
        "A9",
        "images/2026/11/0f3c.png",
        "a.b_c-d/e",
        "/".join(["x" * MAX_SEGMENT_LENGTH, "y" * MAX_SEGMENT_LENGTH, "z" * 110]),
        "x" * MAX_SEGMENT_LENGTH,
        "a/b..c",
        "a/b.",
        "0/1/2",
    ],
)
def test_valid_keys(key: str) -> None:
    assert validate_key(key) == key


@pytest.mark.parametrize(
    "key",
    [
        "",
        "a/" * 256 + "a",
        "x" * (MAX_SEGMENT_LENGTH + 1),
        "a/" + "x" * (MAX_SEGMENT_LENGTH + 1),
        "../x",
        "..",
        ".",
        "/abs",
        "a//b",
        "a/../b",
        "a/./b",
        "a/..",
        ".hidden",
        "a/.hidden",
        "a/",
        "-leading-dash",
        "_leading",
        "a b",
        "a\\b",
        "a\x00b",
        "a\nb",
        "é",
        "a/é",
        "a?b",
        "a#b",
        "a%2e%2e",
        "C:/x",
    ],
)
def test_invalid_keys(key: str) -> None:
    with pytest.raises(InvalidKey):
        validate_key(key)


def test_length_limit() -> None:
    longest = "/".join(["x" * MAX_SEGMENT_LENGTH, "y" * MAX_SEGMENT_LENGTH, "z" * 110])
    assert len(longest) == MAX_KEY_LENGTH
    assert validate_key(longest) == longest
    with pytest.raises(InvalidKey):
        validate_key(longest + "z")


@pytest.mark.parametrize("key", [None, 1, b"abc", ["a"]])
def test_non_string_keys(key: object) -> None:
    with pytest.raises(InvalidKey):
        validate_key(key)


def test_invalid_key_error_shape() -> None:
    with pytest.raises(InvalidKey) as exc_info:
        validate_key("../etc/passwd")
    assert exc_info.value.status == 400
    assert exc_info.value.code == "invalid_key"


@pytest.mark.parametrize("prefix", ["", "a", "a/", "a/b/", "videos/2026", "a/b."])
def test_valid_prefixes(prefix: str) -> None:
    assert validate_prefix(prefix) == prefix


@pytest.mark.parametrize("prefix", ["/", "//", "../", "a//", ".meta/", "a/../", "/a", "a b", None])
def test_invalid_prefixes(prefix: object) -> None:
    with pytest.raises(InvalidKey):
        validate_prefix(prefix)


def test_new_key_format() -> None:
    key = new_key("uploads/videos", ".mp4")
    assert re.fullmatch(r"uploads/videos/\d{4}/\d{2}/[0-9a-f]{32}\.mp4", key), key
    assert validate_key(key) == key


def test_new_key_without_extension_and_trailing_slash() -> None:
    key = new_key("images/")
    assert re.fullmatch(r"images/\d{4}/\d{2}/[0-9a-f]{32}", key), key


def test_new_keys_are_unique() -> None:
    assert len({new_key("p") for _ in range(1000)}) == 1000


@pytest.mark.parametrize("prefix", ["", "/", "../x", "/abs", ".meta", "a//b"])
def test_new_key_bad_prefix(prefix: str) -> None:
    with pytest.raises(InvalidKey):
        new_key(prefix)


@pytest.mark.parametrize("ext", ["png", ".", "./x", "..png", ".p/g", ".tar.gz", ".x" * 20, ". png"])
def test_new_key_bad_extension(ext: str) -> None:
    with pytest.raises(InvalidKey):
        new_key("p", ext)
