"""Script parsing: a Fountain screenplay or plain prose into scenes, characters, dialogue and action, with
estimated durations. Pure functions of the text and a few options; no I/O.

Fountain (https://fountain.io/syntax): title page `Key: value` fields, scene headings (INT. EXT. EST. INT./EXT.
I/E, forced `.HEADING`, scene numbers `#12#`), character cues in capitals with extensions `(V.O.)`, `(O.S.)`,
`(CONT'D)` or forced `@Name`, parentheticals, dialogue, dual dialogue `^`, action (forced `!`), transitions
(`CUT TO:`, forced `>`), centered text `>THE END<`, lyrics `~`, notes `[[ ]]`, boneyard `/* */`, sections `#`,
synopses `=`, page breaks `===`; emphasis (`*italic*`, `**bold**`, `_underline_`) is stripped from what is
spoken and shown.

Prose: paragraphs separated by blank lines. Scenes change at separator lines (`***`, `---`, `#`), chapter
headings, paragraphs that open with a change of time or place ("Later", "The next morning", "Meanwhile",
"Back at ..."), and two blank lines where single ones are the rule; a text with none of these starts a scene at
each paragraph of narration that does not sit inside a conversation. Dialogue is what stands in quotation marks,
attributed from `"...," said Anna`, `"...," Anna said softly`, `Anna asked, "..."`, an action beat naming a
speaker in the same paragraph (`Bob frowned. "No."`), or, in a conversation between two people, by turns.

`parse(text, fmt)` gives a `Script`; `breakdown(script, ...)` turns it into the JSON document stored on a
project (docs/architecture.md, "Film studio", describes its shape).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

Format = Literal["fountain", "prose"]
PARSER = "reelforge-film-script/1"

# Moods a scene (and a generated score) may have; the keywords that suggest each.
MOODS: tuple[str, ...] = ("calm", "tense", "sad", "joyful", "romantic", "mysterious", "epic", "playful")
_MOOD_WORDS: dict[str, tuple[str, ...]] = {
    "calm": ("quiet", "calm", "peaceful", "gentle", "still", "silence", "silent", "serene", "relax", "soft",
             "breeze", "sleep", "rest"),
    "tense": ("gun", "scream", "chase", "run", "danger", "fear", "afraid", "blood", "panic", "threat", "knife",
              "attack", "escape", "hurry", "alarm", "shout", "siren", "trap", "hide", "kill", "dead"),
    "sad": ("cry", "cries", "tears", "weep", "funeral", "grief", "alone", "lonely", "sorrow", "goodbye", "loss",
            "mourn", "sad", "miss", "grave"),
    "joyful": ("laugh", "smile", "celebrate", "party", "happy", "joy", "cheer", "dance", "sunshine", "delight",
               "hug", "wonderful", "grin"),
    "romantic": ("kiss", "love", "embrace", "darling", "heart", "candle", "romance", "tender", "caress",
                 "wedding", "beloved"),
    "mysterious": ("shadow", "whisper", "fog", "mist", "strange", "secret", "mystery", "unknown", "dark",
                   "creak", "hidden", "clue", "silhouette", "eerie"),
    "epic": ("battle", "army", "storm", "thunder", "kingdom", "war", "sword", "mountain", "dragon", "hero",
             "legend", "empire", "charge", "vast"),
    "playful": ("joke", "giggle", "tease", "wink", "silly", "game", "play", "prank", "tickle", "bounce", "chuckle"),
}

# Per mood: the words matched exactly, and the stems (longer than three letters) matched as prefixes.
_MOOD_CUES = {m: (frozenset(ws), tuple(w for w in ws if len(w) > 3)) for m, ws in _MOOD_WORDS.items()}
_TIMES = ("DAY", "NIGHT", "MORNING", "AFTERNOON", "EVENING", "DAWN", "DUSK", "SUNRISE", "SUNSET", "NOON",
          "MIDNIGHT", "LATER", "CONTINUOUS", "SAME TIME", "MAGIC HOUR", "MOMENTS LATER", "TWILIGHT")
_TIME_RE = re.compile(r"\b(?:" + "|".join(_TIMES) + r")\b")
_FADES = frozenset({"FADE IN", "FADE OUT", "FADE TO BLACK", "FADE TO WHITE", "SMASH CUT", "THE END"})
TITLE_KEYS = ("title", "credit", "author", "authors", "source", "draft date", "date", "contact", "copyright",
              "notes", "revision", "written by")


# --- the parsed script ---------------------------------------------------------------------------------------------
@dataclass
class Element:
    """One item of a scene, in reading order: action, dialogue, transition, centered text or lyrics."""

    type: str
    text: str
    character: str | None = None  # dialogue: the speaker as written (cue without extensions, or prose name)
    parenthetical: str | None = None
    extension: str | None = None  # dialogue: V.O., O.S., CONT'D, ...
    dual: int = 0  # dual dialogue: the pair's group number (both halves are spoken at the same time); 0: none
    attributed: bool = True  # prose dialogue: False when no speaker could be found


@dataclass
class Scene:
    heading: str | None = None
    number: str | None = None
    setting: str | None = None  # INT, EXT, INT/EXT, EST
    location: str | None = None
    time_of_day: str | None = None
    section: str | None = None
    synopsis: str | None = None
    elements: list[Element] = field(default_factory=list)

    def has_content(self) -> bool:
        return any(e.type in ("action", "dialogue", "lyrics", "centered") and e.text for e in self.elements)


@dataclass
class Script:
    format: Format
    title_page: dict[str, str] = field(default_factory=dict)
    scenes: list[Scene] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def speakers(self) -> list[str]:
        """Every named speaker, in order of first appearance."""
        seen: dict[str, str] = {}
        for scene in self.scenes:
            for e in scene.elements:
                if e.type == "dialogue" and e.character:
                    seen.setdefault(name_key(e.character), e.character)
        return list(seen.values())


# --- shared helpers ------------------------------------------------------------------------------------------------
_WORD = re.compile(r"[^\W_]+(?:['\u2019][^\W_]+)*")
# Emphasis spans at most 400 characters (a marker left open costs a bounded look ahead, never the whole text).
_EMPHASIS = tuple(re.compile(r"(?<![\\*])" + m + r"(?=[^\s*])(.{1,400}?)(?<=[^\s\\])" + m + r"(?!\*)")
                  for m in (r"\*\*\*", r"\*\*", r"\*"))
_UNDERLINE = re.compile(r"(?<![\\\w])_(?=\S)(.{1,400}?)(?<=\S)(?<!\\)_(?!\w)")


def strip_emphasis(text: str) -> str:
    """Fountain's emphasis markers removed (`*x*`, `**x**`, `***x***`, `_x_`); escaped ones kept as characters."""
    prev = None
    while prev != text:
        prev = text
        for rx in _EMPHASIS:
            text = rx.sub(r"\1", text)
        text = _UNDERLINE.sub(r"\1", text)
    return text.replace("\\*", "*").replace("\\_", "_")


