"""The Fountain parser: every element of the syntax, and the breakdown's durations."""

from __future__ import annotations

from typing import Any

import pytest

from reelforge.apps.film.script import Pace, breakdown, detect_format, parse, parse_fountain, strip_emphasis

SCRIPT = """Title: _The Lighthouse_
Credit: Written by
Author: Jane Doe
Contact:
    jane@example.com
    555-0100
Draft date: 2024-01-01

FADE IN:

# Act One

INT. LIGHTHOUSE - NIGHT #1A#

= Anna waits for the ship.

Rain hammers the *glass*. ANNA stares at the sea. [[Check the lamp.]]
The lamp turns.

ANNA
(whispering)
Where are **you**?
(beat)
Come home.

TOM (V.O.) (CONT'D)
I'm coming.

/* A cut line
ANNA
Never seen.
*/

EXT./INT. PIER - CONTINUOUS

!SILENCE.

BRICK
Screw retirement.

STEEL ^
Screw retirement, I said.

@McCLANE
Yippee ki-yay.

HANS (on the radio)
Mr. McClane.

> FADE TO:

CUT TO:

I/E CAR - MOVING - DAY

.FLASHBACK

Years ago.

EST. CITY - DUSK

===

>THE END<
"""


def scenes(text: str) -> list[dict[str, Any]]:
    return list(breakdown(parse_fountain(text))["scenes"])


def test_title_page_notes_and_boneyard() -> None:
    script = parse_fountain(SCRIPT)
    assert script.title_page["title"] == "The Lighthouse"  # emphasis stripped
    assert script.title_page["author"] == "Jane Doe"
    assert script.title_page["contact"] == "jane@example.com\n555-0100"
    assert script.title_page["draft date"] == "2024-01-01"
    assert script.notes == ["Check the lamp."]
    assert all("Never seen" not in e.text for sc in script.scenes for e in sc.elements)


def test_scene_headings() -> None:
    got = [(s["heading"], s["setting"], s["location"], s["time_of_day"], s["number"]) for s in scenes(SCRIPT)]
    assert got == [
        ("INT. LIGHTHOUSE - NIGHT", "INT", "LIGHTHOUSE", "night", "1A"),
        ("EXT./INT. PIER - CONTINUOUS", "INT/EXT", "PIER", "continuous", None),
        ("I/E CAR - MOVING - DAY", "INT/EXT", "CAR - MOVING", "day", None),
        ("FLASHBACK", None, "FLASHBACK", None, None),
        ("EST. CITY - DUSK", "EST", "CITY", "dusk", None),
    ]
    first = scenes(SCRIPT)[0]
    assert first["section"] == "Act One" and first["synopsis"] == "Anna waits for the ship."


def test_dialogue_cues_extensions_and_parentheticals() -> None:
    first, pier = scenes(SCRIPT)[:2]
    assert first["action_lines"] == ["Rain hammers the glass. ANNA stares at the sea. The lamp turns."]
    lines = [(d["character"], d["parenthetical"], d["text"], d["extension"]) for d in first["dialogue"]]
    assert lines == [("ANNA", "whispering", "Where are you?", None), ("ANNA", "beat", "Come home.", None),
                     ("TOM", None, "I'm coming.", "V.O. CONT'D")]
    assert pier["action_lines"] == ["SILENCE."]  # forced action, not a cue
    assert [d["character"] for d in pier["dialogue"]] == ["BRICK", "STEEL", "McCLANE", "HANS"]
    assert pier["dialogue"][3]["extension"] == "on the radio"
    assert [(d["dual"], d["dual_group"]) for d in pier["dialogue"]] == [(True, 1), (True, 1), (False, None),
                                                                        (False, None)]
    assert pier["transition"] == "CUT TO:"
    assert [e["text"] for e in pier["elements"] if e["type"] == "transition"] == ["FADE TO:", "CUT TO:"]


def test_centered_text_page_breaks_and_forced_headings() -> None:
    last = scenes(SCRIPT)[-1]
    assert last["elements"] == [{"type": "centered", "text": "THE END", "words": 2,
                                 "estimated_seconds": pytest.approx(2 / 110 * 60, abs=0.01)}]
    assert scenes(SCRIPT)[3]["action_lines"] == ["Years ago."]


def test_emphasis_is_stripped_but_escapes_are_kept() -> None:
    assert strip_emphasis("*italic* **bold** ***both*** _under_") == "italic bold both under"
    assert strip_emphasis("*a **b** c*") == "a b c"
    assert strip_emphasis(r"5 \* 3 and snake_case_name") == "5 * 3 and snake_case_name"
    assert strip_emphasis("a * b * c") == "a * b * c"


