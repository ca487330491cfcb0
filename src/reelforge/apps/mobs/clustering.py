"""Mob clustering: incremental assignment, batch k-means with a stated choice of k, stable ids, names.

Pure functions on NumPy arrays and id sets (no I/O); services/mobs.py applies their plans in transactions.

- Distance is cosine distance (1 - cosine similarity) to a mob's centroid, the mean of its members' vectors.
- Incremental: a validated video joins the nearest mob of its embedding space when the distance is at most
  `mobs.mob_distance_threshold`, else it starts a new mob. Centroids move by the running-mean update
  c' = c + (v - c) / (n + 1); removing a member inverts it exactly: c' = (n c - v) / (n - 1).
- Batch: k-means (k-means++, several restarts, fixed seed) on L2-normalised vectors for every k in
  [k_min, min(k_max, n - 1)]; k is the one with the highest mean silhouette (cosine metric); ties go to the
  smaller k. When even the best silhouette is below `min_silhouette` there is no structure worth splitting
  and everything is one group.
- Projection refit (before k-means): the local embedding's projection is refitted (PCA on the stored raw
  features) once `projection_min_videos` validated local-model videos have raw features, while the current
  projection is the seeded random one or was fitted on fewer than half as many videos as now exist
  (`refit_due`). Every stored raw feature is then re-projected, mob ids and memberships stay, and centroids are
  recomputed from the new vectors, so k-means and incremental assignment work in the new space.
- Stable ids: new clusters are matched to old mobs by maximum member overlap (Hungarian algorithm,
  scipy.optimize.linear_sum_assignment); a matched cluster keeps the old mob's id. An unmatched cluster
  is a new mob, recorded as a split of the old mob most of its members came from (or as created). An old
  mob left unmatched is merged into the cluster that took most of its members.
"""

from __future__ import annotations

import itertools
import math
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

CRITERION = "silhouette(cosine), max over k in [k_min, min(k_max, n-1)]"


def unit(v: np.ndarray) -> np.ndarray:
    """v / |v| (float64); the zero vector stays zero."""
    v = np.asarray(v, dtype=np.float64)
    n = float(np.linalg.norm(v))
    return v / n if n > 0 else v


def cosine_distance(v: np.ndarray, c: np.ndarray) -> float:
    """1 - cos(v, c), in [0, 2]."""
    return float(1.0 - np.dot(unit(v), unit(c)))


def nearest(v: np.ndarray, centroids: Sequence[tuple[str, np.ndarray]]) -> tuple[str, float] | None:
    """The closest centroid's id and cosine distance, or None when there is none."""
    best: tuple[str, float] | None = None
    for mob_id, c in centroids:
        d = cosine_distance(v, c)
        if best is None or d < best[1] or (d == best[1] and mob_id < best[0]):
            best = (mob_id, d)
    return best


def add_to_centroid(c: np.ndarray | None, n: int, v: np.ndarray) -> np.ndarray:
    """Mean of n members plus v."""
    v = np.asarray(v, dtype=np.float64)
    if c is None or n <= 0:
        return v.copy()
    return np.asarray(c, dtype=np.float64) + (v - c) / (n + 1)


def remove_from_centroid(c: np.ndarray, n: int, v: np.ndarray) -> np.ndarray | None:
    """Mean of n members less v (None when v was the only one)."""
    if n <= 1:
        return None
    return (np.asarray(c, dtype=np.float64) * n - np.asarray(v, dtype=np.float64)) / (n - 1)


def refit_due(n_videos: int, *, min_videos: int, kind: str, n_fit: int, dim: int = 0,
              samples_per_dim: float = 0.0) -> tuple[bool, str]:
    """Whether to refit the projection now, and why (or why not).

    `n_videos`: validated local-model videos with raw features; `kind`/`n_fit`: the current projection's kind
    ("rp" random, "pca" fitted) and how many videos it was fitted on. A PCA to `dim` dimensions needs at least
    `samples_per_dim` x `dim` videos: on fewer it spans only the samples themselves (explained variance 1.0 on
    20 videos says nothing).
    """
    if n_videos < min_videos:
        return False, f"{n_videos} videos with raw features, fewer than {min_videos}"
    need = math.ceil(samples_per_dim * dim)
    if n_videos < need:
        return False, (f"{n_videos} videos with raw features, fewer than {need} "
                       f"({samples_per_dim:g} per dimension of {dim})")
    if kind != "pca":
        return True, f"random projection in use and {n_videos} videos (>= {min_videos})"
    if 2 * n_fit < n_videos:
        return True, f"fitted on {n_fit} videos, fewer than half of {n_videos}"
    return False, f"fitted on {n_fit} videos, at least half of {n_videos}"