def words(text: str) -> int:
    return len(_WORD.findall(text))


def name_key(name: str) -> str:
    """How character names are compared: case, curly apostrophes and spacing do not matter."""
    return " ".join(name.replace("\u2019", "'").upper().split())


def _clean(text: str) -> str:
    return " ".join(text.split())


# --- format detection ----------------------------------------------------------------------------------------------
_HEADING = re.compile(r"^(?:INT\.?/EXT|INT/EXT|EXT\.?/INT|I/E|INT|EXT|EST)(?:\.|\s)", re.IGNORECASE)
_CUE = re.compile(r"^(?P<name>[^()^]*?)\s*(?P<ext>(?:\([^()]*\)\s*)*)(?P<dual>\^)?\s*$")


def detect_format(text: str) -> Format:
    """`fountain` when the text has a title page, a scene heading, two or more character cues with dialogue
    under them, or Fountain's own marks (boneyard `/* */`, notes `[[ ]]`, a synopsis line `= ...`, centered
    `>text<`); `prose` otherwise."""
    text = _normalize(text)
    if _BONEYARD_ONLY.search(text) or _NOTE.search(text) or _FOUNTAIN_MARK.search(text):
        return "fountain"
    lines = text.split("\n")
    first = next((ln for ln in lines if ln.strip()), "")
    if _title_key(first) in TITLE_KEYS:
        return "fountain"
    cues = 0
    for i, line in enumerate(lines):
        s = line.strip()
        if not s:
            continue
        prev_blank = i == 0 or not lines[i - 1].strip()
        if not prev_blank:
            continue
        if _HEADING.match(s):
            return "fountain"
        nxt = lines[i + 1].strip() if i + 1 < len(lines) else ""
        if nxt and (_is_cue(s) or (s.startswith("@") and len(s) > 1)):
            cues += 1
    return "fountain" if cues >= 2 else "prose"


def parse(text: str, fmt: str = "auto", characters: Sequence[str] = ()) -> Script:
    """The script in `text`, read as `fmt` (`fountain`, `prose` or `auto`). `characters`: names prose
    dialogue may be attributed to through an action beat."""
    chosen: Format = detect_format(text) if fmt == "auto" else ("fountain" if fmt == "fountain" else "prose")
    return parse_fountain(text) if chosen == "fountain" else parse_prose(text, characters)


def _normalize(text: str) -> str:
    return text.replace("\r\n", "\n").replace("\r", "\n").replace("\ufeff", "").replace("\t", "    ")


# --- Fountain ------------------------------------------------------------------------------------------------------
_BONEYARD = re.compile(r"/\*.*?(?:\*/|\Z)", re.DOTALL)
# A note ends at the first `]]` and holds no `[[` (so an unclosed one costs one look ahead, not one per `[[`).
_NOTE_LINE = re.compile(r"^[ ]*\[\[((?:(?!\[\[|\]\]).)*)\]\][ ]*(?:\n|\Z)", re.DOTALL | re.MULTILINE)
_NOTE = re.compile(r"\[\[((?:(?!\[\[|\]\]).)*)\]\]", re.DOTALL)
_BONEYARD_ONLY = re.compile(r"/\*.*?\*/", re.DOTALL)
_FOUNTAIN_MARK = re.compile(r"^[ ]*(?:=(?!=)\s*\S|>[^<\n]*\S[^<\n]*<[ ]*$)", re.MULTILINE)
_SCENE_NUMBER = re.compile(r"\s*#([\w.-]+)#\s*$")
_TITLE_FIELD = re.compile(r"^([A-Za-z][A-Za-z ]{0,30}):(.*)$")


def _title_key(line: str) -> str | None:
    m = _TITLE_FIELD.match(line.strip())
    return m.group(1).strip().lower() if m else None


def _is_cue(s: str) -> bool:
    """A character cue: the name in capitals (at least one letter, no lower case), optional extensions in
    parentheses, optional `^`; not a transition."""
    if s.startswith("@"):
        return len(s) > 1
    m = _CUE.match(s)
    if not m:
        return False
    name = m.group("name").strip()
    if not name or len(name) > 60 or not any(ch.isalpha() for ch in name) or name != name.upper():
        return False
    if name.endswith(":") or name.startswith(("!", ".", ">", "=", "#", "~", "[")):
        return False
    return not _HEADING.match(name)


def _cue_parts(s: str) -> tuple[str, str | None, bool]:
    """(name, extensions, dual) of a cue line."""
    forced = s.startswith("@")
    if forced:
        s = s[1:]
    m = _CUE.match(s.strip())
    if not m:  # a forced cue may hold what the pattern refuses
        return _clean(s.rstrip("^")), None, s.rstrip().endswith("^")
    exts = re.findall(r"\(([^()]*)\)", m.group("ext") or "")
    ext = " ".join(_clean(x) for x in exts if x.strip()) or None
    return _clean(m.group("name")), ext, bool(m.group("dual"))


