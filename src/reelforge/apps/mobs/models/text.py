"""Hashtags, mentions and top terms from caption, on-screen text and transcript."""

from __future__ import annotations

import re
from collections import Counter

_HASHTAG = re.compile(r"(?<![\w#])#(\w{2,64})", re.UNICODE)
_MENTION = re.compile(r"(?<![\w@])@(\w[\w.]{0,62}\w|\w)", re.UNICODE)
# Spoken hashtags: "hashtag golden cat" is heard, "#goldencat" is meant; up to three words are joined.
_SPOKEN = re.compile(r"\bhash\s?tag\s+([a-z0-9]+(?:\s+[a-z0-9]+){0,2})", re.IGNORECASE)
_WORD = re.compile(r"[^\W\d_][\w']*", re.UNICODE)

_STOPWORD_TEXT = """
a about above after again against all am an and any are as at be because been before being below between both
but by can could did do does doing down during each few for from further had has have having he her here hers
herself him himself his how i if in into is it its itself just let me more most my myself no nor not now of off
on once only or other our ours ourselves out over own same she should so some such than that the their theirs
them themselves then there these they this those through to too under until up very was we were what when where
which while who whom why will with would you your yours yourself yourselves also get got go going gonna like
one really thing things us way well yeah oh ok okay im dont thats its hashtag hash tag video
"""
STOPWORDS = frozenset(_STOPWORD_TEXT.split())


def _unique(items: list[str]) -> list[str]:
    seen: set[str] = set()
    out: list[str] = []
    for item in items:
        if item and item not in seen:
            seen.add(item)
            out.append(item)
    return out


def hashtags(*texts: str, spoken: str = "") -> list[str]:
    """Lower-case hashtags without '#', in order of first appearance; `spoken` is searched for
    "hashtag <words>" as well."""
    found = [m.group(1).casefold() for t in texts for m in _HASHTAG.finditer(t or "")]
    found += [m.group(1).casefold() for m in _HASHTAG.finditer(spoken or "")]
    found += ["".join(m.group(1).casefold().split()) for m in _SPOKEN.finditer(spoken or "")]
    return _unique(found)


def mentions(*texts: str) -> list[str]:
    """Lower-case mentions without '@', in order of first appearance."""
    return _unique([m.group(1).casefold().rstrip(".") for t in texts for m in _MENTION.finditer(t or "")])


def terms(*texts: str, top: int = 10) -> list[str]:
    """The `top` most frequent content words (no stopwords, no hashtag/mention markers, 3+ letters);
    ties keep the order of first appearance."""
    words: list[str] = []
    for t in texts:
        cleaned = _MENTION.sub(" ", _HASHTAG.sub(lambda m: " " + m.group(1) + " ", t or ""))
        words += [w.casefold().strip("'") for w in _WORD.findall(cleaned)]
    counts = Counter(w for w in words if len(w) >= 3 and w not in STOPWORDS)
    order = {w: i for i, w in reversed(list(enumerate(words)))}
    return [w for w, _ in sorted(counts.items(), key=lambda kv: (-kv[1], order[kv[0]]))[:top]]