def centroid(vectors: Sequence[np.ndarray]) -> np.ndarray | None:
    """The mean of the vectors (float64), None for none."""
    if not vectors:
        return None
    return np.mean(np.vstack([np.asarray(v, dtype=np.float64) for v in vectors]), axis=0)


@dataclass
class KChoice:
    labels: np.ndarray
    k: int
    score: float | None
    scores: dict[int, float] = field(default_factory=dict)
    criterion: str = CRITERION


def choose_k(x: np.ndarray, *, k_min: int = 2, k_max: int = 12, seed: int = 0,
             min_silhouette: float = 0.1, n_init: int = 10) -> KChoice:
    """k-means over the rows of x with k picked by mean silhouette (see the module docstring). Up to a few
    thousand rows, k-means runs on one thread: its OpenMP threads cost more than they give on so little data
    (and far more on a busy machine)."""
    from threadpoolctl import threadpool_limits

    if len(x) <= 4000:
        with threadpool_limits(limits=1):
            return _choose_k(x, k_min=k_min, k_max=k_max, seed=seed, min_silhouette=min_silhouette, n_init=n_init)
    return _choose_k(x, k_min=k_min, k_max=k_max, seed=seed, min_silhouette=min_silhouette, n_init=n_init)


def _choose_k(x: np.ndarray, *, k_min: int, k_max: int, seed: int, min_silhouette: float, n_init: int) -> KChoice:
    from sklearn.cluster import KMeans
    from sklearn.metrics import silhouette_score

    n = int(x.shape[0])
    if n == 0:
        return KChoice(np.zeros(0, dtype=int), 0, None)
    xn = np.vstack([unit(r) for r in x])
    hi = min(k_max, n - 1)
    if n < 3 or hi < k_min:
        return KChoice(np.zeros(n, dtype=int), 1, None)
    scores: dict[int, float] = {}
    labels_by_k: dict[int, np.ndarray] = {}
    for k in range(k_min, hi + 1):
        km = KMeans(n_clusters=k, n_init=n_init, random_state=seed)
        labels = km.fit_predict(xn)
        if len(set(labels.tolist())) < 2:
            continue
        scores[k] = float(silhouette_score(xn, labels, metric="cosine"))
        labels_by_k[k] = labels
    if not scores:
        return KChoice(np.zeros(n, dtype=int), 1, None, scores)
    best_k = max(sorted(scores), key=lambda k: (round(scores[k], 9), -k))
    if scores[best_k] < min_silhouette:
        return KChoice(np.zeros(n, dtype=int), 1, scores[best_k], scores)
    return KChoice(_relabel(labels_by_k[best_k]), best_k, scores[best_k], scores)


def _relabel(labels: np.ndarray) -> np.ndarray:
    """Labels renumbered in order of first appearance (deterministic across equivalent runs)."""
    mapping: dict[int, int] = {}
    out = np.empty_like(labels)
    for i, lab in enumerate(labels.tolist()):
        out[i] = mapping.setdefault(lab, len(mapping))
    return out


@dataclass
class MatchPlan:
    """How new clusters map onto old mobs.

    `ids[i]` is the old mob id cluster i keeps, or None for a new mob. `splits` are (cluster index, parent mob
    id, members that came from the parent); `merges` are (old mob id, cluster index it went into, members
    moved); `emptied` are old mobs that lost every member without a cluster to merge into.
    """

    ids: list[str | None]
    splits: list[tuple[int, str, int]] = field(default_factory=list)
    merges: list[tuple[str, int, int]] = field(default_factory=list)
    created: list[int] = field(default_factory=list)
    emptied: list[str] = field(default_factory=list)
    overlap: list[int] = field(default_factory=list)