def _heading_parts(raw: str) -> tuple[str, str | None, str | None, str | None, str | None]:
    """(heading, number, setting, location, time of day) of a scene heading line (forced `.` removed)."""
    text = raw.strip()
    if text.startswith(".") and not text.startswith(".."):
        text = text[1:].strip()
    number = None
    m = _SCENE_NUMBER.search(text)
    if m:
        number = m.group(1)
        text = text[: m.start()].strip()
    text = strip_emphasis(text)
    setting = None
    rest = text
    pm = _HEADING.match(text + " ")
    if pm:
        prefix = pm.group(0).strip().rstrip(".").upper()
        setting = {"I/E": "INT/EXT", "INT./EXT": "INT/EXT", "EXT./INT": "INT/EXT", "EXT/INT": "INT/EXT"}.get(
            prefix, prefix)
        rest = text[pm.end():].strip() if len(text) >= pm.end() else ""
        rest = rest.lstrip(". ").strip()
    parts = [p.strip() for p in re.split(r"\s+[-\u2013\u2014]+\s+", rest) if p.strip()]
    time_of_day = None
    if len(parts) > 1 and _TIME_RE.search(parts[-1].upper()):
        time_of_day = parts.pop().lower()
    location = " - ".join(parts) or None
    return text, number, setting, location, time_of_day


def parse_fountain(text: str) -> Script:
    script = Script(format="fountain")
    text = _normalize(text)
    text = _BONEYARD.sub("", text)
    script.notes.extend(_clean(n) for n in _NOTE_LINE.findall(text) if n.strip())
    text = _NOTE_LINE.sub("", text)
    script.notes.extend(_clean(n) for n in _NOTE.findall(text) if n.strip())
    text = _NOTE.sub("", text)
    lines = text.split("\n")

    i = 0
    # Title page: `Key: value` lines at the very top, values may continue on indented lines; ends at a blank.
    while i < len(lines) and not lines[i].strip():
        i += 1
    if i < len(lines) and _title_key(lines[i]) in TITLE_KEYS:
        key = None
        while i < len(lines) and lines[i].strip():
            line = lines[i]
            m = _TITLE_FIELD.match(line.strip())
            if m and not line.startswith(("   ", "  ")):
                key = m.group(1).strip().lower()
                value = m.group(2).strip()
                script.title_page[key] = strip_emphasis(value)
            elif key is not None:
                joined = (script.title_page.get(key, "") + "\n" + strip_emphasis(line.strip())).strip()
                script.title_page[key] = joined
            i += 1

    scene: Scene | None = None
    pending_section: str | None = None
    pending_synopsis: str | None = None

    def current() -> Scene:
        nonlocal scene, pending_section, pending_synopsis
        if scene is None:
            scene = Scene(section=pending_section, synopsis=pending_synopsis)
            pending_section = pending_synopsis = None
            script.scenes.append(scene)
        return scene

    groups = [0]  # the last dual-dialogue group number
    n = len(lines)
    while i < n:
        line = lines[i]
        s = line.strip()
        if not s:
            i += 1
            continue
        prev_blank = i == 0 or not lines[i - 1].strip()
        next_blank = i + 1 >= n or not lines[i + 1].strip()
        if re.fullmatch(r"={3,}", s):  # page break
            i += 1
            continue
        if s.startswith("#"):
            pending_section = strip_emphasis(s.lstrip("#").strip()) or None
            i += 1
            continue
        if s.startswith("=") and not s.startswith("=="):
            synopsis = strip_emphasis(s[1:].strip()) or None
            if scene is not None and not scene.elements and scene.synopsis is None:
                scene.synopsis = synopsis
            else:
                pending_synopsis = synopsis
            i += 1
            continue
        if (s.startswith(".") and len(s) > 1 and s[1].isalnum()) or (prev_blank and _HEADING.match(s)):
            heading, number, setting, location, tod = _heading_parts(s)
            scene = Scene(heading=heading, number=number, setting=setting, location=location, time_of_day=tod,
                          section=pending_section, synopsis=pending_synopsis)
            pending_section = pending_synopsis = None
            script.scenes.append(scene)
            i += 1
            continue
        if s.startswith(">") and s.endswith("<") and len(s) > 2:
            current().elements.append(Element("centered", _clean(strip_emphasis(s[1:-1]))))
            i += 1
            continue
        if s.startswith(">"):
            current().elements.append(Element("transition", _clean(strip_emphasis(s[1:]))))
            i += 1
            continue
        if prev_blank and next_blank and s == s.upper() and any(c.isalpha() for c in s) and (
                s.endswith("TO:") or s.rstrip(".:") in _FADES):
            current().elements.append(Element("transition", _clean(s)))
            i += 1
            continue
        if s.startswith("~"):
            current().elements.append(Element("lyrics", _clean(strip_emphasis(s[1:]))))
            i += 1
            continue
        if prev_blank and not next_blank and not s.startswith("!") and _is_cue(s):
            i = _dialogue_block(lines, i, current(), groups)
            continue
        # Action: this line and the following ones up to a blank line.
        para = []
        while i < n and lines[i].strip():
            t = lines[i].strip()
            if t.startswith("!"):
                t = t[1:]
            para.append(t)
            i += 1
        text_ = _clean(strip_emphasis(" ".join(para)))
        if text_:
            current().elements.append(Element("action", text_))
    script.scenes = [sc for sc in script.scenes if sc.elements or sc.heading]
    return script


