"""The embedding projection: deterministic, versioned, saved and loaded, refitted from raw features."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from reelforge.apps.mobs.models import Projection, fit_projection, random_projection
from reelforge.apps.mobs.models.embeddings import RAW_DIM
from reelforge.errors import ValidationFailed


def _raw(n: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((3, RAW_DIM))
    return (centres[np.arange(n) % 3] + 0.1 * rng.standard_normal((n, RAW_DIM))).astype(np.float32)


def test_random_projection_is_deterministic_orthogonal_and_named() -> None:
    a, b = random_projection(256, seed=7), random_projection(256, seed=7)
    assert a.version == "rp-7-256"
    assert np.array_equal(a.matrix, b.matrix)
    assert not np.allclose(a.matrix, random_projection(256, seed=8).matrix)
    gram = a.matrix.T.astype(np.float64) @ a.matrix
    assert np.allclose(gram, np.eye(256), atol=1e-4)
    y = a.project(_raw(4))
    assert y.shape == (4, 256) and y.dtype == np.float32
    assert np.allclose(np.linalg.norm(y, axis=1), 1.0, atol=1e-5)


def test_projection_refuses_wrong_input_size() -> None:
    with pytest.raises(ValidationFailed) as err:
        random_projection(64).project(np.ones(10))
    assert err.value.code == "dimension_mismatch"


def test_fit_is_deterministic_versioned_and_keeps_structure(tmp_path: Path) -> None:
    raw = _raw(30)
    p1, p2 = fit_projection(raw, 16), fit_projection(raw.copy(), 16)
    assert p1.version == p2.version and p1.version.startswith("pca-16-")
    assert np.array_equal(p1.matrix, p2.matrix)
    assert fit_projection(_raw(30, seed=1), 16).version != p1.version
    y = p1.project(raw)
    sims = y @ y.T
    same = np.equal.outer(np.arange(30) % 3, np.arange(30) % 3)
    assert sims[same].mean() > 0.9 and sims[~same].mean() < 0.2
    path = tmp_path / "p.npz"
    p1.save(path)
    loaded = Projection.load(path)
    assert loaded.version == p1.version and np.array_equal(loaded.project(raw), y)


def test_fit_with_fewer_samples_than_dim_still_gives_dim_outputs() -> None:
    p = fit_projection(_raw(10), 256)
    assert p.dim == 256
    gram = p.matrix.T.astype(np.float64) @ p.matrix
    assert np.allclose(gram, np.eye(256), atol=1e-3)


def test_fit_needs_enough_rows_and_a_tampered_file_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ValidationFailed) as err:
        fit_projection(_raw(3), 8)
    assert err.value.code == "not_enough_data"
    p = fit_projection(_raw(12), 8)
    bad = Projection(p.kind, p.matrix * 2, p.mean, p.version, p.seed, p.n_fit)
    with pytest.raises(ValidationFailed) as err2:
        Projection.from_bytes(bad.to_bytes())
    assert err2.value.code == "projection_corrupt"
