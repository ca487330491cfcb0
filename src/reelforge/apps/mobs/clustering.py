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


def refit_due(n_videos: int, *, min_videos: int, kind: str, n_fit: int) -> tuple[bool, str]:
    """Whether to refit the projection now, and why (or why not).

    `n_videos`: validated local-model videos with raw features; `kind`/`n_fit`: the current projection's kind
    ("rp" random, "pca" fitted) and how many videos it was fitted on.
    """
    if n_videos < min_videos:
        return False, f"{n_videos} videos with raw features, fewer than {min_videos}"
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
             min_silhouette: float = 0.1) -> KChoice:
    """k-means over the rows of x with k picked by mean silhouette (see the module docstring)."""
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
        km = KMeans(n_clusters=k, n_init=10, random_state=seed)
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