def _dialogue_block(lines: Sequence[str], i: int, scene: Scene, groups: list[int]) -> int:
    """Read the cue at `i` and its dialogue (up to a blank line; a line of two spaces continues it); returns
    the index after the block. A parenthetical starts a new piece of dialogue that it directs."""
    name, ext, dual = _cue_parts(lines[i].strip())
    i += 1
    paren: str | None = None  # read, not yet given to a piece of dialogue
    chunks: list[tuple[str | None, list[str]]] = []
    while i < len(lines):
        raw = lines[i]
        if not raw.strip() and raw != "  ":
            break
        t = raw.strip()
        i += 1
        if not t:
            continue
        if t.startswith("(") and t.endswith(")"):
            paren = _clean(strip_emphasis(t[1:-1])) or None
            continue
        if t.startswith("~"):
            t = t[1:].strip()
        if chunks and paren is None:
            chunks[-1][1].append(t)
        else:
            chunks.append((paren, [t]))
            paren = None
    start = len(scene.elements)
    for p, body in chunks:
        text_ = _clean(strip_emphasis(" ".join(body)))
        if text_:
            scene.elements.append(Element("dialogue", text_, character=name, parenthetical=p, extension=ext))
    if not chunks and paren is not None:  # a cue with only a parenthetical: a silent beat
        scene.elements.append(Element("dialogue", "", character=name, parenthetical=paren, extension=ext))
    if dual:
        _mark_dual(scene, start, groups)
    return i


def _mark_dual(scene: Scene, start: int, groups: list[int]) -> None:
    """The block from `start` is the second half of a dual dialogue: it and the speaker's block before it
    get one group number."""
    els = scene.elements
    if start >= len(els):
        return
    j = start - 1
    if j < 0 or els[j].type != "dialogue":
        return
    groups[0] += 1
    group = groups[0]
    other = els[j].character
    while j >= 0 and els[j].type == "dialogue" and els[j].character == other and not els[j].dual:
        els[j].dual = group
        j -= 1
    for e in els[start:]:
        e.dual = group


# --- prose ---------------------------------------------------------------------------------------------------------
_SEPARATOR = re.compile(r"^\s*(?:[*#~=_\-•⁂§]\s*){1,}\s*$")
_CHAPTER = re.compile(r"^\s*(?i:chapter|part|book|act|scene)\s+(?:\d+|[IVXLC]+|(?i:one|two|three|four|five|six|"
                      r"seven|eight|nine|ten|eleven|twelve|thirteen|fourteen|fifteen|twenty|[a-z]+teen))\b"
                      r"[.:]?\s*(?P<title>.*)$")
_NUMBERS = r"(?:a few|a couple of|several|some|one|two|three|four|five|six|seven|eight|nine|ten|twelve|\d+)"
_CHANGE = re.compile(
    r"^[\s\-\u2013\u2014\u2026]*(?:"
    r"later\b|meanwhile\b|elsewhere\b|across town\b|back (?:at|in|on|home)\b"
    r"|by (?:morning|nightfall|dawn|dusk|evening|noon)\b"
    r"|at (?:dawn|dusk|night|midnight|noon|sunrise|sunset)\b"
    r"|in the (?:morning|evening|afternoon)\b"
    r"|the (?:next|following) (?:morning|day|night|evening|afternoon|week|month|year)\b"
    r"|that (?:same )?(?:night|evening|morning|afternoon|day)\b"
    r"|(?:moments|minutes|hours|days|weeks|months|years) later\b"
    r"|" + _NUMBERS + r" (?:minutes?|hours?|days?|weeks?|months?|years?) later\b"
    r"|(?:early|late) (?:the )?(?:next )?(?:morning|evening|that night)\b)",
    re.IGNORECASE)
_VERBS = (
    "said|says|say|asked|asks|ask|replied|replies|answered|answers|whispered|whispers|shouted|shouts|yelled|yells|"
    "cried|cries|called|calls|added|adds|continued|continues|exclaimed|exclaims|snapped|snaps|muttered|mutters|"
    "murmured|murmurs|told|tells|began|begins|insisted|insists|laughed|laughs|sighed|sighs|screamed|screams|"
    "demanded|demands|explained|explains|repeated|repeats|agreed|agrees|protested|protests|admitted|admits|"
    "announced|announces|breathed|barked|begged|begs|growled|growls|hissed|hisses|groaned|groans|grumbled|"
    "stammered|stuttered|sobbed|sobs|pleaded|pleads|warned|warns|wondered|wonders|offered|offers|suggested|"
    "suggests|observed|remarked|declared|declares|responded|responds|retorted|chuckled|giggled|gasped|gasps|"
    "roared|roars|shrieked|mumbled|mumbles|interrupted|interrupts|went on|goes on|corrected|confessed|promised|"
    "greeted|ordered|orders|called out|called back|shot back|cut in|chimed in")
_NAME = (r"(?:(?:Mr|Mrs|Ms|Mx|Dr|Prof|Sir|Lady|Lord|Captain|Capt|Aunt|Uncle|Miss|Madame|Father|Mother|Sister|"
         r"Brother|King|Queen|Prince|Princess|Officer|Detective|Agent|General|Colonel|Major|Sergeant)\.?\s+)?"
         r"[A-Z][\w'\u2019-]*(?:\s+(?:[A-Z][\w'\u2019-]*|de|van|von|da|del|la|le))*")
_PRONOUN = r"(?:he|she|they|I|we|He|She|They|We)"
_ADVERB = r"(?:\s+(?P<adv>[a-z]+ly))?"
_AFTER_NAME_VERB = re.compile(r"^\s*,?\s*(?P<name>" + _NAME + "|" + _PRONOUN + r")" + r"(?:\s+[a-z]+ly)?\s+"
                              r"(?P<verb>" + _VERBS + r")\b" + _ADVERB)
_AFTER_VERB_NAME = re.compile(r"^\s*,?\s*(?P<verb>" + _VERBS + r")\s+(?P<name>" + _NAME + "|" + _PRONOUN + r")\b"
                              + _ADVERB)
