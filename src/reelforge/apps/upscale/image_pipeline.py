"""`image.upscale`: one still image through a super-resolution model (the same models as `video.upscale`).

upscale (decode with a pixel cap -> model -> encode -> store, lifecycle hot). The shared pieces of both
upscale job kinds live here: model checks at submit time, the pricing rule and the ownership check.

Pricing (both kinds): one credit per started 1000 output megapixel-frames, at least one credit:
``max(1, ceil(out_width * out_height / 1e6 * frames / 1000))``. A still image counts as one frame, so
any image up to 1000 output megapixels costs one credit; a 10 s 24 fps 480p video upscaled x2 (1.6 MP
output, 240 frames, 393 MP-frames) costs one; a minute of 1080p to 4K at 30 fps (14 930 MP-frames) costs 15.
"""

from __future__ import annotations

import io
import math
import uuid
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from reelforge import errors
from reelforge.domain.pipeline import Graph, Pipeline, Resources, Retry, Task
from reelforge.runtime.context import StepContext

TASK = "image.upscale"
KIND = "image.upscale"
MP_FRAMES_PER_CREDIT = 1000.0

FORMATS: dict[str, tuple[str, str, str]] = {
    # format -> (Pillow format, content type, extension)
    "png": ("PNG", "image/png", "png"),
    "jpeg": ("JPEG", "image/jpeg", "jpg"),
    "webp": ("WEBP", "image/webp", "webp"),
}


class ImageUpscaleInput(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)

    asset_id: str = Field(min_length=1, max_length=64, description="An image you uploaded")
    model: str = Field(min_length=1, max_length=100, examples=["realesr-animevideov3", "lanczos"])
    scale: int = Field(ge=2, le=4)
    denoise: float | None = Field(default=None, ge=0.0, le=1.0, description="Where the model supports it")
    format: Literal["png", "jpeg", "webp"] = "png"
    source: dict[str, Any] | None = Field(default=None, description="Set at submit time (size of the image); "
                                                                       "a value sent by a client is replaced")


# --- shared by image.upscale and video.upscale ----------------------------------------------------------------

def credits_for(out_width: int, out_height: int, frames: int) -> int:
    """The pricing rule (module docstring): started 1000 output megapixel-frames, at least 1."""
    work = out_width * out_height / 1e6 * max(1, frames) / MP_FRAMES_PER_CREDIT
    return max(1, math.ceil(work - 1e-9))


def model_scales(models: Any, name: str) -> tuple[int, ...]:
    """The scales an upscaling model supports (adapter attribute, else its listing details)."""
    try:
        adapter = models.get(TASK, name)
        scales = getattr(adapter, "scales", None)
    except errors.ReelforgeError:
        scales = None
    if not scales:
        scales = models.info(TASK, name).details.get("scales") or ()
    return tuple(int(s) for s in scales)


def check_model(models: Any, data: dict[str, Any]) -> None:
    """The model must exist for image.upscale, be able to run here and support the scale (422 otherwise)."""
    name = data["model"]
    if not models.has(TASK, name):
        names = [m.name for m in models.list(TASK)]
        raise errors.ValidationFailed(f"Unknown model {name!r}; known for {TASK}: {', '.join(names) or 'none'}",
                                      code="unknown_model", field="model")
    info = models.info(TASK, name)
    if not info.available:
        raise errors.ModelUnavailable(info.reason or "model cannot run here", field="model", model=name)
    scales = model_scales(models, name)
    if scales and int(data["scale"]) not in scales:
        raise errors.ValidationFailed(
            f"Model {name!r} supports scale {', '.join(map(str, scales))}, not {data['scale']}",
            code="unsupported_scale", field="scale", supported=list(scales))


def owned_source(assets: Any, owner_id: str, asset_id: str) -> Any:
    """The input asset if it belongs to the submitter; anything else is 404 (never 403)."""
    return assets.owned_asset(owner_id, asset_id)


def upscale_frames(ctx: StepContext, model: str, scale: int, frames: list[Any], denoise: float | None) -> Any:
    """Run the model on a batch of RGB frames through the metered registry; the cancel probe is passed on."""
    from reelforge.apps.upscale.ports import UpscaleRequest

    return ctx.services.models.run(TASK, model, UpscaleRequest(images=list(frames), scale=scale, denoise=denoise),
                                   cancelled=ctx.stopping)


# --- image.upscale --------------------------------------------------------------------------------------------

def image_limits(settings: Any) -> Any:
    """The platform's media policy with this application's own image cap (`upscale.max_image_pixels`)."""
    return settings.media.limits().tightened(image_max_pixels=settings.upscale.max_image_pixels)