def match_clusters(new: Sequence[set[str]], old: Mapping[str, set[str]]) -> MatchPlan:
    """Match new clusters (member id sets) to old mobs (id -> member ids) by maximum total overlap."""
    from scipy.optimize import linear_sum_assignment

    old_ids = sorted(old)
    ids: list[str | None] = [None] * len(new)
    overlap_of = [0] * len(new)
    if new and old_ids:
        m = np.array([[len(c & old[o]) for o in old_ids] for c in new], dtype=np.int64)
        rows, cols = linear_sum_assignment(-m)
        for r, c in zip(rows.tolist(), cols.tolist(), strict=True):
            if m[r, c] > 0:
                ids[r] = old_ids[c]
                overlap_of[r] = int(m[r, c])
    plan = MatchPlan(ids=ids, overlap=overlap_of)
    matched = {i for i in ids if i is not None}
    for i, members in enumerate(new):
        if ids[i] is not None:
            continue
        sources = Counter({o: len(members & old[o]) for o in old_ids})
        parent, moved = (sources.most_common(1)[0] if sources else (None, 0))
        if parent is not None and moved > 0:
            plan.splits.append((i, parent, int(moved)))
        else:
            plan.created.append(i)
    for o in old_ids:
        if o in matched:
            continue
        dest = Counter({i: len(old[o] & c) for i, c in enumerate(new)})
        best = dest.most_common(1)[0] if dest else (None, 0)
        if best[0] is not None and best[1] > 0:
            plan.merges.append((o, int(best[0]), int(best[1])))
        else:
            plan.emptied.append(o)
    return plan


def terms_of(analysis: Mapping[str, Any] | None) -> list[str]:
    """The distinct terms a video contributes to its mob's name: hashtags (as #tag), then analysis terms."""
    if not analysis:
        return []
    out: list[str] = []
    for h in analysis.get("hashtags") or []:
        t = "#" + str(h).lstrip("#").lower()
        if len(t) > 1 and t not in out:
            out.append(t)
    for t in analysis.get("terms") or []:
        t = str(t).lower().strip()
        if t and t not in out and ("#" + t) not in out:
            out.append(t)
    return out


def term_counts(docs: Iterable[Sequence[str]]) -> dict[str, int]:
    c: Counter[str] = Counter()
    for d in docs:
        c.update(set(d))
    return dict(c)


def top_terms(counts: Mapping[str, int], *, n: int = 8, df: Mapping[str, int] | None = None,
              groups: int = 1) -> list[str]:
    """Terms ranked by members carrying them times log(1 + groups / groups carrying them) (a TF-IDF weight
    across mobs, so a term every mob shares does not name any of them); ties by term."""
    def weight(t: str) -> float:
        share = (df or {}).get(t, 1) or 1
        return counts[t] * math.log(1.0 + groups / share)

    ranked = sorted((t for t, c in counts.items() if c > 0), key=lambda t: (-weight(t), -counts[t], t))
    return ranked[:n]


def mob_name(terms: Sequence[str], n: int = 2) -> str:
    """A readable name from the top terms ("#dance · studio"); "unnamed" without any."""
    picked = [t for t in terms[:n] if t]
    return " · ".join(picked) if picked else "unnamed"


# --- online assignment that stays whole as mobs grow ---------------------------------------------------------
@dataclass(frozen=True)
class OnlineParams:
    """The online assignment's settings (settings `mobs`: see `online_params`).

    - `base`: the joining distance of a young mob (fewer than `min_members` members) and the floor of every
      mob's own threshold;
    - a mob with at least `min_members` members joins within the larger of mean + `spread_z` x std of its
      members' leave-one-out cosine distances (each to the centroid of the others) and `margin` x the
      largest of them, capped at `cap` (a loose trend gets room, a tight one keeps `base`);
    - merge check: two mobs of one space whose centroids are within the larger of their thresholds are one
      mob (the smaller folds into the larger), checked whenever a mob starts or grows;
    - quick re-cluster: once a new mob starts and at least `quick_min_videos` validated videos exist, the
      batch re-clustering runs (choose_k with `quick_n_init` k-means restarts + stable ids) without waiting
      for its schedule; its plan is applied only when it merges away no established mob (`quick_plan_ok`).
    """

    base: float = 0.35
    cap: float = 0.4
    spread_z: float = 2.5
    margin: float = 1.2
    min_members: int = 3
    quick_min_videos: int = 6
    quick_n_init: int = 4
    merge: bool = True
    quick: bool = True

    @classmethod
    def fixed(cls, threshold: float) -> OnlineParams:
        """The earlier rule: one fixed joining distance, no merge check, no quick re-cluster."""
        return cls(base=threshold, cap=threshold, merge=False, quick=False)