_BEFORE = re.compile(r"(?:^|[.!?]\s+|^\s*)(?P<name>" + _NAME + "|" + _PRONOUN + r")(?:\s+[a-z]+ly)?\s+"
                     r"(?P<verb>" + _VERBS + r")" + _ADVERB + r"(?:\s+(?:to|at)\s+(?:him|her|them|me|us|"
                     + _NAME + r"))?\s*[,:]?\s*$")
_COLON = re.compile(r"(?:^|[.!?]\s+)(?P<name>" + _NAME + r")\s*:\s*$")
_CLAUSE = re.compile(r"^\s*,\s*(?P<clause>(?:[a-z]+ing|with|without|as|through|between)\b[^.!?;\"“”]*?)"
                     r"\s*(?:[.!?;]|$)")
_NOT_NAMES = frozenset({"THE", "A", "AN", "AND", "BUT", "THEN", "SO", "IT", "THIS", "THAT", "THERE", "HERE",
                        "WHEN", "WHILE", "AS", "IF", "OR", "NO", "YES", "OH", "WELL", "NOW", "WHAT", "WHY",
                        "HOW", "WHO", "WHERE", "SOMEONE", "EVERYONE", "NOBODY", "SOMEBODY", "ONE", "HIS", "HER",
                        "THEIR", "MY", "OUR", "YOUR", "HE", "SHE", "THEY", "I", "WE", "YOU"})
_PRONOUNS = frozenset({"HE", "SHE", "THEY", "I", "WE"})
_NOT_PLACES = frozenset(re.findall(r"\w+", "JANUARY FEBRUARY MARCH APRIL MAY JUNE JULY AUGUST SEPTEMBER "
                                             "OCTOBER NOVEMBER DECEMBER MONDAY TUESDAY WEDNESDAY THURSDAY FRIDAY "
                                             "SATURDAY SUNDAY"))
_QUOTES = {"“": "”", '"': '"', "«": "»", "„": "“"}
_PLACES = frozenset(re.findall(r"\w+",
    "kitchen room bedroom bathroom hall hallway corridor lobby office house home flat apartment cottage cabin "
    "castle palace tower lighthouse church chapel cathedral temple school classroom library museum hospital ward "
    "station platform airport harbour harbor port dock pier beach shore coast sea ocean lake river bridge forest "
    "wood woods jungle desert mountain mountains hill hills valley field fields farm barn garden park yard "
    "courtyard street road alley avenue square market shop store cafe café restaurant bar pub tavern inn hotel "
    "motel diner club theatre theater cinema stage studio garage basement cellar attic roof rooftop balcony "
    "porch car truck bus train taxi plane ship boat deck cave tunnel mine prison cell jail court courtroom "
    "bank factory warehouse lab laboratory village town city camp tent island ruins cemetery graveyard "
    "playground stadium gym pool bakery gallery salon study parlor parlour den cockpit spaceship"))
_LOCATION = re.compile(r"\b(?:in|inside|into|at|outside|on|across|through|near|onto|toward|towards)\s+"
                       r"(?:the|a|an|his|her|their|our|my|its)\s+((?:[\w'\u2019-]+\s+){0,2}[\w'\u2019-]+)",
                       re.IGNORECASE)
_THE_PLACE = re.compile(r"\b(?:the|a|an)\s+((?:[\w'\u2019-]+\s+){0,1}[\w'\u2019-]+)", re.IGNORECASE)
_CITY = re.compile(r"\b(?:in|at)\s+((?:[A-Z][a-z]+)(?:\s+[A-Z][a-z]+)?)")
_TIME_WORDS = (("dawn", ("dawn", "daybreak", "sunrise", "first light")), ("morning", ("morning", "breakfast")),
               ("afternoon", ("afternoon", "noon", "midday", "lunch")), ("dusk", ("dusk", "sunset", "twilight")),
               ("evening", ("evening", "dinner", "supper")),
               ("night", ("night", "midnight", "moonlight", "moon", "stars", "dark", "darkness")),
               ("day", ("daylight", "sunlight", "sunny", "sun", "day")))


@dataclass
class _Para:
    text: str
    gap_before: int  # blank lines before it
    quotes: bool = False


def _paragraphs(text: str) -> list[_Para]:
    out: list[_Para] = []
    gap = 0
    buf: list[str] = []
    for line in _normalize(text).split("\n"):
        if line.strip():
            buf.append(line.strip())
            continue
        if buf:
            out.append(_Para(" ".join(buf), gap))
            buf, gap = [], 0
        gap += 1
    if buf:
        out.append(_Para(" ".join(buf), gap))
    for p in out:
        p.quotes = any(q in p.text for q in _QUOTES)
    return out


def _segments(text: str) -> list[tuple[str, str]]:
    """The paragraph as ("narration" | "quote", text) pieces, in order; an unclosed quote runs to the end."""
    out: list[tuple[str, str]] = []
    i = 0
    start = 0
    while i < len(text):
        ch = text[i]
        close = _QUOTES.get(ch)
        if close is None:
            i += 1
            continue
        if ch == '"' and i > 0 and text[i - 1].isalnum() and (i + 1 >= len(text) or not text[i + 1].isalnum()):
            i += 1  # a closing mark with no opening one: ignore
            continue
        end = text.find(close, i + 1)
        if end < 0:
            end = len(text)
        out.append(("narration", text[start:i]))
        out.append(("quote", text[i + 1:end]))
        i = end + 1
        start = i
    out.append(("narration", text[start:]))
    return [(k, t) for k, t in out if k == "quote" or t.strip()]


def _speech(quote: str) -> str:
    t = _clean(strip_emphasis(quote))
    if t.endswith(","):
        t = t[:-1].rstrip() + "."
    return t


