"""SAM 2.1 (Segment Anything 2) as `video.segment` engines, through the `sam2` package's video predictor.

Models: sam2.1-tiny, sam2.1-small, sam2.1-base-plus, sam2.1-large (Hiera backbones). Weights come from
`<roto.engines.sam2_dir>/<checkpoint>` (default `<models dir>/sam2/`, e.g. `sam2.1_hiera_tiny.pt` as published
by the SAM 2 project), or, with `roto.engines.sam2_hub` on a machine that reaches the Hugging Face hub, from
`facebook/sam2.1-hiera-*` (`SAM2VideoPredictor.from_pretrained`). No package on a registry ships these weights,
so on an offline machine the adapters say so in their availability.

- `prepare(frame)`: the image encoder's features of the frame (one backbone pass), kept with the frame's
  prompt state, so that each click costs only the prompt encoder and mask decoder.
- `segment(...)`: points and box through `add_new_points_or_box`; with a prior, the prior goes in first as a
  mask (`add_new_mask`) and the clicks then refine its logits, as SAM 2 does for corrections.
- `tracker(window=...)`: frames are fed one at a time into an inference state of our own (no video file): the
  anchor masks become conditioning frames (`add_new_mask` + the memory encoder), each step runs
  `_run_single_frame_inference` with the memory bank, and everything older than the model's memory
  (`num_maskmem`, 7 frames, or `sam2_memory_frames`) and the frame window is dropped, so memory stays bounded
  whatever the video's length. `offload_video_to_cpu` / `offload_state_to_cpu` keep frames and memories in host
  memory on a GPU.

The `sam2` package is installed without its dependencies (`make install`: it requires torchvision, which only
its image predictor uses and which is broken beside this project's torch build); hydra-core and iopath come from
the `roto` extra.
"""

from __future__ import annotations

import contextlib
import importlib.util
import threading
from collections import OrderedDict
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from reelforge.apps.roto.ports import TASK, ObjectPrompt, SegmentRequest, SegmentResult
from reelforge.errors import ModelUnavailable, ValidationFailed
from reelforge.ports.models import Availability, CancelledFn, ProgressFn

from .checks import check_frame, check_mask
from .config import EngineConfig

MEAN = (0.485, 0.456, 0.406)
STD = (0.229, 0.224, 0.225)


@dataclass(frozen=True)
class Sam2Model:
    name: str
    config: str  # the hydra config inside the sam2 package
    checkpoint: str  # file name of the published checkpoint
    hub_id: str
    params_m: float
    description: str


SAM2_MODELS: dict[str, Sam2Model] = {
    m.name: m
    for m in (
        Sam2Model("sam2.1-tiny", "configs/sam2.1/sam2.1_hiera_t.yaml", "sam2.1_hiera_tiny.pt",
                  "facebook/sam2.1-hiera-tiny", 38.9, "SAM 2.1 Hiera-T (38.9 M parameters): promptable image and "
                  "video segmentation with a memory bank; the fastest"),
        Sam2Model("sam2.1-small", "configs/sam2.1/sam2.1_hiera_s.yaml", "sam2.1_hiera_small.pt",
                  "facebook/sam2.1-hiera-small", 46.0, "SAM 2.1 Hiera-S (46 M parameters)"),
        Sam2Model("sam2.1-base-plus", "configs/sam2.1/sam2.1_hiera_b+.yaml", "sam2.1_hiera_base_plus.pt",
                  "facebook/sam2.1-hiera-base-plus", 80.8, "SAM 2.1 Hiera-B+ (80.8 M parameters)"),
        Sam2Model("sam2.1-large", "configs/sam2.1/sam2.1_hiera_l.yaml", "sam2.1_hiera_large.pt",
                  "facebook/sam2.1-hiera-large", 224.4, "SAM 2.1 Hiera-L (224.4 M parameters): the most accurate"),
    )
}


def _missing_packages() -> list[str]:
    return [m for m in ("torch", "sam2", "hydra", "iopath") if importlib.util.find_spec(m) is None]


