"""A tiny random-weight Stable Diffusion pipeline built from in-code configs.

No pretrained weights can be downloaded on the machines that run the test suite, so tests and demos use
this: the real `StableDiffusionPipeline` code path (tokenizer, text encoder, UNet, VAE, scheduler) with
about 2 M random parameters. It produces noise-like images in well under a second at 64x64 on a CPU.
The recipe is the one in notes/offline-models-and-media.md section 10.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

# Bump when the recipe changes, so a folder built by an older recipe can be told apart.
RECIPE_VERSION = 1
BUILD_INFO_FILE = "reelforge-build.json"


@contextlib.contextmanager
def dir_lock(target_dir: Path) -> Iterator[None]:
    """Hold an exclusive advisory lock that guards the creation of `target_dir`.

    The lock file sits next to the folder (not inside it) so that the folder itself can be renamed into
    place atomically. flock is released by the kernel when the process dies, so a crashed builder never
    leaves a stale lock behind.
    """
    target_dir.parent.mkdir(parents=True, exist_ok=True)
    lock_path = target_dir.parent / f".{target_dir.name}.lock"
    with open(lock_path, "a+b") as fh:
        fcntl.flock(fh.fileno(), fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh.fileno(), fcntl.LOCK_UN)


@contextlib.contextmanager
def quiet_progress_bars() -> Iterator[None]:
    """Hide diffusers' and transformers' tqdm bars (loading, saving) for the duration of the block.

    They only clutter worker logs. The switches are process-wide, so they are put back as they were.
    """
    from diffusers.utils import logging as diffusers_logging
    from transformers.utils import logging as transformers_logging

    restore = []
    for module in (diffusers_logging, transformers_logging):
        if module.is_progress_bar_enabled():
            module.disable_progress_bar()
            restore.append(module)
    try:
        yield
    finally:
        for module in restore:
            module.enable_progress_bar()


def is_pipeline_dir(path: Path) -> bool:
    """True when `path` is a saved diffusers pipeline folder (it has model_index.json)."""
    return (path / "model_index.json").is_file()


def _bytes_to_unicode() -> dict[int, str]:
    # GPT-2/CLIP byte -> printable unicode table. transformers 5 no longer exports its own copy
    # (transformers.models.clip.tokenization_clip.bytes_to_unicode), so the recipe carries one.
    bs = (
        list(range(ord("!"), ord("~") + 1))
        + list(range(ord("¡"), ord("¬") + 1))
        + list(range(ord("®"), ord("ÿ") + 1))
    )
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return dict(zip(bs, map(chr, cs), strict=True))


def _char_vocab() -> dict[str, int]:
    # A character-level BPE vocabulary with no merges: every byte, its end-of-word form, and the two
    # special tokens (514 entries). Any prompt tokenizes, and different prompts give different ids.
    chars = list(_bytes_to_unicode().values())
    vocab = {c: i for i, c in enumerate(chars)}
    vocab.update({c + "</w>": i + len(chars) for i, c in enumerate(chars)})
    vocab["<|startoftext|>"] = len(vocab)
    vocab["<|endoftext|>"] = len(vocab)
    return vocab


def _build_pipeline(seed: int) -> Any:
    import torch
    from diffusers import AutoencoderKL, DDIMScheduler, StableDiffusionPipeline, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTokenizer

    vocab = _char_vocab()
    with tempfile.TemporaryDirectory(prefix="reelforge-tok-") as tok_dir:
        # Files rather than in-memory dicts: the (vocab_file, merges_file) form works on transformers 4 and 5.
        (Path(tok_dir) / "vocab.json").write_text(json.dumps(vocab), encoding="utf-8")
        (Path(tok_dir) / "merges.txt").write_text("#version: 0.2\n", encoding="utf-8")
        tokenizer = CLIPTokenizer(
            str(Path(tok_dir) / "vocab.json"), str(Path(tok_dir) / "merges.txt"), model_max_length=77
        )

    # fork_rng keeps the caller's global RNG untouched while making the weights a function of `seed`.
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        text_encoder = CLIPTextModel(
            CLIPTextConfig(
                bos_token_id=vocab["<|startoftext|>"],
                eos_token_id=vocab["<|endoftext|>"],
                pad_token_id=vocab["<|endoftext|>"],
                hidden_size=32,
                intermediate_size=37,
                layer_norm_eps=1e-5,
                num_attention_heads=4,
                num_hidden_layers=5,
                vocab_size=len(vocab),
            )
        )
        unet = UNet2DConditionModel(
            block_out_channels=(32, 64),
            layers_per_block=2,
            sample_size=32,
            in_channels=4,
            out_channels=4,
            down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"),
            up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"),
            cross_attention_dim=32,
        )
        vae = AutoencoderKL(
            block_out_channels=[32, 64],
            in_channels=3,
            out_channels=3,
            down_block_types=["DownEncoderBlock2D"] * 2,
            up_block_types=["UpDecoderBlock2D"] * 2,
            latent_channels=4,
            # With two blocks the VAE downsamples by 2: 64x64 pixels -> 32x32 latents = the UNet's sample_size.
            sample_size=64,
        )
    scheduler = DDIMScheduler(
        beta_start=0.00085,
        beta_end=0.012,
        beta_schedule="scaled_linear",
        clip_sample=False,
        set_alpha_to_one=False,
        # steps_offset=1 is what SD 1.x ships with; leaving it at 0 triggers a deprecation warning on load.
        steps_offset=1,
    )
    return StableDiffusionPipeline(
        unet=unet,
        vae=vae,
        text_encoder=text_encoder,
        tokenizer=tokenizer,
        scheduler=scheduler,
        safety_checker=None,
        feature_extractor=None,
        requires_safety_checker=False,
    )


def build_tiny_sd(target_dir: Path, seed: int = 0) -> Path:
    """Build the tiny random-weight SD pipeline and save it as a diffusers folder at `target_dir`.

    Deterministic: the same seed (and library versions) gives the same weights. The folder appears
    atomically (built in a temporary folder next to it, then renamed), and a file lock makes concurrent
    builders, in threads or processes, wait for each other; a folder that is already complete is kept
    as it is, whatever seed built it. Returns `target_dir`.
    """
    target_dir = Path(target_dir)
    if is_pipeline_dir(target_dir):
        return target_dir
    with dir_lock(target_dir):
        # Another builder may have finished while this one waited for the lock.
        if is_pipeline_dir(target_dir):
            return target_dir
        if target_dir.exists():
            if any(target_dir.iterdir()):
                raise FileExistsError(f"{target_dir} exists but is not a diffusers pipeline folder")
            target_dir.rmdir()
        tmp_dir = Path(tempfile.mkdtemp(prefix=f".{target_dir.name}.tmp-", dir=target_dir.parent))
        try:
            pipe = _build_pipeline(seed)
            with quiet_progress_bars():
                pipe.save_pretrained(tmp_dir, safe_serialization=True)
            (tmp_dir / BUILD_INFO_FILE).write_text(
                json.dumps({"recipe": "tiny-sd", "recipe_version": RECIPE_VERSION, "seed": seed}),
                encoding="utf-8",
            )
            # mkdtemp makes the folder private (0700); a model folder is meant to be readable like any other.
            tmp_dir.chmod(0o755)
            os.replace(tmp_dir, target_dir)
        except BaseException:
            shutil.rmtree(tmp_dir, ignore_errors=True)
            raise
    return target_dir