def _speaker(raw: str) -> str | None:
    """The name an attribution gives (sentence-opening words such as `Then` dropped), a pronoun as written,
    or None when what was caught is no name."""
    tokens = raw.split()
    while len(tokens) > 1 and tokens[0].rstrip(".,").upper() in _NOT_NAMES:
        tokens.pop(0)
    name = " ".join(tokens)
    key = name_key(name)
    if key in _PRONOUNS:
        return name
    if not name or key in _NOT_NAMES or key in _NOT_PLACES:
        return None
    return name


def _known_in(narration: str, known: Mapping[str, str]) -> str | None:
    """The first known character named in a piece of narration (an action beat: `Bob frowned.`)."""
    best: tuple[int, str] | None = None
    for key, shown in known.items():
        m = re.search(r"(?<![\w])" + re.escape(shown) + r"(?![\w])", narration)
        if m is None:
            m = re.search(r"(?<![\w])" + re.escape(key) + r"(?![\w])", narration.upper())
        if m is not None and (best is None or m.start() < best[0]):
            best = (m.start(), shown)
    return best[1] if best else None


def _attributions(paragraphs: Iterable[_Para]) -> dict[str, str]:
    """Names given as speakers anywhere in the text (key -> as first written)."""
    found: dict[str, str] = {}
    for p in paragraphs:
        segs = _segments(p.text)
        for j, (kind, _) in enumerate(segs):
            if kind != "quote":
                continue
            after = segs[j + 1][1] if j + 1 < len(segs) and segs[j + 1][0] == "narration" else ""
            before = segs[j - 1][1] if j > 0 and segs[j - 1][0] == "narration" else ""
            for m in (_AFTER_NAME_VERB.match(after), _AFTER_VERB_NAME.match(after), _BEFORE.search(before),
                      _COLON.search(before)):
                who = _speaker(m.group("name")) if m is not None else None
                if who is not None and name_key(who) not in _PRONOUNS:
                    found.setdefault(name_key(who), _clean(who))
                    break
    return found


def parse_prose(text: str, characters: Sequence[str] = ()) -> Script:
    """Prose into scenes (see the module). `characters` are names to recognise in action beats."""
    script = Script(format="prose")
    paras = _paragraphs(text)
    if not paras:
        return script
    known = _attributions(paras)
    for c in characters:
        known.setdefault(name_key(c), c)

    gaps = [p.gap_before for p in paras[1:]]
    wide_gaps = bool(gaps) and min(gaps) == 1 and max(gaps) >= 2
    breaks: list[bool] = []  # per paragraph: a scene starts here
    kinds: list[str] = []  # "separator" | "chapter" | "text"
    for idx, p in enumerate(paras):
        if _SEPARATOR.match(p.text):
            kinds.append("separator")
            breaks.append(True)
        elif _CHAPTER.match(p.text) and len(p.text.split()) <= 10 and not p.quotes:
            kinds.append("chapter")
            breaks.append(True)
        else:
            kinds.append("text")
            breaks.append(bool(_CHANGE.match(p.text)) or (wide_gaps and idx > 0 and p.gap_before >= 2))
    explicit = any(breaks)
    if not explicit:  # no cue at all: narration starts a scene unless it sits inside a conversation
        for idx, p in enumerate(paras):
            if p.quotes:
                continue
            inside = (0 < idx < len(paras) - 1 and paras[idx - 1].quotes and paras[idx + 1].quotes)
            breaks[idx] = not inside

    scene: Scene | None = None
    pending_section: str | None = None
    for idx, p in enumerate(paras):
        if kinds[idx] == "separator":
            scene = None
            continue
        if kinds[idx] == "chapter":
            m = _CHAPTER.match(p.text)
            pending_section = _clean(p.text) if m else None
            scene = None
            continue
        if scene is None or breaks[idx]:
            scene = Scene(section=pending_section)
            pending_section = None
            script.scenes.append(scene)
        _prose_paragraph(p.text, scene, known)
    script.scenes = [sc for sc in script.scenes if sc.elements]
    for sc in script.scenes:
        _prose_place(sc, known)
    return script


def _prose_paragraph(text: str, scene: Scene, known: Mapping[str, str]) -> None:
    segs = _segments(text)
    if not any(k == "quote" for k, _ in segs):
        t = _clean(strip_emphasis(text))
        if t:
            scene.elements.append(Element("action", t))
        return
    narration = [t for k, t in segs if k == "narration"]
    # Find each quote's speaker and what of the narration the attribution used.
    speakers: list[tuple[str | None, str | None]] = []  # (speaker or pronoun marker, parenthetical)
    consumed: dict[int, tuple[int, int]] = {}  # segment index -> (start, end) removed
    for j, (kind, _) in enumerate(segs):
        if kind != "quote":
            continue
        who: str | None = None
        paren: str | None = None
        after_i = j + 1 if j + 1 < len(segs) and segs[j + 1][0] == "narration" else None
        before_i = j - 1 if j > 0 and segs[j - 1][0] == "narration" else None
        m = None
        if after_i is not None:
            after = segs[after_i][1]
            m = _AFTER_NAME_VERB.match(after) or _AFTER_VERB_NAME.match(after)
            who = _speaker(m.group("name")) if m is not None else None
            if m is not None and who is not None:
                end = m.end()
                cm = _CLAUSE.match(after[end:])
                paren = m.group("adv")
                if cm:
                    paren = cm.group("clause").strip()
                    end += cm.end()
                consumed[after_i] = (m.start(), end)
        if who is None and before_i is not None:
            before = segs[before_i][1]
            m = _BEFORE.search(before) or _COLON.search(before)
            who = _speaker(m.group("name")) if m is not None else None
            if m is not None and who is not None:
                paren = m.groupdict().get("adv")
                consumed[before_i] = (m.start("name"), len(before))
        speakers.append((_clean(who) if who else None, paren))
    # Quotes of the paragraph without their own attribution take the paragraph's named speaker, or the
    # character an action beat names.
    named = next((w for w, _ in speakers if w and name_key(w) not in _PRONOUNS), None)
    if named is None:
        beat = _known_in(" ".join(narration), known)
        named = beat
    resolved: list[tuple[str | None, bool]] = []
    for w, _ in speakers:
        if w and name_key(w) not in _PRONOUNS:
            resolved.append((known.get(name_key(w), w), True))
        elif named is not None:
            resolved.append((known.get(name_key(named), named), True))
        else:
            resolved.append((None, False))
    if all(not ok for _, ok in resolved):
        turn = _by_turns(scene)
        if turn is not None:
            resolved = [(turn, True) for _ in resolved]
    qi = 0
    for j, (kind, t) in enumerate(segs):
        if kind == "quote":
            speaker, ok = resolved[qi]
            paren = speakers[qi][1]
            qi += 1
            spoken = _speech(t)
            if spoken:
                scene.elements.append(Element("dialogue", spoken, character=speaker, parenthetical=paren,
                                              attributed=ok))
            continue
        if j in consumed:
            a, b = consumed[j]
            t = t[:a] + " " + t[b:]
        rest = _clean(strip_emphasis(t)).strip(" ,;:-\u2013\u2014")
        rest = re.sub(r"^[.!?]+\s*", "", rest)
        if sum(ch.isalpha() for ch in rest) >= 3 and words(rest) >= 2:
            if rest[-1] not in ".!?\u2026":
                rest += "."
            scene.elements.append(Element("action", rest[0].upper() + rest[1:]))