def test_durations() -> None:
    pace = Pace(words_per_minute=120, action_words_per_minute=60, line_pause_s=0.5, min_scene_seconds=4)
    text = ("INT. ROOM - DAY\n\nOne two three four five six.\n\nANNA\nOne two three four.\n\n"
            "BOB\nOne two.\n\nCAROL ^\nOne two three four five six.\n\nEXT. YARD - DAY\n\nGo.\n")
    doc = breakdown(parse_fountain(text), pace=pace, rates={"ANNA": 2.0})
    room, yard = doc["scenes"]
    action = 6 / 60 * 60  # 6 s
    anna = 4 / 240 * 60 + 0.5  # Anna speaks twice as fast
    bob = 2 / 120 * 60 + 0.5
    carol = 6 / 120 * 60 + 0.5  # heard together with Bob's line: the longer half counts
    assert room["dialogue"][0]["estimated_seconds"] == pytest.approx(anna)
    assert room["estimated_seconds"] == pytest.approx(action + anna + max(bob, carol), abs=0.02)
    assert yard["estimated_seconds"] == 4  # the minimum per scene
    assert doc["totals"]["estimated_seconds"] == pytest.approx(room["estimated_seconds"] + 4)
    assert doc["totals"]["dialogue_lines"] == 3 and doc["totals"]["scenes"] == 2


def test_characters_are_counted_per_scene() -> None:
    doc = breakdown(parse_fountain(SCRIPT))
    by_name = {c["name"]: c for c in doc["characters"]}
    assert by_name["ANNA"]["lines"] == 2 and by_name["ANNA"]["scenes"] == [0]
    assert set(by_name) == {"ANNA", "TOM", "BRICK", "STEEL", "McCLANE", "HANS"}


def test_canonical_names_and_backgrounds() -> None:
    doc = breakdown(parse_fountain(SCRIPT), canonical={"ANNA": "Anna"},
                    backgrounds=[{"name": "Pier", "asset_id": "b1"}, {"name": "city", "asset_id": "b2"}])
    assert doc["scenes"][0]["dialogue"][0]["character"] == "Anna"
    assert [s["background"] for s in doc["scenes"]] == [None, {"name": "Pier", "asset_id": "b1"}, None, None,
                                                        {"name": "city", "asset_id": "b2"}]


def test_scene_text_is_described_for_images() -> None:
    first = scenes(SCRIPT)[0]
    assert first["description"].startswith("Rain hammers the glass.")
    assert first["image_prompt"].startswith("Interior, lighthouse, night. Rain hammers the glass.")
    assert "Characters: ANNA, TOM." in first["image_prompt"]


def test_mood_from_the_scenes_words() -> None:
    tense = scenes("EXT. STREET - NIGHT\n\nShots. They run from the gun. Panic.\n")[0]
    calm = scenes("EXT. MEADOW - DAY\n\nA gentle breeze. All is quiet and peaceful.\n")[0]
    plain = scenes("INT. OFFICE - DAY\n\nA desk.\n")[0]
    assert (tense["mood"], calm["mood"], plain["mood"]) == ("tense", "calm", None)
    assert tense["mood_source"] == "keywords"


def test_detection() -> None:
    assert detect_format(SCRIPT) == "fountain"
    assert detect_format("INT. ROOM - DAY\n\nA door.") == "fountain"
    assert detect_format("ANNA\nHello.\n\nBOB\nHi.\n") == "fountain"
    assert detect_format("[[a note]]\nsomething") == "fountain"
    assert detect_format("Anna walked in. \"Hello,\" she said.\n\nBob waved.") == "prose"
    assert detect_format("Interior design was her passion.\n\nExternal factors aside, she stayed.") == "prose"
    assert parse("ANNA\nHello.\n\nBOB\nHi.\n").format == "fountain"
    assert parse("ANNA\nHello.\n\nBOB\nHi.\n", "prose").format == "prose"


def test_a_script_without_headings_is_one_scene() -> None:
    doc = breakdown(parse_fountain("ANNA\nHello.\n\nBOB\nHi there.\n"))
    assert len(doc["scenes"]) == 1 and doc["scenes"][0]["heading"] is None
    assert [d["character"] for d in doc["scenes"][0]["dialogue"]] == ["ANNA", "BOB"]


def test_windows_line_endings_and_tabs() -> None:
    doc = breakdown(parse_fountain("INT. ROOM - DAY\r\n\r\n\tA door opens.\r\n\r\nANNA\r\nHello.\r\n"))
    assert doc["scenes"][0]["action_lines"] == ["A door opens."]
    assert doc["scenes"][0]["dialogue"][0]["text"] == "Hello."


def test_hostile_input_parses_quickly() -> None:
    import time

    samples = ["*" * 20000, "_" * 20000, "[[" * 10000, "/*" * 10000, '"' * 20000, "(" * 20000,
               ("ANNA\n" * 5000), ("INT. X - DAY\n\n" * 3000), "a " * 50000, "\n" * 50000,
               "*a " * 10000 + "b*", "Anna said, " * 5000]
    for text in samples:
        start = time.monotonic()
        breakdown(parse(text))
        assert time.monotonic() - start < 5, text[:40]


def test_the_api_offers_the_parsers_moods() -> None:
    from typing import get_args

    from reelforge.apps.film.routes import Mood
    from reelforge.apps.film.script import MOODS

    assert get_args(Mood) == MOODS
