"""Subtitles from per-word timings: cues, SRT and WebVTT, and a translation port.

Cue rules (:class:`CueRules`): a cue holds at most ``max_lines`` lines of at most ``line_chars`` characters
(42 by default, the usual broadcast width), lasts at most ``max_duration_s``, ends at the end of a sentence, and
is cut where the speaker pauses longer than ``max_gap_s``. Each cue is shown from its first word's start to its
last word's end plus ``linger_s``, stretched to ``min_duration_s`` when there is room before the next cue.
Lines are wrapped at spaces, balanced (a two-line cue splits where its longer line is shortest).

Translation goes through the :class:`Translator` port. No translation engine ships with the platform, so
:func:`translate_cues` without one answers with ``available=False``, the reason, and the original cues.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace
from typing import Protocol, runtime_checkable

from reelforge import errors

Words = Sequence[tuple[str, float, float]]


@dataclass(frozen=True)
class Cue:
    start: float
    end: float
    text: str  # lines joined with "\n"
    speaker: str | None = None

    @property
    def lines(self) -> list[str]:
        return self.text.split("\n")

    @property
    def duration_s(self) -> float:
        return self.end - self.start


@dataclass(frozen=True)
class CueRules:
    line_chars: int = 42
    max_lines: int = 2
    max_duration_s: float = 6.0
    min_duration_s: float = 1.0
    max_gap_s: float = 0.9
    linger_s: float = 0.25
    min_gap_s: float = 0.05  # between a cue's end and the next one's start

    def __post_init__(self) -> None:
        if self.line_chars < 8 or self.max_lines < 1:
            raise errors.ValidationFailed("subtitle lines need at least 8 characters and one line")
        if self.max_duration_s <= 0 or self.min_duration_s < 0 or self.min_duration_s > self.max_duration_s:
            raise errors.ValidationFailed("subtitle durations must satisfy 0 <= min <= max, max > 0")


_SENTENCE_END = re.compile(r"[.!?…][\"')\]]*$")


def _ends_sentence(word: str) -> bool:
    return bool(_SENTENCE_END.search(word))


def wrap(text: str, line_chars: int = 42, max_lines: int = 2) -> list[str] | None:
    """``text`` in at most ``max_lines`` lines of at most ``line_chars`` characters, broken at spaces and
    balanced; None when it does not fit. A single word longer than a line gets a line of its own."""
    words = text.split()
    if not words:
        return []
    if len(" ".join(words)) <= line_chars or len(words) == 1:
        return [" ".join(words)]
    if max_lines == 1:
        return None
    if max_lines == 2:
        best: tuple[int, list[str]] | None = None
        for i in range(1, len(words)):
            a, b = " ".join(words[:i]), " ".join(words[i:])
            if (len(a) <= line_chars or i == 1) and (len(b) <= line_chars or i == len(words) - 1):
                # shortest longer line; on a tie, the top line shorter (a pyramid reads better)
                score = max(len(a), len(b)) * 2 + (1 if len(a) > len(b) else 0)
                if best is None or score < best[0]:
                    best = (score, [a, b])
        return best[1] if best else None
    lines: list[str] = []  # greedy for three lines or more
    for w in words:
        if lines and len(lines[-1]) + 1 + len(w) <= line_chars:
            lines[-1] += " " + w
        else:
            lines.append(w)
    return lines if len(lines) <= max_lines else None


def build_cues(words: Words, rules: CueRules | None = None, *, speaker: str | None = None) -> list[Cue]:
    """Cues for one speaker's timed words (``(word, start_s, end_s)``, in order)."""
    rules = rules or CueRules()
    groups: list[list[tuple[str, float, float]]] = []
    current: list[tuple[str, float, float]] = []
    for word, start, end in words:
        if not word.strip():
            continue
        if current:
            text = " ".join(w for w, _, _ in current) + " " + word
            too_long = wrap(text, rules.line_chars, rules.max_lines) is None
            too_late = end - current[0][1] > rules.max_duration_s
            paused = start - current[-1][2] > rules.max_gap_s
            if too_long or too_late or paused:
                groups.append(current)
                current = []
        current.append((word, float(start), float(end)))
        if _ends_sentence(word):
            groups.append(current)
            current = []
    if current:
        groups.append(current)
    cues = []
    for group in groups:
        text = " ".join(w for w, _, _ in group)
        lines = wrap(text, rules.line_chars, rules.max_lines) or [text]
        cues.append(Cue(group[0][1], group[-1][2], "\n".join(lines), speaker))
    return time_cues(cues, rules)


def time_cues(cues: Sequence[Cue], rules: CueRules | None = None) -> list[Cue]:
    """Cues sorted by start, each lingering ``linger_s`` and lasting at least ``min_duration_s`` where the next
    cue leaves room, and never overlapping the next one."""
    rules = rules or CueRules()
    ordered = sorted(cues, key=lambda c: (c.start, c.end))
    out: list[Cue] = []
    for i, cue in enumerate(ordered):
        end = max(cue.end + rules.linger_s, cue.start + rules.min_duration_s)
        if i + 1 < len(ordered):  # never into the next cue, never before this cue's last word ends
            end = min(end, max(cue.end, ordered[i + 1].start - rules.min_gap_s))
        out.append(replace(cue, end=end))
    return out