def _by_turns(scene: Scene) -> str | None:
    """In a conversation of two people, the one who did not speak last."""
    order: list[str] = []
    for e in scene.elements:
        if e.type == "dialogue" and e.character:
            if order and order[-1] == e.character:
                continue
            order.append(e.character)
    distinct = list(dict.fromkeys(reversed(order)))
    if len(distinct) >= 2:
        return distinct[1]
    return None


def _prose_place(scene: Scene, known: Mapping[str, str]) -> None:
    """Location and time of day of a prose scene, from its narration."""
    narration = " ".join(e.text for e in scene.elements if e.type == "action")
    if not narration:
        return
    location = None
    for rx in (_LOCATION, _THE_PLACE):  # "in the old kitchen", then any "the beach"
        for m in rx.finditer(narration):
            tokens = m.group(1).split()
            for k in range(len(tokens), 0, -1):
                if tokens[k - 1].lower().strip("'\u2019") in _PLACES:
                    location = " ".join(tokens[:k]).upper()
                    break
            if location:
                break
        if location:
            break
    if location is None:
        names = {name_key(n) for n in known}
        for m in _CITY.finditer(narration):
            first = name_key(m.group(1).split()[0])
            if name_key(m.group(1)) not in names and first not in _NOT_NAMES and first not in _NOT_PLACES:
                location = m.group(1).upper()
                break
    lowered = narration.lower()
    tod = None
    earliest = len(lowered) + 1
    for label, cues in _TIME_WORDS:
        for cue in cues:
            hit = re.search(r"\b" + re.escape(cue) + r"\b", lowered)
            if hit and hit.start() < earliest:
                earliest, tod = hit.start(), label
    scene.location = location
    scene.time_of_day = tod
    if location:
        scene.heading = location + (f" - {tod.upper()}" if tod else "")


# --- breakdown -----------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Pace:
    words_per_minute: float = 150.0
    action_words_per_minute: float = 110.0
    line_pause_s: float = 0.3
    min_scene_seconds: float = 3.0


def infer_mood(text: str) -> str | None:
    """The mood whose keywords occur most in `text` (None when none does; ties go to the earlier mood)."""
    tokens = [w.lower() for w in _WORD.findall(text)]
    best, best_n = None, 0
    for mood in MOODS:
        exact, stems = _MOOD_CUES[mood]
        n = sum(1 for t in tokens if t in exact or t.startswith(stems))
        if n > best_n:
            best, best_n = mood, n
    return best


class _DualPair:
    """The open dual dialogue of a scene: seconds per speaker; the pair is heard together, so the longer half
    counts."""

    def __init__(self) -> None:
        self.group = 0
        self.halves: dict[str, float] = {}

    def add(self, group: int, speaker: str, seconds: float) -> None:
        self.group = group
        self.halves[speaker] = self.halves.get(speaker, 0.0) + seconds

    def close(self) -> float:
        longest = max(self.halves.values(), default=0.0)
        self.halves.clear()
        self.group = 0
        return longest


def _seconds(n_words: int, wpm: float) -> float:
    return n_words / wpm * 60.0 if n_words else 0.0


def _first_sentences(text: str, limit: int) -> str:
    if len(text) <= limit:
        return text
    cut = text[:limit]
    end = max(cut.rfind(". "), cut.rfind("! "), cut.rfind("? "))
    return cut[: end + 1] if end > limit // 3 else cut.rsplit(" ", 1)[0] + "\u2026"


def _describe(sc: dict[str, Any]) -> tuple[str, str]:
    """A plain description and image prompt from the parsed scene (a model may later write better ones)."""
    actions = [a for a in sc["action_lines"] if a]
    people = sc["characters"]
    place = (sc["location"] or "").lower()
    tod = sc["time_of_day"]
    if actions:
        description = _first_sentences(" ".join(actions), 300)
    elif people:
        description = (" and ".join([", ".join(people[:-1]), people[-1]] if len(people) > 1 else people)
                       + (" talk" if len(people) > 1 else " speaks") + (f" in the {place}" if place else "") + ".")
    else:
        description = sc["heading"] or "A scene."
    setting = {"INT": "interior", "EXT": "exterior", "INT/EXT": "interior and exterior",
               "EST": "establishing shot"}.get(sc["setting"] or "", "")
    where = ", ".join(x for x in (setting, place, tod or "") if x)
    lead = _first_sentences(" ".join(actions), 240) if actions else ""
    parts = [where, lead]
    if people:
        parts.append("Characters: " + ", ".join(people[:6]))
    if sc.get("mood"):
        parts.append(f"Mood: {sc['mood']}")
    parts.append("Cinematic film still")
    prompt = " ".join(p if p[-1] in ".!?\u2026" else p + "." for p in (x.strip() for x in parts) if p)
    return description, prompt[:1].upper() + prompt[1:]


