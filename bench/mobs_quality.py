"""Video understanding quality: clustering as videos arrive, the validation score, similar search, noise and
spam rejection, OCR and speech recall, and analysis throughput, on two generated corpora.

- "own": the project's own corpus (tests/integration/test_mobs_corpus.py: 3 trends x 6 clips of 3 s, 320x240,
  plus 2 noise clips), with 2 hashtag-spam clips added (a moving texture, a silent track, trending hashtags);
- "large": 8 trends x 10 clips of mixed resolutions (320x240, 270x480, 640x360, 480x270) and lengths (2 to 6 s),
  4 noise clips and 4 spam clips.

Each clip is analysed once by the local models (participation and embedding adapters, as the worker runs them,
without the API); the embeddings are those of the seeded projection in use before any refit. Then:

- incremental ARI: the online assignment replayed over a family of arrival orders (clustering.replay): the
  trends in sequence, round-robin interleaved, each trend's outliers first (interleaved and in sequence), one
  trend's clips closest to another trend first, and N random permutations (fixed seeds). Reported for the rule
  before this work (a fixed 0.35 joining distance, `OnlineParams.fixed`) and the current one (adaptive
  thresholds, merge check, quick re-cluster): min and mean over the orders;
- ARI after re-clustering: clustering.choose_k on all validated trend clips;
- precision@5, normalized: for each validated trend clip, the share of its 5 nearest validated neighbours that
  are of its trend, divided by the best possible (min(5, clips of its trend - 1) / 5);
- rejection: noise and spam clips rejected by validation, before (the earlier presence-based score, reproduced
  in `legacy_score`) and now; the spam margin (threshold - score);
- the score distribution of trend clips (before and now): min, quartiles, max, how many exactly 1.00;
- OCR and ASR token recall: the trend text's words found in the OCR lines, the spoken phrase's in the transcript;
- analyses per minute: clips / the adapters' wall time (the first clip, which loads the models, is left out and
  reported alone).

    python -m bench.mobs_quality [--corpus own|large|both] [--orders 50]
    python -m bench.mobs_quality --smoke
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import platform
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from bench.common import parse_args

RESULTS = Path(__file__).resolve().parent / "results" / "mobs_quality.json"


def legacy_score(a: dict[str, Any]) -> float:
    """The validation score before graded components (presence-based; equal weights): visual quality with
    coherence full at 0.8 and contrast at 0.12, audio full at 3 words, OCR at 8 characters, any hashtag 1.0."""
    act = a.get("activity") or {}
    coh = min(1.0, max(0.0, (act.get("coherence", 0.0) - 0.3) / 0.5))
    con = min(1.0, max(0.0, act.get("contrast", 0.0) / 0.12))
    visual = coh * con * (1.0 - min(1.0, max(0.0, act.get("black_fraction", 0.0))))
    chars = sum(ch.isalnum() for line in a.get("ocr_text") or [] for ch in line)
    audio = min(1.0, len(a.get("words") or []) / 3)
    ocr = min(1.0, chars / 8)
    tags = 1.0 if a.get("hashtags") else (0.5 if a.get("mentions") else 0.0)
    return round((visual + audio + ocr + tags) / 4, 4)


def orders(ids: list[str], truth: dict[str, str], vecs: dict[str, np.ndarray], n_random: int) -> dict[str, list[str]]:
    """The family of arrival orders (see the module docstring)."""
    from reelforge.apps.mobs import clustering as cl

    groups: dict[str, list[str]] = {}
    for i in ids:
        groups.setdefault(truth[i], []).append(i)
    cents = {t: cl.centroid([vecs[i] for i in g]) for t, g in groups.items()}
    far = {t: sorted(g, key=lambda i, t=t: -cl.cosine_distance(vecs[i], cents[t])) for t, g in groups.items()}
    out: dict[str, list[str]] = {
        "sequential": [i for g in groups.values() for i in g],
        "interleaved": [i for z in itertools.zip_longest(*groups.values()) for i in z if i],
        "outliers_first_interleaved": [i for z in itertools.zip_longest(*far.values()) for i in z if i],
        "outliers_first_sequential": [i for g in far.values() for i in g],
    }
    # Boundary clips first: every trend's clips sorted by their distance to the nearest other trend's centroid.
    def boundary(i: str) -> float:
        return min(cl.cosine_distance(vecs[i], c) for t, c in cents.items() if t != truth[i]) if len(cents) > 1 else 0.0
    out["boundary_first"] = sorted(ids, key=boundary)
    rng = np.random.default_rng(0)
    for k in range(n_random):
        out[f"random_{k}"] = [ids[j] for j in rng.permutation(len(ids))]
    return out


def _quantiles(xs: list[float]) -> dict[str, float]:
    if not xs:
        return {}
    q = np.quantile(np.asarray(xs), [0, 0.25, 0.5, 0.75, 1.0])
    return {"min": round(float(q[0]), 4), "p25": round(float(q[1]), 4), "median": round(float(q[2]), 4),
            "p75": round(float(q[3]), 4), "max": round(float(q[4]), 4), "exactly_1": sum(x >= 0.99995 for x in xs),
            "distinct": len({round(x, 4) for x in xs})}


def token_recall(expected: str, found: str) -> tuple[int, int]:
    import re

    want = re.findall(r"[a-z0-9]+", expected.casefold())
    got = set(re.findall(r"[a-z0-9]+", found.casefold()))
    return sum(w in got for w in want), len(want)


def evaluate(analysed: list[Any], settings: Any, n_orders: int) -> dict[str, Any]:
    from sklearn.metrics import adjusted_rand_score

    from reelforge.apps.mobs import clustering as cl
    from reelforge.apps.mobs.models import validate_scores
    from reelforge.apps.mobs.ports import ParticipationResult

    mobs = settings.mobs
    params = cl.OnlineParams(base=mobs.mob_distance_threshold, cap=mobs.mob_distance_cap, spread_z=mobs.mob_spread_z,
                             margin=mobs.mob_spread_margin,
                             min_members=mobs.mob_spread_min_members,
                             quick_min_videos=mobs.quick_recluster_min_videos)
    before = cl.OnlineParams.fixed(mobs.mob_distance_threshold)
    kw = {"k_min": mobs.recluster_k_min, "k_max": mobs.recluster_k_max, "min_silhouette": mobs.recluster_min_silhouette}
    ids = [str(i) for i in range(len(analysed))]
    by_id = dict(zip(ids, analysed, strict=True))
    vecs = {i: by_id[i].vector for i in ids}
    trend_ids = [i for i in ids if by_id[i].video.trend]
    truth = {i: by_id[i].video.trend for i in trend_ids}

    def result_of(a: dict[str, Any]) -> Any:
        fields = ParticipationResult.__dataclass_fields__
        data = {k: a[k] for k in fields if k in a}
        data["notes"] = tuple(data.get("notes") or ())
        return ParticipationResult(**data)

    # Mob terms for hashtag agreement: the mobs of the trend clips (one replay, interleaved), as the service
    # would have them when the clip is validated.
    labels = cl.replay(orders(trend_ids, truth, vecs, 0)["interleaved"], vecs, params, **kw)
    members: dict[str, list[str]] = {}
    for i, m in labels.items():
        members.setdefault(m, []).append(i)
    mob_terms = {}
    for m, ms in members.items():
        counts = cl.term_counts(cl.terms_of(by_id[i].analysis) for i in ms)
        mob_terms[m] = (cl.centroid([vecs[i] for i in ms]), [vecs[i] for i in ms], cl.top_terms(counts, n=mobs.top_terms))

    def context(i: str) -> list[str]:
        best = None
        for c, mv, terms in mob_terms.values():
            d = cl.cosine_distance(vecs[i], c)
            if d <= cl.join_threshold(c, mv, params) and (best is None or d < best[0]):
                best = (d, terms)
        return best[1] if best else []

    scores_now: dict[str, float] = {}
    status_now: dict[str, str] = {}
    for i in ids:
        r = validate_scores(result_of(by_id[i].analysis), settings, context_terms=context(i))
        scores_now[i], status_now[i] = r.score, r.status
    scores_before = {i: legacy_score(by_id[i].analysis) for i in ids}
    threshold = float(mobs.validation_threshold)
    kinds = {k: [i for i in ids if by_id[i].video.kind == k] for k in ("trend", "flat", "noise", "spam")}
    noise_ids = kinds["flat"] + kinds["noise"]

    def rate(xs: list[str], scores: dict[str, float]) -> dict[str, Any]:
        return {"rejected": sum(scores[i] < threshold for i in xs), "of": len(xs)}

    validated = [i for i in trend_ids if status_now[i] == "validated"]
    family = orders(validated, truth, vecs, n_orders)
    inc: dict[str, dict[str, float]] = {"before": {}, "now": {}}
    for name, order in family.items():
        for label, p in (("before", before), ("now", params)):
            lab = cl.replay(order, vecs, p, **kw)
            inc[label][name] = float(adjusted_rand_score([truth[i] for i in validated], [lab[i] for i in validated]))
    x = np.vstack([vecs[i] for i in validated])
    choice = cl.choose_k(x, k_min=mobs.recluster_k_min, k_max=mobs.recluster_k_max, seed=mobs.recluster_seed,
                         min_silhouette=mobs.recluster_min_silhouette)
    batch = float(adjusted_rand_score([truth[i] for i in validated], choice.labels.tolist()))
    # precision@5 among validated videos (what search can return), normalized by the best possible.
    xn = np.vstack([cl.unit(vecs[i]) for i in validated])
    sims = xn @ xn.T
    p5 = []
    for a, i in enumerate(validated):
        order = [validated[b] for b in np.argsort(-sims[a]) if b != a][:5]
        same = sum(truth[j] == truth[i] for j in validated) - 1
        best = min(5, same)
        if best > 0:
            p5.append(sum(truth[j] == truth[i] for j in order) / best)
    ocr_hit = ocr_all = asr_hit = asr_all = 0
    for i in trend_ids:
        v, a = by_id[i].video, by_id[i].analysis
        h, n = token_recall(v.text, " ".join(a.get("ocr_text") or []))
        ocr_hit, ocr_all = ocr_hit + h, ocr_all + n
        h, n = token_recall(v.phrase, a.get("transcript") or "")
        asr_hit, asr_all = asr_hit + h, asr_all + n
    secs = [a.seconds for a in analysed[1:]] or [analysed[0].seconds]
    return {
        "clips": {k: len(v) for k, v in kinds.items()},
        "trends": len(set(truth.values())),
        "validated_trend_clips": len(validated),
        "incremental_ari": {label: {"min": round(min(d.values()), 4), "mean": round(statistics.mean(d.values()), 4),
                                    "orders": len(d), "below_0.95": sorted(k for k, v in d.items() if v < 0.95)}
                            for label, d in inc.items()},
        "ari_after_recluster": round(batch, 4), "recluster_k": choice.k,
        "precision_at_5_normalized": round(statistics.mean(p5), 4) if p5 else None,
        "rejection": {"before": {"noise": rate(noise_ids, scores_before), "spam": rate(kinds["spam"], scores_before),
                                 "trend_rejected": rate(trend_ids, scores_before)},
                      "now": {"noise": rate(noise_ids, scores_now), "spam": rate(kinds["spam"], scores_now),
                              "trend_rejected": rate(trend_ids, scores_now)}},
        "spam_margin": {"before": round(threshold - max((scores_before[i] for i in kinds["spam"]), default=0.0), 4),
                        "now": round(threshold - max((scores_now[i] for i in kinds["spam"]), default=0.0), 4)},
        "trend_scores": {"before": _quantiles([scores_before[i] for i in trend_ids]),
                         "now": _quantiles([scores_now[i] for i in trend_ids])},
        "noise_scores_now": {by_id[i].video.path.name: scores_now[i] for i in noise_ids + kinds["spam"]},
        "ocr_token_recall": round(ocr_hit / ocr_all, 4) if ocr_all else None,
        "asr_token_recall": round(asr_hit / asr_all, 4) if asr_all else None,
        "analyses_per_minute": round(60.0 / statistics.mean(secs), 2),
        "first_clip_s": round(analysed[0].seconds, 3),
        "faces_on_noise_or_spam": sum(by_id[i].analysis["activity"].get("faces", 0) > 0 for i in noise_ids + kinds["spam"]),
    }


CORPORA: dict[str, dict[str, Any]] = {
    "own": {"trends": 3, "per_trend": 6, "noise": 2, "spam": 2, "seconds": 3.0},
    "large": {"trends": 8, "per_trend": 10, "noise": 4, "spam": 4, "seconds": 3.0,
              "sizes": ((320, 240), (270, 480), (640, 360), (480, 270)), "lengths": (2.0, 3.0, 4.0, 5.0, 6.0)},
}


def main(argv: list[str] | None = None) -> dict[str, Any]:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--corpus", choices=("own", "large", "both"), default="both")
    ap.add_argument("--orders", type=int, default=50, help="random arrival orders, besides the structured ones")
    ap.add_argument("--out", type=Path, default=RESULTS)
    ap.add_argument("--cache", type=Path, default=None,
                    help="keep the analysed corpora here (pickle) and reuse them on the next run")
    args = parse_args(ap, argv, {"corpus": "tiny", "orders": 3})
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    from tests.fixtures.mob_analysed import analyse_corpus
    from tests.fixtures.mob_corpus import make_corpus

    corpora = dict(CORPORA)
    corpora["tiny"] = {"trends": 2, "per_trend": 2, "noise": 1, "spam": 1, "seconds": 1.0}
    names = ["own", "large"] if args.corpus == "both" else [args.corpus]
    tmp = Path(tempfile.mkdtemp(prefix="rf-bench-mobs-quality-"))
    report: dict[str, Any] = {
        "benchmark": "mobs.quality",
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version(), "platform": platform.platform(),
                    "note": "shared 2-core machine: throughput figures are noisy"},
        "orders_random": args.orders, "corpora": {},
    }
    for name in names:
        spec = dict(corpora[name])
        t0 = time.perf_counter()
        corpus = make_corpus(tmp / name, **spec)
        gen_s = time.perf_counter() - t0  # (also with --cache: the corpus is regenerated, the same for its seed)
        cached = args.cache / f"{name}.pkl" if args.cache else None
        if cached is not None and cached.is_file():
            import pickle

            analysed = pickle.loads(cached.read_bytes())
            from reelforge.config import Settings

            settings = Settings(data_dir=tmp / f"var-{name}", log_json=False)
        else:
            analysed, settings = analyse_corpus(corpus, tmp / f"var-{name}")
            if cached is not None:
                import pickle

                cached.parent.mkdir(parents=True, exist_ok=True)
                cached.write_bytes(pickle.dumps(analysed))
        res = evaluate(analysed, settings, args.orders)
        res["spec"] = {k: (list(map(list, v)) if k == "sizes" else list(v) if isinstance(v, tuple) else v)
                       for k, v in spec.items()}
        res["generate_s"] = round(gen_s, 2)
        report["corpora"][name] = res
        print(json.dumps({name: res}, indent=2))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    return report


if __name__ == "__main__":
    main()