class _FrameWindow:
    """The inference state's `images`: the last `window` frames fed, by frame index (preprocessed tensors)."""

    def __init__(self, window: int) -> None:
        self.window = max(1, window)
        self._frames: OrderedDict[int, Any] = OrderedDict()

    def put(self, index: int, tensor: Any) -> None:
        self._frames[index] = tensor
        self._frames.move_to_end(index)
        while len(self._frames) > self.window:
            self._frames.popitem(last=False)

    def __getitem__(self, index: int) -> Any:
        return self._frames[index]

    def __len__(self) -> int:
        return len(self._frames)

    def nbytes(self) -> int:
        return sum(int(t.numel() * t.element_size()) for t in self._frames.values())


def _new_state(predictor: Any, images: Any, height: int, width: int, device: Any, *, offload_video: bool,
               offload_state: bool, num_frames: int) -> dict[str, Any]:
    """An inference state as `SAM2VideoPredictor.init_state` makes one, over frames we feed ourselves."""
    import torch

    return {
        "images": images,
        "num_frames": num_frames,
        "offload_video_to_cpu": offload_video,
        "offload_state_to_cpu": offload_state,
        "video_height": height,
        "video_width": width,
        "device": device,
        "storage_device": torch.device("cpu") if offload_state else device,
        "point_inputs_per_obj": {},
        "mask_inputs_per_obj": {},
        "cached_features": {},
        "constants": {},
        "obj_id_to_idx": OrderedDict(),
        "obj_idx_to_id": OrderedDict(),
        "obj_ids": [],
        "output_dict_per_obj": {},
        "temp_output_dict_per_obj": {},
        "frames_tracked_per_obj": {},
    }


@dataclass
class Sam2Features:
    """A prepared frame: its image tensor and the image encoder's output, for repeated prompts."""

    shape: tuple[int, int]
    image: Any  # torch tensor (3, S, S)
    cached: dict[int, Any]  # the inference state's cached_features: {0: (image batch, backbone_out)}

    @property
    def nbytes(self) -> int:
        total = int(self.image.numel() * self.image.element_size())
        for _image, backbone in self.cached.values():
            for group in ("backbone_fpn", "vision_pos_enc"):
                total += sum(int(t.numel() * t.element_size()) for t in backbone.get(group, []))
        return total