def _image_header(container: Any, owner_id: str, asset_id: str) -> tuple[Any, int, int]:
    """The caller's image, measured from its header by the platform's media policy (nothing decoded)."""
    asset = owned_source(container.assets, owner_id, asset_id)
    if asset.content_type.startswith(("video/", "audio/", "text/")):
        raise errors.ValidationFailed(f"The asset is {asset.content_type}, not an image", code="not_an_image",
                                      field="asset_id")
    facts = container.media.check_image(asset, image_limits(container.settings))
    return asset, int(facts["width"]), int(facts["height"])


def submit_check(container: Any, principal: Any, data: dict[str, Any]) -> None:
    """At submit time: the image is the caller's, readable and within the pixel caps; notes its size for price()."""
    settings = container.settings
    _, w, h = _image_header(container, principal.user_id, data["asset_id"])
    scale = int(data["scale"])
    if w * scale * h * scale > settings.upscale.max_output_pixels:
        raise errors.ValidationFailed(
            f"{w}x{h} x{scale} would be {w * scale}x{h * scale}, over {settings.upscale.max_output_pixels} pixels",
            code="output_too_large", field="scale", limit=settings.upscale.max_output_pixels)
    data["source"] = {"width": w, "height": h}


def price(data: dict[str, Any]) -> int:
    """Output megapixels x 1 frame (see the module docstring)."""
    src = data.get("source") or {}
    scale = int(data["scale"])
    return credits_for(int(src.get("width", 0)) * scale, int(src.get("height", 0)) * scale, 1)


def upscale(ctx: StepContext, data: dict[str, Any]) -> dict[str, Any]:
    """Decode (pixel cap), upscale, encode in the asked format and store it; the asset id comes from the job."""
    import numpy as np

    from reelforge.adapters.media.inputs import decode_image, inspect_image
    from reelforge.domain.media import check_decode_memory, decode_memory

    settings = ctx.services.settings
    check_model(ctx.services.models, data)
    asset, raw = ctx.services.assets.read_owned(ctx.owner_id, data["asset_id"])
    limits = image_limits(settings)
    scale = int(data["scale"])
    # The header again on the worker (the asset may have been checked under other settings), then the memory the
    # step will hold: the picture as RGBA and RGB, and the upscaled result twice (model output, encoder input).
    facts = inspect_image(raw, limits)
    check_decode_memory(decode_memory(facts.width, facts.height, "rgba", references=0, held_rgb=2,
                                      rgb_scale=scale), ctx.memory_mb, what="upscaling this image")
    img = decode_image(raw, limits)
    mode = img.mode
    rgb = np.asarray(img.convert("RGB"))
    ctx.progress(0.1, "upscaling")
    result = upscale_frames(ctx, data["model"], scale, [rgb], data.get("denoise"))
    out = np.asarray(result.images[0], dtype=np.uint8)
    from PIL import Image

    pil_format, content_type, ext = FORMATS[data["format"]]
    out_img = Image.fromarray(out, "RGB")
    if "A" in mode and pil_format != "JPEG":
        # The models see RGB; the alpha channel is resized with Lanczos and put back.
        alpha = img.convert("RGBA").getchannel("A").resize(out_img.size, Image.Resampling.LANCZOS)
        out_img = out_img.convert("RGBA")
        out_img.putalpha(alpha)
    buf = io.BytesIO()
    out_img.save(buf, format=pil_format, **({"quality": 92} if pil_format in ("JPEG", "WEBP") else {}))
    ctx.progress(0.9, "storing")
    stem = (asset.filename or "image").rsplit(".", 1)[0]
    out_id = uuid.uuid5(uuid.NAMESPACE_URL, f"reelforge:{ctx.job_id}:upscaled").hex
    stored = ctx.services.assets.store_output(
        owner_id=ctx.owner_id, job_id=ctx.job_id, data=buf.getvalue(), content_type=content_type,
        filename=f"{stem}-x{scale}.{ext}", metadata={"kind": KIND, "model": data["model"], "scale": scale,
                                                      "source_asset_id": asset.id},
        category="images", asset_id=out_id)
    return {"asset_id": stored.id, "source_asset_id": asset.id, "model": data["model"], "scale": scale,
            "width": out_img.size[0], "height": out_img.size[1], "source_width": img.size[0],
            "source_height": img.size[1], "format": data["format"], "size": stored.size, "sha256": stored.sha256,
            "device": getattr(result, "device", None), "backend": getattr(result, "backend", None),
            "notes": list(getattr(result, "notes", []) or [])}


PIPELINE = Pipeline(
    kind=KIND,
    version=1,
    description="Upscale one image with a super-resolution model (Real-ESRGAN) or a Lanczos/bicubic baseline.",
    graph=Graph(start_at="upscale", states=(
        Task("upscale", upscale, resources=Resources(cpu=2, gpu=1, memory_mb=4096), timeout_s=1800,
             retry=(Retry(errors=("transient_error", "storage_error"), interval_s=1, max_attempts=2),),
             end=True, comment="Model on GPU when present"),
    )),
    input_model=ImageUpscaleInput,
    price=price,
)
