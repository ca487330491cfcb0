"""Video understanding quality on the project's own corpus (tests/integration/test_mobs_corpus.py's: 3 trends x
6 clips of 3 s, plus 2 noise clips), with 2 hashtag-spam clips: each clip is analysed once per module by the
local models (the adapters the worker runs), then

- the online mob assignment is replayed over a family of arrival orders and must keep the adjusted Rand index
  >= 0.95 in every one: the trends in sequence, round-robin interleaved, each trend's outliers first
  (interleaved and in sequence), boundary clips (closest to another trend) first, and 20 random permutations
  with fixed seeds (bench/mobs_quality.py runs the same family with more random orders);
- validation ranks: trend clips get distinct scores, none exactly 1.0, all above the threshold; noise and
  spam are rejected, spam with a margin of at least 0.2 below the threshold; no face is seen on noise or spam.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
from sklearn.metrics import adjusted_rand_score

pytestmark = [pytest.mark.timeout(900)]


@pytest.fixture(scope="module")
def analysed(tmp_path_factory: pytest.TempPathFactory) -> tuple[list[Any], Any]:
    from tests.fixtures.mob_corpus import tts_available

    reason = tts_available()
    if reason:
        pytest.skip(reason)
    from reelforge.apps.mobs.models import video_understanding_adapters
    from reelforge.config import Settings

    tmp = tmp_path_factory.mktemp("mobs-quality")
    part, emb = video_understanding_adapters(Settings(data_dir=tmp / "probe"))[:2]
    missing = part.availability().reason or emb.availability().reason
    if missing:
        pytest.skip(f"local video models unavailable: {missing}")
    from tests.fixtures.mob_analysed import analyse_corpus
    from tests.fixtures.mob_corpus import make_corpus

    corpus = make_corpus(tmp / "corpus", trends=3, per_trend=6, noise=2, spam=2, seconds=3.0)
    return analyse_corpus(corpus, tmp / "var")


def test_incremental_ari_in_every_arrival_order(analysed: tuple[list[Any], Any]) -> None:
    from bench.mobs_quality import orders

    from reelforge.apps.mobs import clustering as cl

    rows, settings = analysed
    m = settings.mobs
    params = cl.OnlineParams(base=m.mob_distance_threshold, cap=m.mob_distance_cap, spread_z=m.mob_spread_z,
                             margin=m.mob_spread_margin, min_members=m.mob_spread_min_members,
                             quick_min_videos=m.quick_recluster_min_videos, quick_n_init=m.quick_recluster_n_init)
    ids = [str(i) for i, r in enumerate(rows) if r.video.trend]
    vecs = {str(i): r.vector for i, r in enumerate(rows)}
    truth = {i: rows[int(i)].video.trend for i in ids}
    family = orders(ids, truth, vecs, 20)
    assert len(family) == 25
    scores = {}
    for name, order in family.items():
        lab = cl.replay(order, vecs, params, k_min=m.recluster_k_min, k_max=m.recluster_k_max,
                        min_silhouette=m.recluster_min_silhouette)
        scores[name] = adjusted_rand_score([truth[i] for i in ids], [lab[i] for i in ids])
    assert min(scores.values()) >= 0.95, {k: round(v, 3) for k, v in scores.items() if v < 0.95}


def test_validation_ranks_and_rejects_spam_with_margin(analysed: tuple[list[Any], Any]) -> None:
    from reelforge.apps.mobs.models import validate_scores
    from reelforge.apps.mobs.ports import ParticipationResult

    rows, settings = analysed
    threshold = settings.mobs.validation_threshold

    def score(a: dict[str, Any]) -> Any:
        data = {k: a[k] for k in ParticipationResult.__dataclass_fields__ if k in a}
        data["notes"] = tuple(data.get("notes") or ())
        return validate_scores(ParticipationResult(**data), settings)

    trend = [score(r.analysis) for r in rows if r.video.kind == "trend"]
    assert all(r.status == "validated" for r in trend), [r.reasons for r in trend if r.status != "validated"]
    values = [r.score for r in trend]
    assert max(values) < 1.0 and len(set(values)) >= len(values) - 2, values
    assert float(np.std(values)) > 0.02, values
    for r in rows:
        if r.video.kind in ("flat", "noise", "spam"):
            v = score(r.analysis)
            assert v.status == "rejected", (r.video.kind, v.reasons)
            assert r.analysis["activity"]["faces"] == 0 and r.analysis["activity"]["subject_presence"] == 0
            if r.video.kind == "spam":
                assert r.analysis["hashtags"], r.analysis  # the spam's trending hashtags were read
                assert v.score < threshold - 0.2, v.reasons
                assert v.components["hashtags"] == 0.0, v.reasons


def test_ocr_and_speech_recall(analysed: tuple[list[Any], Any]) -> None:
    from bench.mobs_quality import token_recall

    rows, _ = analysed
    ocr = [token_recall(r.video.text, " ".join(r.analysis["ocr_text"])) for r in rows if r.video.kind == "trend"]
    asr = [token_recall(r.video.phrase, r.analysis["transcript"]) for r in rows if r.video.kind == "trend"]
    assert sum(h for h, _ in ocr) / sum(n for _, n in ocr) >= 0.9
    assert sum(h for h, _ in asr) / sum(n for _, n in asr) >= 0.8

