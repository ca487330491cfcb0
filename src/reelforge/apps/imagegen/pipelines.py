"""`image.generate`: validate -> generate (diffusion model) -> store image + metadata.

Notification is the job's `job.succeeded` event, written with the job's completion (transactional outbox).
"""

from __future__ import annotations

import json
import math
import random
import uuid
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from reelforge import errors
from reelforge.apps.imagegen.ports import ImageGenerateRequest, ImageGenerateResult
from reelforge.domain.pipeline import Graph, Pipeline, Resources, Retry, Task
from reelforge.runtime.context import StepContext

TASK = "image.generate"
MAX_SIDE = 2048


class ImageGenerateInput(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)

    prompt: str = Field(min_length=1, max_length=2000)
    negative_prompt: str | None = Field(default=None, max_length=2000)
    width: int = Field(default=512, ge=64, le=MAX_SIDE, description="Multiple of 8")
    height: int = Field(default=512, ge=64, le=MAX_SIDE, description="Multiple of 8")
    steps: int = Field(default=25, ge=1, le=100)
    guidance_scale: float = Field(default=7.5, ge=0.0, le=30.0)
    seed: int | None = Field(default=None, ge=0, le=2**32 - 1, description="Same seed + same input = same image")
    num_images: int = Field(default=1, ge=1, le=4)
    model: str = Field(min_length=1, max_length=100, examples=["tiny-sd", "sd15", "sdxl-turbo"])

    @field_validator("width", "height")
    @classmethod
    def _multiple_of_8(cls, v: int) -> int:
        if v % 8:
            raise ValueError("must be a multiple of 8")
        return v

    @model_validator(mode="after")
    def _pixels(self) -> ImageGenerateInput:
        if self.width * self.height > MAX_SIDE * MAX_SIDE:
            raise ValueError(f"width x height must be at most {MAX_SIDE * MAX_SIDE} pixels")
        return self


def price(data: dict[str, Any]) -> int:
    """One credit per image per 512x512x25-step unit of work, at least one per image."""
    work = data["width"] * data["height"] * data["steps"] / (512 * 512 * 25)
    return int(data["num_images"]) * max(1, math.ceil(work))


def check(models: Any, data: dict[str, Any]) -> None:
    """At submit time: the model must exist and be able to run here."""
    if not models.has(TASK, data["model"]):
        names = [m.name for m in models.list(TASK)]
        raise errors.ValidationFailed(f"Unknown model {data['model']!r}; known: {', '.join(names)}",
                                      code="unknown_model", field="model")
    info = models.info(TASK, data["model"])
    if not info.available:
        raise errors.ModelUnavailable(info.reason or "model cannot run here", field="model", model=info.name)


def validate(ctx: StepContext, data: dict[str, Any]) -> dict[str, Any]:
    """Fix the seed (so a retry draws the same images) and check the model once more on the worker."""
    out = dict(data)
    if out.get("seed") is None:
        out["seed"] = random.SystemRandom().randrange(0, 2**32)
    check(ctx.services.models, out)
    return out


def generate(ctx: StepContext, data: dict[str, Any]) -> dict[str, Any]:
    """Run the diffusion model and store each PNG as an asset; ids are derived from the job so a retry reuses them."""
    req = ImageGenerateRequest(
        prompt=data["prompt"], negative_prompt=data.get("negative_prompt"), width=data["width"],
        height=data["height"], steps=data["steps"], guidance_scale=data["guidance_scale"], seed=data["seed"],
        num_images=data["num_images"],
    )
    ctx.progress(0.02, "loading model")
    result: ImageGenerateResult = ctx.services.models.run(
        TASK, data["model"], req,
        progress=lambda f, m: ctx.progress(0.05 + 0.9 * f, m),
        cancelled=ctx.stopping,
    )
    info = ctx.services.models.info(TASK, data["model"])
    images = []
    for i, img in enumerate(result.images):
        asset_id = uuid.uuid5(uuid.NAMESPACE_URL, f"reelforge:{ctx.job_id}:image:{i}").hex
        meta = {"prompt": data["prompt"], "negative_prompt": data.get("negative_prompt"), "seed": img.seed,
                "model": data["model"], "steps": data["steps"], "guidance_scale": data["guidance_scale"],
                "index": i, "test_model": info.test_model}
        asset = ctx.services.assets.store_output(
            owner_id=ctx.owner_id, job_id=ctx.job_id, data=img.png, content_type="image/png",
            filename=f"image-{i + 1}.png", metadata=meta, category="images", asset_id=asset_id,
        )
        images.append({"asset_id": asset.id, "seed": img.seed, "width": img.width, "height": img.height,
                       "sha256": asset.sha256, "size": asset.size})
    ctx.progress(0.97, "stored images")
    return {**data, "images": images, "device": result.device, "load_s": round(result.load_s, 4),
            "run_s": round(result.run_s, 4), "notes": list(result.notes), "test_model": info.test_model}


def store(ctx: StepContext, data: dict[str, Any]) -> dict[str, Any]:
    """The metadata record: stored as a JSON asset next to the images, and returned as the job's outputs."""
    record = {
        "prompt": data["prompt"], "negative_prompt": data.get("negative_prompt"), "seed": data["seed"],
        "model": data["model"], "test_model": data["test_model"], "width": data["width"], "height": data["height"],
        "steps": data["steps"], "guidance_scale": data["guidance_scale"], "num_images": data["num_images"],
        "images": data["images"], "device": data["device"],
        "timings": {"load_s": data["load_s"], "run_s": data["run_s"]}, "notes": data["notes"],
    }
    meta_id = uuid.uuid5(uuid.NAMESPACE_URL, f"reelforge:{ctx.job_id}:metadata").hex
    meta_asset = ctx.services.assets.store_output(
        owner_id=ctx.owner_id, job_id=ctx.job_id, data=json.dumps(record, indent=2).encode(),
        content_type="application/json", filename="metadata.json", metadata={"kind": TASK}, category="images",
        asset_id=meta_id,
    )
    return {**record, "metadata_asset_id": meta_asset.id}


PIPELINE = Pipeline(
    kind=TASK,
    version=1,
    description="Text to image with a diffusion model: PNG assets plus a metadata record.",
    graph=Graph(start_at="validate", states=(
        Task("validate", validate, resources=Resources(cpu=0.1, memory_mb=64), timeout_s=60, next="generate"),
        Task("generate", generate, resources=Resources(cpu=2, gpu=1, memory_mb=6144), timeout_s=1800,
             retry=(Retry(errors=("transient_error", "States.Timeout"), interval_s=2, max_attempts=2),),
             next="store", comment="Diffusion model; GPU when present"),
        Task("store", store, resources=Resources(cpu=0.1, memory_mb=64), timeout_s=120, end=True),
    )),
    input_model=ImageGenerateInput,
    price=price,
)