def breakdown(script: Script, *, pace: Pace | None = None, rates: Mapping[str, float] | None = None,
              canonical: Mapping[str, str] | None = None,
              backgrounds: Sequence[Mapping[str, Any]] = ()) -> dict[str, Any]:
    """The JSON breakdown of a parsed script.

    `rates`: speaking rate per character key (`name_key`), 1.0 when absent. `canonical`: character key -> the
    name to show (the project's spelling). `backgrounds`: the project's backgrounds; a scene whose location
    names one gets its asset.
    """
    pace = pace or Pace()
    rates = rates or {}
    canonical = canonical or {}
    scenes: list[dict[str, Any]] = []
    stats: dict[str, dict[str, Any]] = {}
    total_words = 0
    for sc in script.scenes:
        if not sc.has_content() and not sc.heading:
            continue
        elements: list[dict[str, Any]] = []
        dialogue: list[dict[str, Any]] = []
        action_lines: list[str] = []
        transition = None
        people: dict[str, str] = {}
        seconds = 0.0
        dual = _DualPair()
        for e in sc.elements:
            if e.type == "dialogue" or e.type == "lyrics":
                who = canonical.get(name_key(e.character), e.character) if e.character else None
                n = words(e.text)
                rate = rates.get(name_key(who), 1.0) if who else 1.0
                secs = round(_seconds(n, pace.words_per_minute * rate) + (pace.line_pause_s if n else 0.0), 2)
                line: dict[str, Any] = {
                    "type": e.type, "character": who, "text": e.text, "parenthetical": e.parenthetical,
                    "extension": e.extension, "dual": bool(e.dual), "dual_group": e.dual or None, "words": n,
                    "estimated_seconds": secs}
                if e.type == "dialogue" and script.format == "prose":
                    line["attributed"] = e.attributed
                elements.append(line)
                if e.type == "dialogue":
                    dialogue.append({k: v for k, v in line.items() if k != "type"})
                if who:
                    people.setdefault(name_key(who), who)
                    st = stats.setdefault(name_key(who), {"name": who, "lines": 0, "words": 0, "scenes": [],
                                                          "estimated_seconds": 0.0})
                    st["lines"] += 1
                    st["words"] += n
                    st["estimated_seconds"] = round(st["estimated_seconds"] + secs, 2)
                    if not st["scenes"] or st["scenes"][-1] != len(scenes):
                        st["scenes"].append(len(scenes))
                total_words += n
                if e.dual != dual.group:
                    seconds += dual.close()
                if e.dual:
                    dual.add(e.dual, name_key(who or ""), secs)
                else:
                    seconds += secs
                continue
            seconds += dual.close()
            if e.type == "transition":
                transition = e.text
                elements.append({"type": "transition", "text": e.text})
                continue
            n = words(e.text)
            secs = round(_seconds(n, pace.action_words_per_minute), 2)
            elements.append({"type": e.type, "text": e.text, "words": n, "estimated_seconds": secs})
            if e.type == "action":
                action_lines.append(e.text)
            total_words += n
            seconds += secs
        seconds += dual.close()
        text_all = " ".join([*action_lines, *(d["text"] for d in dialogue)])
        mood = infer_mood(text_all) if text_all else None
        item: dict[str, Any] = {
            "index": len(scenes),
            "number": sc.number,
            "heading": sc.heading,
            "setting": sc.setting,
            "location": sc.location,
            "time_of_day": sc.time_of_day,
            "section": sc.section,
            "synopsis": sc.synopsis,
            "characters": list(people.values()),
            "elements": elements,
            "action_lines": action_lines,
            "dialogue": dialogue,
            "transition": transition,
            "mood": mood,
            "mood_source": "keywords" if mood else None,
            "background": _background(sc.location, backgrounds),
            "estimated_seconds": round(max(pace.min_scene_seconds, seconds), 2),
        }
        item["description"], item["image_prompt"] = _describe(item)
        scenes.append(item)
    characters = sorted(stats.values(), key=lambda s: (-s["lines"], s["name"]))
    return {
        "parser": PARSER,
        "format": script.format,
        "title": script.title_page.get("title") or None,
        "title_page": dict(script.title_page),
        "scenes": scenes,
        "characters": characters,
        "totals": {
            "scenes": len(scenes),
            "dialogue_lines": sum(len(s["dialogue"]) for s in scenes),
            "action_lines": sum(len(s["action_lines"]) for s in scenes),
            "words": total_words,
            "estimated_seconds": round(sum(s["estimated_seconds"] for s in scenes), 2),
        },
    }


def _background(location: str | None, backgrounds: Sequence[Mapping[str, Any]]) -> dict[str, Any] | None:
    """The project's background whose name is the scene's location (or, failing that, is named in it)."""
    if not location or not backgrounds:
        return None
    loc = name_key(location)
    exact = [b for b in backgrounds if name_key(str(b.get("name", ""))) == loc]
    partial = [b for b in backgrounds
               if b.get("name") and re.search(r"(?<!\w)" + re.escape(name_key(str(b["name"]))) + r"(?!\w)", loc)]
    hits = exact or sorted(partial, key=lambda b: -len(str(b["name"])))
    return {"name": hits[0]["name"], "asset_id": hits[0]["asset_id"]} if hits else None
