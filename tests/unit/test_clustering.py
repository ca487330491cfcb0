"""Mob clustering on synthetic vectors: k choice, ARI, stable ids, splits and merges, centroid arithmetic."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.metrics import adjusted_rand_score

from reelforge.apps.mobs import clustering as cl


def blobs(k: int, per: int, dim: int = 32, spread: float = 0.15, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    centers = rng.normal(size=(k, dim))
    x = np.vstack([c + spread * rng.normal(size=(per, dim)) * np.linalg.norm(c) / np.sqrt(dim) for c in centers])
    return x, np.repeat(np.arange(k), per)


@pytest.mark.parametrize("k", [2, 3, 5])
def test_choose_k_recovers_the_groups(k: int) -> None:
    x, truth = blobs(k, 8, seed=k)
    choice = cl.choose_k(x, k_min=2, k_max=8, seed=0)
    assert choice.k == k, choice.scores
    assert adjusted_rand_score(truth, choice.labels) >= 0.8
    assert choice.score is not None and choice.score == max(choice.scores.values())
    assert "silhouette" in choice.criterion


def test_choose_k_without_structure_is_one_group() -> None:
    rng = np.random.default_rng(1)
    x = rng.normal(size=(30, 64))
    choice = cl.choose_k(x, k_min=2, k_max=6, min_silhouette=0.2)
    assert choice.k == 1 and set(choice.labels.tolist()) == {0}
    assert cl.choose_k(x[:2]).k == 1 and cl.choose_k(x[:0]).k == 0


def test_centroid_add_and_remove_match_the_mean() -> None:
    rng = np.random.default_rng(2)
    vs = rng.normal(size=(6, 16))
    c, n = None, 0
    for v in vs:
        c = cl.add_to_centroid(c, n, v)
        n += 1
    assert np.allclose(c, vs.mean(axis=0))
    c2 = cl.remove_from_centroid(c, n, vs[2])
    assert c2 is not None and np.allclose(c2, np.delete(vs, 2, axis=0).mean(axis=0))
    assert cl.remove_from_centroid(vs[0], 1, vs[0]) is None


def test_nearest_and_distance() -> None:
    a, b = np.array([1.0, 0, 0]), np.array([0, 1.0, 0])
    assert cl.cosine_distance(a, a) == pytest.approx(0.0)
    assert cl.cosine_distance(a, b) == pytest.approx(1.0)
    assert cl.nearest(np.array([0.9, 0.1, 0]), [("a", a), ("b", b)])[0] == "a"
    assert cl.nearest(a, []) is None


def test_ids_are_stable_when_clusters_are_relabelled() -> None:
    old = {"m1": {"a", "b", "c"}, "m2": {"d", "e", "f"}}
    plan = cl.match_clusters([{"d", "e", "f"}, {"a", "b", "c"}], old)
    assert plan.ids == ["m2", "m1"] and not plan.splits and not plan.merges and not plan.created


def test_split_and_merge_are_recorded() -> None:
    # m1 splits in two: one half keeps m1, the other is a new mob recorded as a split of m1.
    plan = cl.match_clusters([{"a", "b", "c"}, {"d", "e"}, {"x", "y"}],
                             {"m1": {"a", "b", "c", "d", "e"}, "m2": {"x", "y"}})
    assert plan.ids == ["m1", None, "m2"]
    assert plan.splits == [(1, "m1", 2)]
    # m1 and m2 become one cluster: the larger overlap keeps its id, the other is merged into it.
    plan = cl.match_clusters([{"a", "b", "c", "x", "y"}], {"m1": {"a", "b", "c"}, "m2": {"x", "y"}})
    assert plan.ids == ["m1"] and plan.merges == [("m2", 0, 2)]
    # a cluster of videos no mob had is simply created; a mob whose members all left is emptied.
    plan = cl.match_clusters([{"q"}], {"m9": {"z"}})
    assert plan.ids == [None] and plan.created == [0] and plan.emptied == ["m9"]


def test_recluster_twice_keeps_ids_end_to_end() -> None:
    x, _truth = blobs(3, 6, seed=7)
    ids = [f"v{i}" for i in range(len(x))]
    first = cl.choose_k(x, seed=0)
    sets1 = [{ids[i] for i in range(len(ids)) if first.labels[i] == c} for c in range(first.k)]
    plan1 = cl.match_clusters(sets1, {})
    names = [f"mob{i}" for i in range(first.k)]
    assert plan1.created == list(range(first.k))
    old = {names[c]: s for c, s in enumerate(sets1)}
    second = cl.choose_k(x[::-1].copy(), seed=3)  # other order, other seed: same groups
    rev = ids[::-1]
    sets2 = [{rev[i] for i in range(len(rev)) if second.labels[i] == c} for c in range(second.k)]
    plan2 = cl.match_clusters(sets2, old)
    assert sorted(i for i in plan2.ids if i) == sorted(names)
    for c, mob in enumerate(plan2.ids):
        assert sets2[c] == old[mob]


def test_terms_and_names() -> None:
    a = {"hashtags": ["Dance"], "terms": ["dance", "studio", "music"]}
    assert cl.terms_of(a) == ["#dance", "studio", "music"]
    counts = cl.term_counts([["#dance", "studio"], ["#dance", "music"], ["#dance", "studio"]])
    top = cl.top_terms(counts, n=3)
    assert top[0] == "#dance" and top[1] == "studio"
    # a term shared by every mob ranks below one particular to this mob
    df = {"#dance": 1, "studio": 3, "music": 1}
    assert cl.top_terms({"studio": 3, "music": 2}, df=df, groups=3)[0] == "music"
    assert cl.mob_name(["#dance", "studio", "x"], 2) == "#dance · studio"
    assert cl.mob_name([]) == "unnamed"
