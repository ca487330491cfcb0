"""Grouping videos into mobs: online assignment of a validated video to the nearest mob (or a new one),
membership changes, the scheduled re-clustering and the refit of the local embedding's projection.

Mob membership changes (join, leave, re-cluster) run under one lock so counts and centroids always equal
the members'. Vectors live in the vector index (namespace `videos`), private until the video is validated
and public.

The local embedding model's raw features are stored with each video. Before k-means, the re-clustering
refits the local projection when it is due (clustering.py `refit_due`): the new projection is saved (a new
version; every worker's adapter picks it up on its next run) and, in the same locked transaction, every
stored raw feature is re-projected and mob centroids are recomputed; then the index follows, keeping each
record's visibility. A vector that a worker computed with the old projection during a refit is re-projected
from its raw features when it is stored (`in_current_space`), so only one local space is ever in use.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

import numpy as np

from reelforge import errors
from reelforge.apps.mobs import clustering as cl
from reelforge.apps.mobs.repository import MobsRepo, Video, blob_to_f32, blob_to_vec, f32_to_blob, vec_to_blob
from reelforge.apps.mobs.services.base import LOCAL_EMBED, NAMESPACE, SCHEDULE, MobsContext, Part, log
from reelforge.domain.records import new_id


class Grouping(Part):
    def __init__(self, ctx: MobsContext) -> None:
        super().__init__(ctx)
        self._recluster_thread: threading.Thread | None = None
        self._quick_lock = threading.Lock()
        self._quick_last = float("-inf")

    def in_current_space(self, raw: np.ndarray, vec: np.ndarray, version: str) -> tuple[np.ndarray, str]:
        """(vector, version) in the current local projection: `vec` when it is already there (or no
        projection can be read), else `raw` projected into it."""
        try:
            current = self.ctx.projections.current()
        except errors.ReelforgeError:
            return vec, version
        if current.version == version or raw.shape != (current.in_dim,):
            return vec, version
        log.info("re-projecting a %s embedding into the current projection %s", version, current.version)
        return current.project(raw), str(current.version)

    def publish(self, video_id: str, visibility: Callable[[Video], str], *, validated_only: bool = False) -> None:
        """Write the row's vector into the index. The row is read again afterwards: when a projection refit
        changed it meanwhile, the new vector is written too (the index never keeps a vector of an old space)."""
        from reelforge.ports.vectors import VectorRecord

        written: tuple[str, bytes] | None = None
        for _ in range(4):
            with self.store.tx(write=False) as tx:
                v = MobsRepo(tx).video(video_id)
            if v is None or v.embedding is None or v.status == "deleted":
                return
            if validated_only and v.status != "validated":
                return
            key = (v.embed_model_version or "", bytes(v.embedding))
            if key == written:
                return
            vec = blob_to_f32(v.embedding)
            assert vec is not None
            self.vectors.upsert(NAMESPACE, [VectorRecord(id=v.id, vector=vec, owner_id=v.owner_id,
                                                         visibility=visibility(v), model_version=key[0])])
            written = key

    def assign(self, video_id: str) -> str | None:
        """Validated: join the nearest mob (or found one) and publish the vector. Idempotent."""
        with self.store.tx() as tx:
            repo = MobsRepo(tx)
            repo.lock_mobs()
            v = repo.video(video_id, lock=True)
            if v is None or v.status != "validated":
                return None
            created = False
            if v.mob_id is None:
                _mob_id, created = self._join(repo, v)
            v = repo.video(video_id)
            assert v is not None
        if v.embedding is None:
            raise errors.ReelforgeError("video has no embedding", code="video_not_analyzed")
        self.publish(video_id, lambda row: "public" if row.visibility == "public" else "private",
                     validated_only=True)
        if created:
            self._quick_recluster()
        return v.mob_id

    def online_params(self) -> cl.OnlineParams:
        """The online assignment's rules from the settings (clustering.OnlineParams)."""
        cfg = self.cfg
        base = float(cfg.mob_distance_threshold)
        return cl.OnlineParams(base=base, cap=max(base, float(cfg.mob_distance_cap)),
                               spread_z=float(cfg.mob_spread_z), margin=float(cfg.mob_spread_margin),
                               min_members=int(cfg.mob_spread_min_members),
                               quick_min_videos=int(cfg.quick_recluster_min_videos),
                               quick_n_init=int(cfg.quick_recluster_n_init),
                               merge=bool(cfg.mob_merge_check), quick=int(cfg.quick_recluster_min_videos) > 0)

    def _members(self, repo: MobsRepo, mob_ids: list[str], version: str) -> dict[str, list[np.ndarray]]:
        return {m: [vec.astype(np.float64) for _vid, ver, vec, _an in rows
                    if vec is not None and (ver or "") == version]
                for m, rows in repo.mob_vectors(mob_ids).items()}

    def _candidates(self, repo: MobsRepo, vec: np.ndarray, version: str, params: cl.OnlineParams,
                    exclude: str | None = None) -> dict[str, tuple[Any, np.ndarray, list[np.ndarray], float]]:
        """Active mobs of the space whose centroid lies within the largest possible threshold (`cap`) of
        `vec`: id -> (mob, centroid, member vectors, distance)."""
        near = []
        for m in repo.mobs(status="active", model_version=version):
            c = blob_to_vec(m.centroid)
            if c is None or m.id == exclude:
                continue
            d = cl.cosine_distance(vec, c)
            if d <= max(params.cap, params.base):
                near.append((m, c, d))
        members = self._members(repo, [m.id for m, _, _ in near], version)
        return {m.id: (m, c, members.get(m.id, []), d) for m, c, d in near}

    def nearby_terms(self, video_id: str) -> list[str]:
        """The top terms of the mob the video lies within (its own mob, or the nearest whose join threshold it
        is inside), for the hashtag agreement of validation; none when it is near no mob."""
        with self.store.tx(write=False) as tx:
            repo = MobsRepo(tx)
            v = repo.video(video_id)
            if v is None:
                return []
            if v.mob_id:  # its own mob: the terms other members carry too (not the video's own evidence)
                m = repo.mob(v.mob_id)
                counts = (m.term_counts or {}) if m is not None else {}
                return [t for t in (m.top_terms or []) if int(counts.get(t, 0)) >= 2] if m is not None else []
            vec = blob_to_f32(v.embedding)
            if vec is None:
                return []
            params = self.online_params()
            best: tuple[float, Any] | None = None
            for m, c, members, d in self._candidates(repo, vec, v.embed_model_version or "", params).values():
                if d <= cl.join_threshold(c, members, params) and (best is None or d < best[0]):
                    best = (d, m)
        return list(best[1].top_terms or []) if best else []

    def _join(self, repo: MobsRepo, v: Video) -> tuple[str, bool]:
        """Under the mobs lock: the nearest mob of the video's embedding space within that mob's own join
        threshold (clustering.join_threshold), or a new one; then the merge check on the mob it went to.
        Returns (mob id, whether a new mob remains)."""
        vec = blob_to_f32(v.embedding)
        if vec is None:
            raise errors.ReelforgeError("video has no embedding", code="video_not_analyzed")
        version = v.embed_model_version or ""
        params = self.online_params()
        cands = self._candidates(repo, vec, version, params)
        best: tuple[float, str] | None = None
        thresholds: dict[str, float] = {}
        for mid, (_m, c, members, d) in cands.items():
            thresholds[mid] = cl.join_threshold(c, members, params)
            if d <= thresholds[mid] and (best is None or (d, mid) < best):
                best = (d, mid)
        terms = cl.terms_of(v.analysis)
        nearest = min(((d, mid) for mid, (_m, _c, _mem, d) in cands.items()), default=None)
        if best is not None:
            m = cands[best[1]][0]
            c = cl.add_to_centroid(blob_to_vec(m.centroid), m.count, vec)
            counts = dict(m.term_counts or {})
            for t in terms:
                counts[t] = int(counts.get(t, 0)) + 1
            self._save_mob(repo, m.id, c, m.count + 1, counts)
            mob_id = m.id
            created = False
        else:
            mob_id = new_id()
            counts = dict.fromkeys(terms, 1)
            top = cl.top_terms(counts, n=self.cfg.top_terms)
            repo.add_mob(id=mob_id, name=cl.mob_name(cl.prefer_hashtags(top), self.cfg.mob_name_terms),
                         top_terms=top, term_counts=counts, centroid=vec_to_blob(vec.astype(np.float64)), count=1,
                         model_version=version, status="active")
            repo.add_mob_event(mob_id, "created", details={
                "by": "assignment", "video_id": v.id,
                "distance": round(nearest[0], 6) if nearest else None,
                "threshold": round(thresholds[nearest[1]], 6) if nearest else round(params.base, 6)})
            created = True
        repo.update_video(v.id, mob_id=mob_id)
        final = self._merge_check(repo, mob_id, version, params)
        return final, created and final == mob_id

    def _merge_check(self, repo: MobsRepo, mob_id: str, version: str, params: cl.OnlineParams) -> str:
        """Fold `mob_id` and the closest mob whose centroid lies within the larger of their join thresholds
        into one (the smaller into the larger; recorded as a merge), until none is left. Returns the mob the
        members are in."""
        while params.merge:
            m = repo.mob(mob_id)
            c = blob_to_vec(m.centroid) if m is not None else None
            if m is None or c is None:
                return mob_id
            cands = self._candidates(repo, c, version, params, exclude=mob_id)
            own = self._members(repo, [mob_id], version).get(mob_id, [])
            table = {mid: (oc, members) for mid, (_om, oc, members, _d) in cands.items()}
            table[mob_id] = (c, own)
            other = cl.merge_pairs(table, mob_id, params)
            if other is None:
                return mob_id
            o = cands[other][0]
            big, small = (m, o) if (m.count, o.id) > (o.count, m.id) else (o, m)
            moved = [vid for vid, _ver, _vec, _an in repo.mob_vectors([small.id])[small.id]]
            for vid in moved:
                repo.update_video(vid, mob_id=big.id)
            counts = dict(big.term_counts or {})
            for t, n in (small.term_counts or {}).items():
                counts[t] = int(counts.get(t, 0)) + int(n)
            vecs = self._members(repo, [big.id], version).get(big.id, [])
            self._save_mob(repo, big.id, cl.centroid(vecs), len(vecs), counts)
            repo.update_mob(small.id, status="merged", merged_into=big.id, centroid=None, count=0, term_counts={},
                            top_terms=[])
            d = {"from": small.id, "into": big.id, "moved": len(moved), "by": "merge check"}
            repo.add_mob_event(small.id, "merge", details=d)
            repo.add_mob_event(big.id, "merge", details=d)
            mob_id = big.id
        return mob_id

    def _quick_recluster(self) -> bool:
        """A new mob started: run the re-clustering now, in a thread of its own (one at a time, at most once per
        `quick_recluster_min_interval_s`), once `quick_recluster_min_videos` validated videos exist."""
        import time as _time

        params = self.online_params()
        if not params.quick:
            return False
        with self.store.tx(write=False) as tx:
            n = MobsRepo(tx).count_validated()
        if n < params.quick_min_videos:
            return False
        with self._quick_lock:
            t = self._recluster_thread
            now = _time.monotonic()
            interval = float(self.cfg.quick_recluster_min_interval_s)
            if (t is not None and t.is_alive()) or now - self._quick_last < interval:
                return False
            self._quick_last = now
            t = threading.Thread(target=self._recluster_logged, args=("quick", True),
                                 name="reelforge-recluster-quick", daemon=True)
            self._recluster_thread = t
            t.start()
        return True

    def leave(self, repo: MobsRepo, v: Video) -> None:
        """Take a member out (the caller holds the mobs lock): centroid and count by subtracting its vector;
        term counts likewise."""
        if not v.mob_id:
            return
        m = repo.mob(v.mob_id)
        repo.update_video(v.id, mob_id=None)
        if m is None:
            return
        vec = blob_to_f32(v.embedding)
        counts = dict(m.term_counts or {})
        for t in cl.terms_of(v.analysis):
            if t in counts:
                counts[t] = int(counts[t]) - 1
                if counts[t] <= 0:
                    del counts[t]
        c = blob_to_vec(m.centroid)
        if m.count <= 1 or c is None or vec is None:
            repo.update_mob(m.id, centroid=None, count=0, term_counts={}, top_terms=[], status="empty")
            repo.add_mob_event(m.id, "emptied", details={"video_id": v.id})
            return
        self._save_mob(repo, m.id, cl.remove_from_centroid(c, m.count, vec), m.count - 1, counts)

    def _save_mob(self, repo: MobsRepo, mob_id: str, centroid: np.ndarray | None, count: int,
                  counts: dict[str, int]) -> None:
        top = cl.top_terms(counts, n=self.cfg.top_terms)
        m = repo.mob(mob_id)
        name = cl.stable_name(m.name if m is not None else None, top, self.cfg.mob_name_terms)
        repo.update_mob(mob_id, centroid=vec_to_blob(centroid) if centroid is not None else None, count=count,
                        term_counts=counts, top_terms=top, name=name)

    def tick(self, runner: str) -> bool:
        """Run the re-clustering, in a thread of its own, when this caller wins the schedule's tick (one
        runner per interval across workers). True when this caller started it."""
        interval = float(self.cfg.recluster_interval_s)
        if interval <= 0:
            return False
        with self.store.tx(write=False) as tx:
            if tx.ops.schedule_pending(SCHEDULE):
                return False
        with self.store.tx() as tx:
            due = tx.ops.try_schedule(SCHEDULE, interval, runner)
        if due:
            # Off the maintenance loop: k-means over many videos must not hold up lease reaping or deliveries.
            t = threading.Thread(target=self._recluster_logged, args=(runner,), name="reelforge-recluster",
                                 daemon=True)
            t.start()
            self._recluster_thread = t
        return bool(due)

    def _recluster_logged(self, runner: str, quick: bool = False) -> None:
        try:
            self.recluster(runner=runner, quick=quick)
        except Exception:
            log.exception("re-clustering failed")

    def recluster(self, *, runner: str | None = None, quick: bool = False) -> dict[str, Any]:
        """The local projection refitted when due (`refit_projection`), then k-means over every validated video
        of the newest embedding space; stable ids, splits and merges recorded, names from top terms; centroids
        and counts recomputed exactly from the members. The refit is recorded in the run's details."""
        run_id = new_id()
        with self.store.tx() as tx:
            MobsRepo(tx).add_run(id=run_id, runner=runner, status="running", started_at=tx.now(), videos=0,
                                 criterion=cl.CRITERION, model_version="", details={})
        try:
            projection = ({"refit": False, "reason": "quick re-cluster (a new mob started): the scheduled run "
                                                     "refits the projection"}
                          if quick else self.refit_projection(run_id=run_id))
        except Exception as exc:  # the clustering still runs, in the space the videos are in
            log.exception("refitting the embedding projection failed")
            projection = {"refit": False, "error": f"{type(exc).__name__}: {exc}"[:2000]}
        try:
            with self.store.tx(write=False) as tx:
                snapshot = MobsRepo(tx).validated_for_clustering()
            summary = self._recluster(run_id, snapshot, projection, quick=quick)
        except Exception as exc:
            with self.store.tx() as tx:
                repo = MobsRepo(tx)
                repo.update_run(run_id, status="failed", finished_at=tx.now(), error=str(exc)[:2000],
                                details=self._run_details(repo, run_id, {"projection": projection}))
            raise
        return summary

    # --- projection refit ------------------------------------------------------------------------
    @staticmethod
    def _run_details(repo: MobsRepo, run_id: str, details: dict[str, Any]) -> dict[str, Any]:
        """`details` added to what the run recorded so far (an `index_pending` mark stays until cleared)."""
        run = repo.run(run_id)
        return {**((run.details or {}) if run is not None else {}), **details}

    def refit_projection(self, *, run_id: str | None = None) -> dict[str, Any]:
        """Refit the local embedding's projection when it is due, and bring every stored vector into it.

        Due (clustering.refit_due): at least `projection_min_videos` validated local-model videos have raw
        features, and the current projection is the seeded random one or was fitted on fewer than half as
        many. The PCA is fitted on the raw features of the validated videos (rejected and failed ones say
        little about the content); every local-model video is re-projected.

        Then, holding the mobs lock: the new projection is saved (atomic file replace; adapters in every
        process load it on their next run), every local-model video whose vector is not in the current
        projection's space is re-projected from its raw features (this also repairs a refit interrupted
        after its save), and the mobs those videos belong to get the new version and centroids recomputed
        from the new vectors; ids and memberships stay. A member without raw features cannot follow and
        leaves its mob (videos stored since raw features are kept always have them). Last, the index gets the
        new vectors, each record keeping its visibility; a video not in the index (rejected) stays out.
        Videos of other embed models (hosted) are never touched.

        The re-clustering run (`run_id`) is marked `index_pending` in the same transaction as the rows and
        cleared once the index has every new vector; a mark left by a refit that stopped in between (the
        process died) makes the next call bring the index up to the rows first.
        """
        from reelforge.apps.mobs.models import explained_variance, fit_projection

        cfg = self.cfg
        files = self.ctx.projections
        current = files.current()
        repaired = self._repair_index(current.version)
        with self.store.tx(write=False) as tx:
            n = MobsRepo(tx).count_raw_features(LOCAL_EMBED, status="validated")
        due, reason = cl.refit_due(n, min_videos=int(cfg.projection_min_videos), kind=current.kind,
                                   n_fit=current.n_fit, dim=int(files.dim),
                                   samples_per_dim=float(cfg.projection_samples_per_dim))
        info: dict[str, Any] = {"refit": False, "reason": reason, "old_version": current.version,
                                "new_version": current.version, "videos": n, "n_fit": current.n_fit or None,
                                "dim": int(files.dim), "samples_per_dim": round(n / max(1, int(files.dim)), 3),
                                "explained_variance": None, "heldout_explained_variance": None}
        new = None
        if due:
            with self.store.tx(write=False) as tx:
                rows = MobsRepo(tx).raw_features(LOCAL_EMBED, status="validated")
            raw = [r[4] for r in rows if r[4].shape == (files.in_dim,)]
            x = np.vstack(raw) if raw else np.zeros((0, files.in_dim), np.float32)
            fitted = fit_projection(x, files.dim, seed=files.seed)
            info["explained_variance"] = round(explained_variance(fitted, x), 6)
            info["heldout_explained_variance"] = self._heldout_variance(x, files)
            if fitted.version == current.version:
                info["reason"] = "the refit gave the projection in use"
            else:
                new = fitted
                info.update(refit=True, new_version=fitted.version, n_fit=fitted.n_fit, videos=len(raw))
        moved = self._move_to_projection(new, run_id)
        info.update(moved)
        if repaired is not None:
            info["index_repaired"] = repaired
        if new is not None:
            log.info("embedding projection refitted: %s -> %s on %d videos (explained variance %s); "
                     "%d vectors re-projected", current.version, new.version, new.n_fit,
                     info["explained_variance"], moved["reprojected"])
        return info

    @staticmethod
    def _heldout_variance(x: np.ndarray, files: Any) -> float | None:
        """The refit's quality on videos it did not see: a projection fitted on 4 of every 5 videos (fixed
        order), its explained variance on the fifth. Near the in-sample figure: the dimension is supported
        by the data; far below it: the projection fits the samples, not the content."""
        from reelforge.apps.mobs.models import explained_variance, fit_projection

        held = np.arange(len(x)) % 5 == 4
        if held.sum() < 2 or (~held).sum() < 2:
            return None
        try:
            part = fit_projection(x[~held], files.dim, seed=files.seed)
            return round(explained_variance(part, x[held]), 6)
        except Exception:  # too few samples for a fit of this size: no figure rather than a made-up one
            return None

    def _move_to_projection(self, new: Any, run_id: str | None) -> dict[str, Any]:
        """Save `new` (when given) and re-project every local-model vector not in the current space."""

        files = self.ctx.projections
        with self.store.tx() as tx:
            repo = MobsRepo(tx)
            repo.lock_mobs()
            if new is not None:
                files.save(new)
            target = files.current()
            stale = [r for r in repo.raw_features(LOCAL_EMBED, not_version=target.version)
                     if r[4].shape == (target.in_dim,)]
            if not stale:
                return {"reprojected": 0, "mobs_updated": 0, "left_mobs": 0, "indexed": 0}
            vectors = target.project(np.vstack([r[4] for r in stale]))
            repo.set_embeddings([(r[0], f32_to_blob(vec), target.version) for r, vec in
                                 zip(stale, vectors, strict=True)])
            if run_id is not None:
                repo.update_run(run_id, details=self._run_details(repo, run_id, {"index_pending": target.version}))
            mob_ids = sorted({r[2] for r in stale if r[2] and r[1] == "validated"})
            left = 0
            for mob_id, members in repo.mob_vectors(mob_ids).items():
                m = repo.mob(mob_id)
                if m is None or m.status != "active":
                    continue
                keep = [(vid, vec, an) for vid, ver, vec, an in members if ver == target.version and vec is not None]
                gone = [vid for vid, ver, vec, _an in members if ver != target.version or vec is None]
                for vid in gone:
                    repo.update_video(vid, mob_id=None)
                left += len(gone)
                c = cl.centroid([vec for _, vec, _ in keep])
                if c is None:
                    repo.update_mob(mob_id, centroid=None, count=0, term_counts={}, top_terms=[], status="empty",
                                    model_version=target.version)
                    repo.add_mob_event(mob_id, "emptied", details={"by": "projection refit"})
                    continue
                repo.update_mob(mob_id, model_version=target.version)
                if gone:
                    self._save_mob(repo, mob_id, c, len(keep), cl.term_counts(cl.terms_of(an) for _, _, an in keep))
                else:
                    repo.update_mob(mob_id, centroid=vec_to_blob(c), count=len(keep))
        indexed = self._reindex([(r[0], vec) for r, vec in zip(stale, vectors, strict=True)], target.version)
        if run_id is not None:
            with self.store.tx() as tx:
                repo = MobsRepo(tx)
                repo.update_run(run_id, details=self._run_details(repo, run_id, {"index_pending": None}))
        return {"reprojected": len(stale), "mobs_updated": len(mob_ids), "left_mobs": left, "indexed": indexed}

    def _reindex(self, items: list[tuple[str, np.ndarray]], version: str) -> int:
        """Put (id, vector) into the index in `version`, each record keeping its owner and visibility; ids
        not in the index (rejected videos) stay out."""
        from reelforge.ports.vectors import VectorRecord

        n = 0
        for vid, vec in items:
            rec = self.vectors.get(NAMESPACE, vid)
            if rec is None:
                continue
            if rec.model_version != version or not np.array_equal(np.asarray(rec.vector, np.float32), vec):
                self.vectors.upsert(NAMESPACE, [VectorRecord(id=vid, vector=vec, owner_id=rec.owner_id,
                                                             visibility=rec.visibility, model_version=version)])
            n += 1
        return n

    def _repair_index(self, version: str) -> int | None:
        """When a refit stopped between its row update and the end of its index update (an `index_pending`
        run), the index gets the rows' vectors of `version` now; returns how many (None: nothing pending)."""
        with self.store.tx(write=False) as tx:
            repo = MobsRepo(tx)
            pending = [r.id for r in repo.runs(50) if (r.details or {}).get("index_pending")]
            if not pending:
                return None
            rows = repo.embeddings(LOCAL_EMBED, version)
        n = self._reindex(rows, version)
        with self.store.tx() as tx:
            repo = MobsRepo(tx)
            for run_id in pending:
                repo.update_run(run_id, details=self._run_details(repo, run_id, {"index_pending": None}))
        log.warning("a projection refit had stopped before the index was updated; %d index records checked", n)
        return n

    def _recluster(self, run_id: str, snapshot: list[Any],
                   projection: dict[str, Any] | None = None, *, quick: bool = False) -> dict[str, Any]:
        cfg = self.cfg
        versions = [s[2] or "" for s in snapshot if s[3] is not None]
        version = versions[-1] if versions else ""
        rows = [s for s in snapshot if s[3] is not None and (s[2] or "") == version]
        ids = [r[0] for r in rows]
        if not rows:
            with self.store.tx() as tx:
                repo = MobsRepo(tx)
                repo.update_run(run_id, status="succeeded", finished_at=tx.now(), videos=0, k=0,
                                details=self._run_details(repo, run_id, {"projection": projection}))
            return {"run_id": run_id, "videos": 0, "k": 0, "events": [], "projection": projection}
        x = np.vstack([r[3] for r in rows]).astype(np.float64)
        choice = cl.choose_k(x, k_min=cfg.recluster_k_min, k_max=max(cfg.recluster_k_min, cfg.recluster_k_max),
                             seed=cfg.recluster_seed, min_silhouette=cfg.recluster_min_silhouette,
                             n_init=self.online_params().quick_n_init if quick else 10)
        k = max(1, choice.k)
        new_sets = [{ids[i] for i in range(len(ids)) if int(choice.labels[i]) == c} for c in range(k)]
        events: list[dict[str, Any]] = []
        with self.store.tx() as tx:
            repo = MobsRepo(tx)
            repo.lock_mobs()
            old_sets: dict[str, set[str]] = {}
            in_run = set(ids)
            for vid, mob_id, _ver, _vec, _an in repo.validated_for_clustering():
                if mob_id and vid in in_run:
                    old_sets.setdefault(mob_id, set()).add(vid)
            plan = cl.match_clusters(new_sets, old_sets)
            vectors = {r[0]: r[3] for r in rows}
            if quick and not cl.quick_plan_ok(plan, new_sets, old_sets, vectors, self.online_params()):
                reason = ("the quick re-cluster would put together mobs the online rules keep apart: left to "
                          "the scheduled run")
                repo.update_run(run_id, status="skipped", finished_at=tx.now(), videos=len(ids), k=k,
                                score=choice.score, model_version=version,
                                details=self._run_details(repo, run_id, {"reason": reason, "projection": projection}))
                return {"run_id": run_id, "videos": len(ids), "k": k, "skipped": reason, "events": [],
                        "projection": projection}
            cluster_ids = [mid or new_id() for mid in plan.ids]
            now = tx.now()
            for i, mid in enumerate(plan.ids):
                if mid is None:
                    repo.add_mob(id=cluster_ids[i], name="", top_terms=[], term_counts={}, centroid=None, count=0,
                                 model_version=version, status="active", created_at=now, updated_at=now)
                else:
                    repo.update_mob(mid, status="active", merged_into=None, model_version=version)
            for i, parent, moved in plan.splits:
                d = {"parent": parent, "child": cluster_ids[i], "moved": moved}
                repo.add_mob_event(cluster_ids[i], "split", run_id=run_id, details=d)
                repo.add_mob_event(parent, "split", run_id=run_id, details=d)
                events.append({"kind": "split", **d})
            for i in plan.created:
                repo.add_mob_event(cluster_ids[i], "created", run_id=run_id, details={"by": "recluster",
                                                                                       "members": len(new_sets[i])})
                events.append({"kind": "created", "mob_id": cluster_ids[i]})
            merged_into: dict[str, str] = {}
            for old, i, moved in plan.merges:
                d = {"from": old, "into": cluster_ids[i], "moved": moved}
                merged_into[old] = cluster_ids[i]
                repo.update_mob(old, status="merged", merged_into=cluster_ids[i], centroid=None, count=0,
                                term_counts={}, top_terms=[])
                repo.add_mob_event(old, "merge", run_id=run_id, details=d)
                repo.add_mob_event(cluster_ids[i], "merge", run_id=run_id, details=d)
                events.append({"kind": "merge", **d})
            for old in plan.emptied:
                repo.update_mob(old, status="empty", centroid=None, count=0, term_counts={}, top_terms=[])
                repo.add_mob_event(old, "emptied", run_id=run_id, details={})
            label_of = {vid: cluster_ids[c] for c, members in enumerate(new_sets) for vid in members}
            # Videos validated since the snapshot keep their mob (following a merge).
            current = repo.validated_for_clustering()
            touched: set[str] = set(cluster_ids)
            for vid, mob_id, _ver, _vec, _an in current:
                target = label_of.get(vid)
                if target is None and mob_id in merged_into:
                    target = merged_into[mob_id]
                if target is not None and target != mob_id:
                    repo.update_video(vid, mob_id=target)
                if mob_id:
                    touched.add(mob_id)
                if target:
                    touched.add(target)
            # Exact centroids, counts and names from the members.
            by_mob: dict[str, list[tuple[np.ndarray, list[str]]]] = {}
            for vid, _mob_id, _ver, vec, an in repo.validated_for_clustering():
                fresh = repo.video(vid)
                if fresh is None or fresh.mob_id is None or vec is None:
                    continue
                by_mob.setdefault(fresh.mob_id, []).append((vec.astype(np.float64), cl.terms_of(an)))
            counts_of = {m: cl.term_counts(t for _, t in members) for m, members in by_mob.items()}
            df = cl.term_counts(list(c) for c in counts_of.values())
            for mob_id in touched:
                m = repo.mob(mob_id)
                if m is None or m.status == "merged":
                    continue
                members = by_mob.get(mob_id, [])
                if not members:
                    if m.status == "active":
                        repo.update_mob(mob_id, status="empty", centroid=None, count=0, term_counts={},
                                        top_terms=[])
                        repo.add_mob_event(mob_id, "emptied", run_id=run_id, details={})
                    continue
                centroid = np.mean(np.vstack([v for v, _ in members]), axis=0)
                counts = counts_of[mob_id]
                top = cl.top_terms(counts, n=cfg.top_terms, df=df, groups=max(1, len(counts_of)))
                repo.update_mob(mob_id, status="active", centroid=vec_to_blob(centroid), count=len(members),
                                term_counts=counts, top_terms=top,
                                name=cl.stable_name(m.name, top, cfg.mob_name_terms))
            repo.update_run(run_id, status="succeeded", finished_at=tx.now(), videos=len(ids), k=k,
                            score=choice.score, model_version=version,
                            details=self._run_details(repo, run_id, {
                                "silhouette_by_k": {str(kk): round(s, 6) for kk, s in choice.scores.items()},
                                "mobs": cluster_ids, "events": events, "projection": projection}))
        return {"run_id": run_id, "videos": len(ids), "k": k, "score": choice.score, "mobs": cluster_ids,
                "events": events, "projection": projection}

    def runs(self, limit: int = 10) -> list[Any]:
        """The last re-clustering runs, newest first."""
        with self.store.tx(write=False) as tx:
            return list(MobsRepo(tx).runs(limit))
