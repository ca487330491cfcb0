"""Online mob assignment that stays whole as mobs grow (adaptive thresholds, merge check, quick re-cluster),
stable mob names, the refit's sample requirement and face detection that fails closed on textures."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
from sklearn.metrics import adjusted_rand_score

from reelforge.apps.mobs import clustering as cl

FIXED = cl.OnlineParams.fixed(0.35)
NOW = cl.OnlineParams()


def _at(centre: np.ndarray, d: float, rng: np.random.Generator) -> np.ndarray:
    """A unit vector at cosine distance d from the unit vector `centre`."""
    r = rng.standard_normal(centre.shape)
    r -= r.dot(centre) * centre
    r /= np.linalg.norm(r)
    cos = 1.0 - d
    return cos * centre + np.sqrt(max(0.0, 1 - cos * cos)) * r


def _trends(n_trends: int, per: int, amplitudes: list[float], seed: int = 0) -> tuple[dict[str, np.ndarray],
                                                                                         dict[str, int]]:
    """Trends whose clips vary along two directions of their own (pan, zoom, colour ...) by up to the given
    amplitude, plus a little noise: clips of one trend lie up to about 0.25 from its centre and up to 0.45
    from each other; unrelated trends are orthogonal."""
    rng = np.random.default_rng(seed)
    dim = 64
    q = np.linalg.qr(rng.standard_normal((dim, 3 * n_trends)))[0].T
    vecs, truth = {}, {}
    for t in range(n_trends):
        c, ax1, ax2 = q[3 * t], q[3 * t + 1], q[3 * t + 2]
        for i in range(per):
            a, b = rng.uniform(-1, 1, 2) * amplitudes[t]
            vid = f"t{t}v{i}"
            vecs[vid] = cl.unit(c + a * ax1 + b * ax2 + 0.05 * rng.standard_normal(dim))
            truth[vid] = t
    return vecs, truth


def test_a_loose_mob_takes_a_clip_just_past_the_base_threshold() -> None:
    rng = np.random.default_rng(1)
    centre = cl.unit(rng.standard_normal(32))
    members = [_at(centre, d, rng) for d in (0.25, 0.3, 0.28, 0.33, 0.27, 0.31)]
    c = cl.centroid(members)
    assert c is not None
    t = cl.join_threshold(c, members, NOW)
    assert 0.35 < t <= NOW.cap
    assert cl.join_threshold(c, members[:2], NOW) == NOW.base  # young mobs keep the base threshold
    tight = [_at(centre, 0.05, rng) for _ in range(6)]
    tc = cl.centroid(tight)
    assert tc is not None and cl.join_threshold(tc, tight, NOW) == NOW.base


def test_merge_check_folds_adjacent_mobs() -> None:
    rng = np.random.default_rng(2)
    centre = cl.unit(rng.standard_normal(32))
    a = [_at(centre, 0.2, rng) for _ in range(5)]
    b = [_at(centre, 0.2, rng) for _ in range(1)]
    ca, cb = cl.centroid(a), cl.centroid(b)
    assert ca is not None and cb is not None
    mobs = {"a": (ca, a), "b": (cb, b)}
    assert cl.merge_pairs(mobs, "b", NOW) == "a"
    assert cl.merge_pairs(mobs, "b", FIXED) is None
    far = cl.unit(rng.standard_normal(32))
    assert cl.merge_pairs({"a": (ca, a), "c": (far, [far])}, "c", NOW) is None


def _orders(ids: list[str], truth: dict[str, int], n_random: int) -> list[list[str]]:
    groups: dict[int, list[str]] = {}
    for i in ids:
        groups.setdefault(truth[i], []).append(i)
    out = [ids, [i for z in itertools.zip_longest(*groups.values()) for i in z if i]]
    rng = np.random.default_rng(0)
    out += [[ids[j] for j in rng.permutation(len(ids))] for _ in range(n_random)]
    return out


def test_loose_trends_stay_whole_more_often_than_with_a_fixed_threshold() -> None:
    """Loose trends (an outside corpus's spread): the fixed 0.35 rule splits them into duplicate mobs in
    some orders (worst ARI 0.70 here); the current rule keeps worst ARI >= 0.9 over the same orders. (On the
    project's own corpora both reach 1.0: tests/integration/test_mobs_quality.py, bench/mobs_quality.py.)"""
    vecs, truth = _trends(4, 6, [0.9, 0.8, 0.6, 0.4])
    ids = list(vecs)
    worst = {"fixed": 1.0, "now": 1.0}
    for order in _orders(ids, truth, 8):
        for name, params in (("fixed", FIXED), ("now", NOW)):
            lab = cl.replay(order, vecs, params)
            worst[name] = min(worst[name], adjusted_rand_score([truth[i] for i in ids], [lab[i] for i in ids]))
    assert worst["now"] >= 0.9 and worst["fixed"] < 0.75, worst


def test_replay_counts_merges_and_quick_reclusters() -> None:
    vecs, truth = _trends(3, 5, [0.5, 0.5, 0.5], seed=4)
    state = cl.OnlineState(NOW)
    for vid in vecs:
        state.add(vid, vecs[vid])
    assert state.quick_runs >= 1 and state.quick_skipped >= 1 and state.merges >= 1
    assert adjusted_rand_score([truth[i] for i in vecs], [state.label[i] for i in vecs]) >= 0.95


def test_names_stay_while_their_terms_stay_in_the_top_set() -> None:
    old = "#latteartspeedrun · art"
    top = ["art", "latte", "#latteartspeedrun", "speed", "run"]
    assert cl.stable_name(old, top) == old  # one more upload reordered the terms: same name
    assert cl.mob_name(top) == "art · latte"  # what the name became before
    shifted = ["#moonwalk", "moon", "walk", "night"]
    assert cl.stable_name(old, shifted) == "#moonwalk · moon"  # the content really shifted
    assert cl.stable_name(None, ["studio", "#dance", "moves"]) == "#dance · studio"  # hashtags first
    assert cl.stable_name("unnamed", []) == "unnamed"


def test_refit_needs_enough_samples_for_the_dimension() -> None:
    due, why = cl.refit_due(20, min_videos=20, kind="rp", n_fit=0, dim=256, samples_per_dim=2.0)
    assert not due and "512" in why
    assert cl.refit_due(512, min_videos=20, kind="rp", n_fit=0, dim=256, samples_per_dim=2.0)[0]
    assert cl.refit_due(20, min_videos=20, kind="rp", n_fit=0, dim=256, samples_per_dim=0.0)[0]


def test_face_detection_fails_closed_on_textures() -> None:
    pytest.importorskip("skimage")
    from PIL import Image

    from reelforge.apps.mobs.models import activity

    rng = np.random.default_rng(0)
    for _ in range(3):
        small = rng.integers(0, 256, (60, 80, 3), dtype=np.uint8)
        texture = np.asarray(Image.fromarray(small).resize((320, 240), Image.Resampling.BILINEAR))
        assert activity._coherence(texture) > 0.6  # smooth up close: the old pixel test alone let it through
        assert activity._structure(texture) < 0.6
        assert activity._faces(texture) == 0
    import skimage.data

    face = np.asarray(Image.fromarray(skimage.data.astronaut()).resize((320, 320)))
    assert activity._faces(face) >= 1  # a real face is still found


def test_quick_recluster_only_puts_together_what_the_online_rules_would() -> None:
    rng = np.random.default_rng(4)
    a, b = cl.unit(rng.standard_normal(32)), cl.unit(rng.standard_normal(32))  # unrelated: ~1 apart
    vectors = {"1": a, "2": _at(a, 0.05, rng), "3": _at(a, 0.05, rng), "4": b, "5": _at(b, 0.05, rng),
               "6": _at(b, 0.05, rng), "7": _at(a, 0.2, rng), "8": _at(b, 0.3, rng)}
    old = {"a": {"1", "2", "3"}, "b": {"4", "5", "6"}, "c": {"7"}, "d": {"8"}}
    new = [{"1", "2", "3", "7"}, {"4", "5", "6", "8"}]
    assert cl.quick_plan_ok(cl.match_clusters(new, old), new, old, vectors, NOW)  # young duplicates fold in
    together = [{"1", "2", "3", "4", "5", "6"}, {"7", "8"}]
    assert not cl.quick_plan_ok(cl.match_clusters(together, old), together, old, vectors, NOW)
    singles = {"c": {"7"}, "d": {"8"}}
    pair = [{"7", "8"}]  # two unrelated single clips paired by k-means
    assert not cl.quick_plan_ok(cl.match_clusters(pair, singles), pair, singles, vectors, NOW)
