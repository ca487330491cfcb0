"""Video understanding on generated videos: real OCR, speech, embeddings, validation and clustering.

The default run analyses a small corpus (2 trends x 2 videos + 2 noise videos); the corpus-wide checks
(clustering ARI, precision at 5 of similar search) are marked slow.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from reelforge.adapters.models.registry import build_default_registry
from reelforge.apps.mobs.models import (
    TASK_EMBED,
    TASK_PARTICIPATION,
    VideoAnalysisRequest,
    fit_projection,
    validate_scores,
    video_understanding_adapters,
)
from reelforge.config import Settings
from tests.fixtures.mob_corpus import CorpusVideo, make_corpus, tts_available

pytestmark = pytest.mark.skipif(tts_available() is not None, reason=str(tts_available()))


def _words(text: str) -> set[str]:
    return set(re.findall(r"[a-z]+", text.casefold()))


class Analysed:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        adapters = {(a.task, a.name): a for a in video_understanding_adapters(settings)}
        self.participation: Any = adapters[(TASK_PARTICIPATION, "local")]
        self.embed: Any = adapters[(TASK_EMBED, "local")]
        self.results: dict[Path, Any] = {}

    def analyse(self, v: CorpusVideo) -> tuple[Any, Any, Any]:
        if v.path not in self.results:
            req = VideoAnalysisRequest(v.path, v.caption)
            p = self.participation.run(req)
            e = self.embed.run(req)
            self.results[v.path] = (p, e, validate_scores(p, self.settings))
        return self.results[v.path]  # type: ignore[no-any-return]


@pytest.fixture(scope="module")
def small(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[list[CorpusVideo], Analysed]]:
    root = tmp_path_factory.mktemp("mobs-small")
    corpus = make_corpus(root / "videos", trends=2, per_trend=2, noise=2, seed=3)
    yield corpus, Analysed(Settings(data_dir=root / "data"))


def test_one_real_video_through_ocr_speech_embedding_and_validation(small: Any) -> None:
    corpus, an = small
    v = corpus[0]
    p, e, val = an.analyse(v)
    # OCR reads the drawn text.
    assert _words(v.text) <= _words(" ".join(p.ocr_text)), p.ocr_text
    # The transcript holds the spoken phrase, with word timings inside the clip.
    spoken = _words(v.phrase)
    assert len(spoken & _words(p.transcript)) >= len(spoken) - 1, p.transcript
    assert p.words and all(0.0 <= w["start"] <= w["end"] <= 3.2 for w in p.words)
    assert v.expected_hashtag in p.hashtags
    assert set(_words(v.text)) & set(p.terms)
    assert {"motion", "scene_cuts", "subject_presence"} <= set(p.activity)
    assert 0.0 < p.score <= 1.0 and set(p.components) >= {"text_overlay", "speech", "hashtags", "motion"}
    # The embedding: fixed size, unit norm, named by the projection version.
    assert e.vector.shape == (256,) and e.vector.dtype == np.float32
    assert abs(float(np.linalg.norm(e.vector)) - 1.0) < 1e-5
    assert e.model_version == "rp-0-256" and (e.frame_dim, e.text_dim) == (1280, 384)
    assert val.status == "validated", val.reasons


def test_embedding_is_deterministic_across_fresh_adapters(small: Any, tmp_path: Path) -> None:
    corpus, an = small
    v = corpus[1]
    _, e1, _ = an.analyse(v)
    fresh = Analysed(Settings(data_dir=tmp_path))  # new cache: the file is decoded, read and heard again
    e2 = fresh.embed.run(VideoAnalysisRequest(v.path, v.caption))
    assert e2.model_version == e1.model_version
    assert np.allclose(e1.vector, e2.vector, atol=1e-5)


def test_noise_videos_are_rejected_with_reasons(small: Any) -> None:
    corpus, an = small
    for v in (c for c in corpus if c.trend is None):
        p, e, val = an.analyse(v)
        assert val.status == "rejected", (v.kind, val)
        assert p.ocr_text == [] and p.transcript == "" and p.hashtags == []
        assert any("no on-screen text" in r for r in val.reasons)
        assert e.vector.shape == (256,)  # computed all the same; the application keeps it out of feed and search
    flat = next(c for c in corpus if c.kind == "flat")
    assert any("no audio stream" in n for n in an.analyse(flat)[0].notes)


def test_same_trend_videos_are_closer_than_other_trends(small: Any) -> None:
    corpus, an = small
    trend_videos = [v for v in corpus if v.trend]
    vecs = np.stack([an.analyse(v)[1].vector for v in trend_videos])
    labels = [v.trend for v in trend_videos]
    sims = vecs @ vecs.T
    same = [sims[i, j] for i in range(len(labels)) for j in range(i) if labels[i] == labels[j]]
    cross = [sims[i, j] for i in range(len(labels)) for j in range(i) if labels[i] != labels[j]]
    assert min(same) > max(cross), (same, cross)


def test_registry_lists_local_and_bedrock_adapters(tmp_path: Path) -> None:
    registry = build_default_registry(Settings(data_dir=tmp_path))
    for task in (TASK_PARTICIPATION, TASK_EMBED):
        names = {m.name: m for m in registry.list(task)}
        assert set(names) >= {"local", "bedrock"}
        assert names["local"].available, names["local"].reason
    embed_bedrock = registry.info(TASK_EMBED, "bedrock")
    assert not embed_bedrock.available and "bucket" in (embed_bedrock.reason or "")


# Corpus-wide ---------------------------------------------------------------------------------------------


def _precision_at_k(vecs: np.ndarray, labels: list[str], k: int = 5) -> float:
    sims = vecs @ vecs.T
    np.fill_diagonal(sims, -np.inf)
    hits = [sum(labels[j] == labels[i] for j in np.argsort(-sims[i])[:k]) / k for i in range(len(labels))]
    return float(np.mean(hits))


@pytest.mark.slow
def test_corpus_clusters_into_trends_and_search_finds_same_trend(tmp_path: Path) -> None:
    from sklearn.cluster import AgglomerativeClustering
    from sklearn.metrics import adjusted_rand_score

    corpus = make_corpus(tmp_path / "videos", trends=3, per_trend=6, noise=3, seed=11)
    an = Analysed(Settings(data_dir=tmp_path / "data"))
    kept: list[CorpusVideo] = []
    raws: list[np.ndarray] = []
    vecs: list[np.ndarray] = []
    for v in corpus:
        _, e, val = an.analyse(v)
        assert (val.status == "validated") == (v.trend is not None), (v.path.name, val.reasons)
        if val.status == "validated":  # rejected videos never reach feed, search or clustering
            kept.append(v)
            vecs.append(e.vector)
            raws.append(an.embed.raw_features(VideoAnalysisRequest(v.path, v.caption)))
    labels = [str(v.trend) for v in kept]
    X = np.stack(vecs)
    pred = AgglomerativeClustering(n_clusters=3, metric="cosine", linkage="average").fit_predict(X)
    assert adjusted_rand_score(labels, pred) >= 0.8
    assert _precision_at_k(X, labels) >= 0.8
    # Refit the projection on the stored raw features and re-project: still clusters, new version.
    proj = fit_projection(np.stack(raws), 256)
    Y = proj.project(np.stack(raws))
    assert proj.version.startswith("pca-256-")
    pred2 = AgglomerativeClustering(n_clusters=3, metric="cosine", linkage="average").fit_predict(Y)
    assert adjusted_rand_score(labels, pred2) >= 0.8
    assert _precision_at_k(Y, labels) >= 0.8
