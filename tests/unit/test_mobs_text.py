"""Hashtags, mentions and top terms from caption, on-screen text and transcript."""

from __future__ import annotations

from reelforge.apps.mobs.models.text import hashtags, mentions, terms


def test_hashtags_from_caption_and_ocr_in_order_lowercase_deduplicated() -> None:
    assert hashtags("Trying #CoffeeArt today #fyp", "COFFEE ART\n#coffeeart #Latte") == ["coffeeart", "fyp", "latte"]


def test_hashtag_rules_ignore_numbers_inside_words_and_single_letters() -> None:
    assert hashtags("issue#12 and # alone and #a and ##double and #ok_2") == ["ok_2"]


def test_spoken_hashtags_are_joined() -> None:
    assert hashtags("", spoken="follow along, hashtag coffee art, see you") == ["coffeeart"]
    assert hashtags("", spoken="Hashtag rocket.") == ["rocket"]


def test_mentions() -> None:
    assert mentions("with @Friend2 and @friend2, mail a@b.c", "@studio.one!") == ["friend2", "studio.one"]


def test_terms_skip_stopwords_and_count_across_sources() -> None:
    top = terms("my take on Coffee Art #coffeeart", "COFFEE ART", "Morning coffee art challenge.", top=3)
    assert top == ["coffee", "art", "take"]  # ties keep first appearance
    assert "the" not in terms("the the the cat")