def loo_distances(c: np.ndarray, members: Sequence[np.ndarray]) -> np.ndarray:
    """Each member's cosine distance to the centroid of the other members (leave one out): how far a new
    clip of the same kind lands from the centroid it meets. (A member's distance to a centroid it is part of
    is biased low: it pulled the centroid towards itself.)"""
    n = len(members)
    if n < 2:
        return np.zeros(n, dtype=np.float64)
    c = np.asarray(c, dtype=np.float64)
    return np.array([cosine_distance(m, (n * c - np.asarray(m, np.float64)) / (n - 1)) for m in members],
                    dtype=np.float64)


def spread(c: np.ndarray, members: Sequence[np.ndarray]) -> tuple[float, float]:
    """(mean, std) of the members' leave-one-out cosine distances (`loo_distances`)."""
    if not members:
        return 0.0, 0.0
    d = loo_distances(c, members)
    return float(d.mean()), float(d.std())


def join_threshold(c: np.ndarray, members: Sequence[np.ndarray], params: OnlineParams) -> float:
    """How far from its centroid a mob accepts a new member (see OnlineParams); `c` is the members' mean."""
    if len(members) < params.min_members:
        return params.base
    d = loo_distances(c, members)
    mu, sd = float(d.mean()), float(d.std())
    return float(min(params.cap, max(params.base, mu + params.spread_z * sd, float(d.max()) * params.margin)))


def merge_pairs(mobs: Mapping[str, tuple[np.ndarray, Sequence[np.ndarray]]], touched: str,
                params: OnlineParams) -> str | None:
    """The mob that `touched` should fold into or absorb (the closest whose centroid lies within the larger
    of the two join thresholds), or None. `mobs`: id -> (centroid, member vectors)."""
    if touched not in mobs or not params.merge:
        return None
    c, members = mobs[touched]
    t_self = join_threshold(c, members, params)
    best: tuple[float, str] | None = None
    for other, (oc, om) in mobs.items():
        if other == touched:
            continue
        d = cosine_distance(c, oc)
        if d <= max(t_self, join_threshold(oc, om, params)) and (best is None or d < best[0]):
            best = (d, other)
    return best[1] if best else None


@dataclass
class OnlineState:
    """A replayable model of the online assignment (the service applies the same rules through the database):
    labels per video id, member vectors per mob. Used by the tests and benchmarks to replay arrival orders."""

    params: OnlineParams
    k_min: int = 2
    k_max: int = 12
    min_silhouette: float = 0.1
    seed: int = 0
    members: dict[str, list[str]] = field(default_factory=dict)
    vectors: dict[str, np.ndarray] = field(default_factory=dict)
    label: dict[str, str] = field(default_factory=dict)
    _next: int = 0
    quick_runs: int = 0
    quick_skipped: int = 0
    merges: int = 0

    def _new_id(self) -> str:
        self._next += 1
        return f"m{self._next}"

    def _mob(self, mob_id: str) -> tuple[np.ndarray, list[np.ndarray]]:
        vecs = [self.vectors[v] for v in self.members[mob_id]]
        c = centroid(vecs)
        assert c is not None
        return c, vecs

    def add(self, vid: str, vec: np.ndarray) -> str:
        self.vectors[vid] = np.asarray(vec, dtype=np.float64)
        cands = [(m, self._mob(m)) for m in sorted(self.members)]
        best: tuple[float, str] | None = None
        for m, (c, vecs) in cands:
            d = cosine_distance(vec, c)
            if d <= join_threshold(c, vecs, self.params) and (best is None or d < best[0]):
                best = (d, m)
        created = best is None
        mob_id = self._new_id() if best is None else best[1]
        self.members.setdefault(mob_id, []).append(vid)
        self.label[vid] = mob_id
        mob_id = self._merge_check(mob_id)
        if (created and self.params.quick and mob_id in self.members
                and len(self.vectors) >= self.params.quick_min_videos):
            self.recluster()
        return self.label[vid]

    def _merge_check(self, mob_id: str) -> str:
        while True:
            other = merge_pairs({m: self._mob(m) for m in self.members}, mob_id, self.params)
            if other is None:
                return mob_id
            big, small = sorted((mob_id, other), key=lambda m: (-len(self.members[m]), m))
            for v in self.members.pop(small):
                self.members[big].append(v)
                self.label[v] = big
            self.merges += 1
            mob_id = big

    def recluster(self) -> None:
        ids = list(self.vectors)
        x = np.vstack([self.vectors[i] for i in ids])
        choice = choose_k(x, k_min=self.k_min, k_max=max(self.k_min, self.k_max), seed=self.seed,
                          min_silhouette=self.min_silhouette, n_init=self.params.quick_n_init)
        k = max(1, choice.k)
        new_sets = [{ids[i] for i in range(len(ids)) if int(choice.labels[i]) == c} for c in range(k)]
        old = {m: set(v) for m, v in self.members.items()}
        plan = match_clusters(new_sets, old)
        if not quick_plan_ok(plan, new_sets, old, self.vectors, self.params):
            self.quick_skipped += 1
            return
        names = [mid or self._new_id() for mid in plan.ids]
        self.members = {names[i]: sorted(s, key=ids.index) for i, s in enumerate(new_sets) if s}
        self.label = {v: m for m, vs in self.members.items() for v in vs}
        self.quick_runs += 1