class Sam2Segmenter:
    """One SAM 2.1 model as a `video.segment` adapter (see the module docstring)."""

    task = TASK
    test_model = False
    source = "sam2 (SAM 2.1 checkpoints)"

    def __init__(self, model: Sam2Model, config: EngineConfig, *, random_weights: bool = False,
                 image_size: int | None = None) -> None:
        """`random_weights` and `image_size` are for tests: the architecture from its config with untrained
        weights (no checkpoint), at a smaller input size."""
        self.model = model
        self.config = config
        self.name = model.name + ("-random" if random_weights else "")
        self.description = model.description
        self.test_model = random_weights
        self.random_weights = random_weights
        self.image_size = image_size
        self._lock = threading.Lock()
        self._predictor: Any = None
        self._device: Any = None

    # Listing ---------------------------------------------------------------------------------------------

    def checkpoint_path(self) -> Path | None:
        path = self.config.sam2_dir / self.model.checkpoint
        return path if path.is_file() else None

    def availability(self) -> Availability:
        missing = _missing_packages()
        if missing:
            return Availability(False, f"needs {', '.join(missing)}: `make install` installs the sam2 package "
                                       "(without its torchvision requirement) and the roto extra")
        if self.random_weights:
            return Availability(True)
        if self.checkpoint_path() is None:
            if not self.config.engines.sam2_hub:
                return Availability(False, f"checkpoint {self.model.checkpoint} not found in "
                                           f"{self.config.sam2_dir} (set roto.engines.sam2_dir, or "
                                           "roto.engines.sam2_hub=true where the Hugging Face hub is reachable)")
            if importlib.util.find_spec("huggingface_hub") is None:
                return Availability(False, "roto.engines.sam2_hub is on but huggingface_hub is not installed")
        if self._planned_device() == "cuda":
            if not _cuda_probe():
                return Availability(False, "device is 'cuda' but no CUDA GPU was found")
        return Availability(True)

    def details(self) -> dict[str, Any]:
        e = self.config.engines
        path = self.checkpoint_path()
        return {
            "interactive": "points (positive/negative), a box, and a prior mask refined by clicks",
            "propagation": f"SAM 2 memory bank over the last {e.sam2_memory_frames} frames plus the anchors; "
                           "frames fed one at a time",
            "parameters_m": self.model.params_m,
            "config": self.model.config,
            "weights": str(path) if path else (self.model.hub_id if e.sam2_hub else None),
            "device": self._planned_device(),
            "offload_video_to_cpu": e.offload_video_to_cpu,
            "offload_state_to_cpu": e.offload_state_to_cpu,
            "random_weights": self.random_weights,
            "lacks": ([] if path or e.sam2_hub or self.random_weights else
                      [f"weights: {self.model.checkpoint} is not in {self.config.sam2_dir}"])
            + ["slow on a CPU (the image encoder runs once per frame)"],
        }

    def _planned_device(self) -> str:
        wanted = self.config.engines.sam2_device if self.config.engines.sam2_device != "auto" else self.config.device
        if wanted == "auto":
            return "cuda" if _cuda_probe() else "cpu"
        return wanted

    # Loading ---------------------------------------------------------------------------------------------

    def setup(self) -> None:
        with self._lock:
            if self._predictor is not None:
                return
            availability = self.availability()
            if not availability.available:
                raise ModelUnavailable(availability.reason or "unavailable", task=TASK, model=self.name)
            import torch

            device_name = self._planned_device()
            if device_name == "cuda" and not torch.cuda.is_available():
                device_name = "cpu"
            overrides = [f"++model.image_size={self.image_size}"] if self.image_size else []
            path = self.checkpoint_path()
            if path is not None or self.random_weights:
                from sam2.build_sam import build_sam2_video_predictor

                predictor = build_sam2_video_predictor(self.model.config, str(path) if path else None,
                                                       device=device_name, hydra_overrides_extra=overrides)
            else:
                from sam2.sam2_video_predictor import SAM2VideoPredictor

                predictor = SAM2VideoPredictor.from_pretrained(self.model.hub_id, device=device_name,
                                                               hydra_overrides_extra=overrides)
            if importlib.util.find_spec("sam2._C") is None:
                # Without the package's CUDA extension (built only where CUDA is) hole filling is skipped
                # anyway, with a warning per frame.
                predictor.fill_hole_area = 0
            self._device = torch.device(device_name)
            self._predictor = predictor

    @property
    def predictor(self) -> Any:
        self.setup()
        return self._predictor

    def _tensor(self, frame: np.ndarray) -> Any:
        import cv2
        import torch

        size = int(self.predictor.image_size)
        x = cv2.resize(frame, (size, size), interpolation=cv2.INTER_LINEAR).astype(np.float32) / 255.0
        normalised = (x - np.array(MEAN, np.float32)) / np.array(STD, np.float32)
        t = torch.from_numpy(np.ascontiguousarray(normalised.transpose(2, 0, 1)))
        if not self.config.engines.offload_video_to_cpu:
            t = t.to(self._device)
        return t

    # video.segment ---------------------------------------------------------------------------------------

    def prepare(self, frame: np.ndarray) -> Sam2Features:
        import torch

        h, w = check_frame(frame)
        predictor = self.predictor
        image = self._tensor(frame)
        state = self._state({0: image}, h, w)
        with torch.inference_mode(), _cpu_flush(self):
            predictor._get_image_feature(state, frame_idx=0, batch_size=1)
        return Sam2Features(shape=(h, w), image=image, cached=state["cached_features"])

    def nbytes(self, features: Any) -> int:
        return int(features.nbytes) if isinstance(features, Sam2Features) else 0

    def _state(self, images: Any, h: int, w: int, num_frames: int = 1) -> dict[str, Any]:
        e = self.config.engines
        return _new_state(self.predictor, images, h, w, self._device, offload_video=e.offload_video_to_cpu,
                          offload_state=e.offload_state_to_cpu, num_frames=num_frames)

    def segment(self, frame: np.ndarray, features: Any, prompt: ObjectPrompt,
                prior: np.ndarray | None = None) -> np.ndarray:
        import torch

        h, w = check_frame(frame)
        if not isinstance(features, Sam2Features) or features.shape != (h, w):
            features = self.prepare(frame)
        prior_mask = check_mask(prior, (h, w), "prior") if prior is not None else None
        points = [(float(p.x), float(p.y)) for p in prompt.points]
        labels = [int(p.label) for p in prompt.points]
        if not points and prompt.box is None:
            return prior_mask.copy() if prior_mask is not None else np.zeros((h, w), dtype=bool)
        predictor = self.predictor
        state = self._state({0: features.image}, h, w)
        state["cached_features"] = features.cached
        with torch.inference_mode(), _cpu_flush(self):
            if prior_mask is not None and prior_mask.any():
                predictor.add_new_mask(state, frame_idx=0, obj_id=prompt.object_id,
                                       mask=torch.from_numpy(prior_mask))
            _, _, masks = predictor.add_new_points_or_box(
                state, frame_idx=0, obj_id=prompt.object_id,
                points=np.array(points, np.float32) if points else None,
                labels=np.array(labels, np.int32) if points else None,
                box=np.array(prompt.box, np.float32) if prompt.box is not None else None,
                clear_old_points=True)
        return np.asarray((masks[0, 0] > 0.0).cpu().numpy(), dtype=bool)

    def tracker(self, *, window: int = 8) -> Sam2Tracker:
        return Sam2Tracker(self, window)

    def run(self, request: Any, *, progress: ProgressFn | None = None,
            cancelled: CancelledFn | None = None) -> SegmentResult:
        if not isinstance(request, SegmentRequest):
            raise ValidationFailed("expected a SegmentRequest", code="invalid_request")
        check_frame(request.frame)
        features = request.features if isinstance(request.features, Sam2Features) else self.prepare(request.frame)
        masks: dict[int, np.ndarray] = {}
        for i, prompt in enumerate(request.prompts):
            masks[prompt.object_id] = self.segment(request.frame, features, prompt,
                                                   request.priors.get(prompt.object_id))
            if progress is not None:
                progress((i + 1) / len(request.prompts), f"object {prompt.object_id}")
        return SegmentResult(masks=masks, engine=self.name,
                             notes=("untrained weights (test model)",) if self.random_weights else ())


