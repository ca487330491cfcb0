"""The prose parser: scenes from paragraphs and scene-change cues, dialogue from quotations and their
attribution, places and times from the narration."""

from __future__ import annotations

from typing import Any

from reelforge.apps.film.script import breakdown, parse_prose

STORY = """Anna stood in the old kitchen of the lighthouse, watching the storm through the window. It was almost
midnight.

"He should be back by now," said Anna, twisting her ring.

Tom shook his head. "The sea is too rough."

"You always say that," she replied softly.

"Because it's always true."

* * *

The next morning, the beach was quiet. Gulls circled above the wreck.

Anna asked, "Is that his boat?"

"I'm afraid so," Tom said. "I'm sorry."
"""


def lines(scene: dict[str, Any]) -> list[tuple[str | None, str, str | None]]:
    return [(d["character"], d["text"], d["parenthetical"]) for d in scene["dialogue"]]


def test_scenes_dialogue_and_attribution() -> None:
    doc = breakdown(parse_prose(STORY))
    assert doc["format"] == "prose"
    kitchen, beach = doc["scenes"]
    assert lines(kitchen) == [
        ("Anna", "He should be back by now.", "twisting her ring"),  # "..., said Anna, twisting ..."
        ("Tom", "The sea is too rough.", None),  # an action beat names the speaker
        ("Anna", "You always say that.", "softly"),  # a pronoun: the other one of the conversation
        ("Tom", "Because it's always true.", None),  # unattributed: by turns
    ]
    assert kitchen["action_lines"][0].startswith("Anna stood in the old kitchen of the lighthouse")
    assert "Tom shook his head." in kitchen["action_lines"]
    assert not any("said" in a or "replied" in a for a in kitchen["action_lines"])
    assert (kitchen["location"], kitchen["time_of_day"], kitchen["heading"]) == ("OLD KITCHEN", "night",
                                                                                 "OLD KITCHEN - NIGHT")
    assert lines(beach) == [("Anna", "Is that his boat?", None), ("Tom", "I'm afraid so.", None),
                            ("Tom", "I'm sorry.", None)]
    assert (beach["location"], beach["time_of_day"]) == ("BEACH", "morning")
    assert all(d["attributed"] for s in doc["scenes"] for d in s["dialogue"])
    assert [c["name"] for c in doc["characters"]] == ["Tom", "Anna"]


def test_scene_change_cues() -> None:
    text = ("Anna walked into the station.\n\n\"Late again,\" said Anna.\n\n"
            "Later that night, Tom sat in the bar.\n\n\"Another,\" Tom said.\n\n"
            "Meanwhile, across the river, the lights went out.\n\n"
            "Chapter 2\n\nThree days later, the harbour was busy.\n\n---\n\nThe end came quietly.")
    doc = breakdown(parse_prose(text))
    assert [s["action_lines"][0][:20] for s in doc["scenes"]] == [
        "Anna walked into the", "Later that night, To", "Meanwhile, across th", "Three days later, th",
        "The end came quietly"]
    assert doc["scenes"][3]["section"] == "Chapter 2"
    assert [s["location"] for s in doc["scenes"]][:2] == ["STATION", "BAR"]


def test_without_cues_narration_starts_scenes_outside_conversations() -> None:
    text = ("The market was loud.\n\n\"Fresh fish!\" cried Marta.\n\n"
            "A boy ran past.\n\n\"Stop him!\" Marta shouted.\n\n"
            "Far away, in the mountains, snow fell on the village.")
    doc = breakdown(parse_prose(text))
    assert len(doc["scenes"]) == 2  # the boy runs past within the conversation
    assert lines(doc["scenes"][0]) == [("Marta", "Fresh fish!", None), ("Marta", "Stop him!", None)]
    assert doc["scenes"][1]["location"] == "MOUNTAINS"


def test_quotation_styles_and_attribution_forms() -> None:
    text = ("“Where to?” asked the driver. Nobody answered.\n\n"
            "Mr. Grey said, “The harbour.”\n\n"
            "«Vite!» cria Jean.\n\n"
            "Anna: \"Wait for me.\"\n\n"
            "\"Go,\" Dr. Lee whispered urgently, glancing at the door. \"Now.\"")
    doc = breakdown(parse_prose(text))
    got = [(d["character"], d["text"], d["parenthetical"]) for s in doc["scenes"] for d in s["dialogue"]]
    assert got == [
        (None, "Where to?", None),  # "the driver" is no name
        ("Mr. Grey", "The harbour.", None),
        (None, "Vite!", None),
        ("Anna", "Wait for me.", None),
        ("Dr. Lee", "Go.", "glancing at the door"),
        ("Dr. Lee", "Now.", None),
    ]
    unattributed = [d for s in doc["scenes"] for d in s["dialogue"] if d["character"] is None]
    assert all(d["attributed"] is False for d in unattributed)


def test_known_characters_are_found_in_action_beats() -> None:
    text = "Grandma Rose smiled at the children. \"Sit down.\""
    assert lines(breakdown(parse_prose(text))["scenes"][0]) == [(None, "Sit down.", None)]
    doc = breakdown(parse_prose(text, characters=["Grandma Rose"]))
    assert lines(doc["scenes"][0]) == [("Grandma Rose", "Sit down.", None)]


def test_canonical_names_and_rates_apply_to_prose() -> None:
    text = "\"Hello there, old friend,\" said Annie."
    doc = breakdown(parse_prose(text), canonical={"ANNIE": "Anna"}, rates={"ANNA": 0.5})
    line = doc["scenes"][0]["dialogue"][0]
    assert line["character"] == "Anna"
    assert abs(line["estimated_seconds"] - (4 / 75 * 60 + 0.3)) < 0.01


def test_emphasis_and_sentence_openers() -> None:
    text = "She looked up. Then Anna said, \"*Never* again.\""
    doc = breakdown(parse_prose(text))
    assert lines(doc["scenes"][0]) == [("Anna", "Never again.", None)]
    assert doc["scenes"][0]["action_lines"] == ["She looked up."]


def test_months_and_names_are_not_places() -> None:
    text = "In March, Anna met Tom in Paris."
    scene = breakdown(parse_prose(text))["scenes"][0]
    assert scene["location"] == "PARIS"