def quick_plan_ok(plan: MatchPlan, new: Sequence[set[str]], old: Mapping[str, set[str]],
                  vectors: Mapping[str, np.ndarray], params: OnlineParams) -> bool:
    """Whether a quick re-cluster's plan may be applied. It may move members and fold mobs together, but only
    mobs the online rules would put together: every pair of old mobs that gives members to one new cluster
    must have centroids within the larger of their join thresholds, and no established mob (`min_members` or
    more) may be merged away. Anything else waits for the scheduled re-clustering. (On a few videos of many
    trends, mostly single clips, k-means with a silhouette choice of k pairs unrelated clips, and a mixed mob's
    wide spread would then widen its join threshold.)"""
    if any(len(old.get(o, ())) >= params.min_members for o, _i, _n in plan.merges):
        return False
    stats: dict[str, tuple[np.ndarray, list[np.ndarray]]] = {}
    for o, members in old.items():
        vecs = [np.asarray(vectors[v], np.float64) for v in members if v in vectors]
        c = centroid(vecs)
        if c is not None:
            stats[o] = (c, vecs)
    for cluster in new:
        sources = sorted(o for o, members in old.items() if members & cluster and o in stats)
        for a, b in itertools.combinations(sources, 2):
            (ca, va), (cb, vb) = stats[a], stats[b]
            if cosine_distance(ca, cb) > max(join_threshold(ca, va, params), join_threshold(cb, vb, params)):
                return False
    return True


def replay(order: Sequence[str], vectors: Mapping[str, np.ndarray], params: OnlineParams, **kw: Any) -> dict[str, str]:
    """Labels after the online assignment of `order` (ids into `vectors`), as the service would give them."""
    state = OnlineState(params, **kw)
    for vid in order:
        state.add(vid, vectors[vid])
    return dict(state.label)


# --- stable names ---------------------------------------------------------------------------------------------
def name_terms(name: str | None) -> list[str]:
    """The terms a name was made of ("#dance · studio" -> ["#dance", "studio"]); none for "unnamed"."""
    if not name or name == "unnamed":
        return []
    return [t for t in name.split(" · ") if t]


def prefer_hashtags(terms: Sequence[str]) -> list[str]:
    """Hashtags first (in their order), then the other terms: the name says what users tag."""
    return [t for t in terms if t.startswith("#")] + [t for t in terms if not t.startswith("#")]


def stable_name(old: str | None, top: Sequence[str], n: int = 2) -> str:
    """The mob's name after its top terms changed: the old name while each of its terms is still among `top`
    (the mob's top set), else a new one from `top` with hashtags first. A mob renames only when its content
    really shifted."""
    old_terms = name_terms(old)
    if old and old_terms and all(t in top for t in old_terms):
        return old
    return mob_name(prefer_hashtags(top), n)