class Sam2Tracker:
    """SAM 2 propagation over frames fed one at a time, with a bounded memory bank (see the module)."""

    def __init__(self, engine: Sam2Segmenter, window: int) -> None:
        self.engine = engine
        self.window = max(1, int(window))
        self._frames = _FrameWindow(self.window)
        self._state: dict[str, Any] | None = None
        self._anchor: int | None = None
        self._last: int | None = None
        self._shape: tuple[int, int] | None = None
        self._ids: list[int] = []

    @property
    def held_frames(self) -> int:
        """Frames this tracker holds now (at most `window`)."""
        return len(self._frames)

    def memory_frames(self) -> int:
        """Frames with stored outputs in the memory bank (conditioning + recent), over every object."""
        if self._state is None:
            return 0
        return max((len(d["cond_frame_outputs"]) + len(d["non_cond_frame_outputs"])
                    for d in self._state["output_dict_per_obj"].values()), default=0)

    def anchor(self, index: int, frame: np.ndarray, masks: Mapping[int, np.ndarray]) -> None:
        import torch

        h, w = check_frame(frame)
        engine = self.engine
        predictor = engine.predictor
        if self._shape != (h, w):
            self._frames = _FrameWindow(self.window)
            self._shape = (h, w)
        self._frames.put(index, engine._tensor(frame))
        state = engine._state(self._frames, h, w, num_frames=index + 1)
        self._ids = []
        with torch.inference_mode(), _cpu_flush(self):
            for oid, m in masks.items():
                mask = check_mask(m, (h, w), f"mask of object {oid}")
                predictor.add_new_mask(state, frame_idx=index, obj_id=int(oid), mask=torch.from_numpy(mask))
                self._ids.append(int(oid))
            if self._ids:
                predictor.propagate_in_video_preflight(state)
        self._state = state
        self._anchor = index
        self._last = index

    def step(self, index: int, frame: np.ndarray) -> dict[int, np.ndarray]:
        import torch

        if self._state is None or self._last is None:
            raise ValidationFailed("anchor the tracker on a frame with known masks before stepping",
                                   code="tracker_not_anchored")
        h, w = check_frame(frame)
        if (h, w) != self._shape:
            raise ValidationFailed(f"frame is {(h, w)}, the anchor was {self._shape}", code="invalid_frame")
        if not self._ids:
            self._last = index
            return {}
        engine = self.engine
        predictor = engine.predictor
        state = self._state
        reverse = index < self._last
        self._frames.put(index, engine._tensor(frame))
        # Indices beyond num_frames are treated as outside the video: keep it past every index we feed.
        state["num_frames"] = max(state["num_frames"], index + 1, (self._anchor or 0) + 1)
        out: dict[int, np.ndarray] = {}
        with torch.inference_mode(), _cpu_flush(self):
            for obj_idx, oid in enumerate(self._ids):
                output_dict = state["output_dict_per_obj"][obj_idx]
                current, pred = predictor._run_single_frame_inference(
                    inference_state=state, output_dict=output_dict, frame_idx=index, batch_size=1,
                    is_init_cond_frame=False, point_inputs=None, mask_inputs=None, reverse=reverse,
                    run_mem_encoder=True)
                output_dict["non_cond_frame_outputs"][index] = current
                state["frames_tracked_per_obj"][obj_idx][index] = {"reverse": reverse}
                _, video = predictor._get_orig_video_res_output(state, pred)
                out[oid] = np.asarray((video[0, 0] > 0.0).cpu().numpy(), dtype=bool)
                self._prune(output_dict, index, reverse)
        self._last = index
        return out

    def _prune(self, output_dict: dict[str, Any], index: int, reverse: bool) -> None:
        """Drops memories the model can no longer attend to: non-conditioning outputs further than
        `sam2_memory_frames` (x the memory stride) behind the current frame."""
        predictor = self.engine.predictor
        keep = int(self.engine.config.engines.sam2_memory_frames) * int(
            getattr(predictor, "memory_temporal_stride_for_eval", 1))
        old = [t for t in output_dict["non_cond_frame_outputs"] if (t > index + keep if reverse else t < index - keep)]
        for t in old:
            output_dict["non_cond_frame_outputs"].pop(t, None)
        assert self._state is not None
        for tracked in self._state["frames_tracked_per_obj"].values():
            for t in [t for t in tracked if t != self._anchor and (t > index + keep if reverse else t < index - keep)]:
                tracked.pop(t, None)


def _cuda_probe() -> bool:
    """A CUDA GPU is likely usable (without importing torch): the driver is loaded."""
    return Path("/proc/driver/nvidia/version").exists() or Path("/dev/nvidiactl").exists()


@contextlib.contextmanager
def _cpu_flush(engine: Any) -> Iterator[None]:
    """Denormal floats flushed to zero while the model runs on the CPU (they can make convolutions ~10x slower).
    The flag lives in the calling thread's floating-point control register, so it is set for the call and
    cleared after it, never left behind for other code on that thread."""
    import torch

    engine = getattr(engine, "engine", engine)  # a tracker runs on its engine's device
    on_cpu = str(getattr(engine, "_device", None) or "cpu").startswith("cpu")
    if not on_cpu:
        yield
        return
    torch.set_flush_denormal(True)
    try:
        yield
    finally:
        torch.set_flush_denormal(False)