def shift(cues: Iterable[Cue], offset_s: float) -> list[Cue]:
    """Cues moved by ``offset_s`` seconds (a line's cues placed at its time in the film)."""
    return [replace(c, start=c.start + offset_s, end=c.end + offset_s) for c in cues]


def _stamp(t: float, sep: str) -> str:
    ms = max(0, round(t * 1000))
    h, ms = divmod(ms, 3_600_000)
    m, ms = divmod(ms, 60_000)
    s, ms = divmod(ms, 1000)
    return f"{h:02d}:{m:02d}:{s:02d}{sep}{ms:03d}"


def to_srt(cues: Sequence[Cue]) -> str:
    """SubRip text: numbered cues, ``HH:MM:SS,mmm`` times, a blank line after each."""
    blocks = []
    for i, cue in enumerate(cues, 1):
        text = "\n".join(line for line in cue.lines if line) or " "
        blocks.append(f"{i}\n{_stamp(cue.start, ',')} --> {_stamp(cue.end, ',')}\n{text}\n")
    return "\n".join(blocks)


def _vtt_escape(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def to_vtt(cues: Sequence[Cue]) -> str:
    """WebVTT text; a cue with a speaker carries a voice span (``<v Name>``)."""
    blocks = ["WEBVTT\n"]
    for cue in cues:
        text = _vtt_escape(cue.text).replace("-->", "--&gt;")
        if cue.speaker:
            text = f"<v {_vtt_escape(cue.speaker)}>{text}"
        blocks.append(f"{_stamp(cue.start, '.')} --> {_stamp(cue.end, '.')}\n{text}\n")
    return "\n".join(blocks)


_SRT_TIME = re.compile(r"(\d+):(\d{2}):(\d{2})[,.](\d{3})\s*-->\s*(\d+):(\d{2}):(\d{2})[,.](\d{3})")


def parse_srt(text: str) -> list[Cue]:
    """Cues back from SubRip (or WebVTT without settings) text."""
    cues = []
    for block in re.split(r"\n\s*\n", text.replace("\r\n", "\n").strip()):
        lines = block.split("\n")
        for k, line in enumerate(lines):
            m = _SRT_TIME.search(line)
            if m:
                g = [int(x) for x in m.groups()]
                start = g[0] * 3600 + g[1] * 60 + g[2] + g[3] / 1000
                end = g[4] * 3600 + g[5] * 60 + g[6] + g[7] / 1000
                cues.append(Cue(start, end, "\n".join(lines[k + 1:])))
                break
    return cues


# Translation ------------------------------------------------------------------------------------------------


@runtime_checkable
class Translator(Protocol):
    """A text translation engine: the same number of texts back, in order."""

    name: str

    def translate(self, texts: Sequence[str], *, source: str, target: str) -> list[str]: ...


@dataclass(frozen=True)
class Translation:
    """The outcome of translating cues: ``available`` False means ``cues`` are the originals and ``reason``
    says why."""

    available: bool
    cues: tuple[Cue, ...]
    source: str
    target: str
    engine: str | None = None
    reason: str | None = None


NO_ENGINE = ("no translation engine is configured: the platform ships no offline translation model, so "
             "subtitles stay in the source language")


def translate_cues(cues: Sequence[Cue], target: str, translator: Translator | None = None, *,
                   source: str = "en", rules: CueRules | None = None) -> Translation:
    """Cues with their text in ``target``, timings unchanged, lines re-wrapped. Without a translator, or
    when it fails or answers with the wrong number of texts, the original cues come back with the reason."""
    rules = rules or CueRules()
    if target == source:
        return Translation(True, tuple(cues), source, target, engine=None, reason="source and target are the same")
    if translator is None:
        return Translation(False, tuple(cues), source, target, reason=NO_ENGINE)
    texts = [" ".join(c.lines) for c in cues]
    try:
        out = translator.translate(texts, source=source, target=target)
    except Exception as exc:
        return Translation(False, tuple(cues), source, target, engine=translator.name,
                           reason=f"{translator.name} failed: {type(exc).__name__}: {exc}")
    if len(out) != len(texts):
        return Translation(False, tuple(cues), source, target, engine=translator.name,
                           reason=f"{translator.name} returned {len(out)} texts for {len(texts)}")
    translated = []
    for cue, text in zip(cues, out, strict=True):
        lines = wrap(text, rules.line_chars, rules.max_lines) or wrap(text, rules.line_chars, 99) or [text]
        translated.append(replace(cue, text="\n".join(lines)))
    return Translation(True, tuple(translated), source, target, engine=translator.name)
