"""The two Real-ESRGAN architectures in plain PyTorch: SRVGGNetCompact and RRDBNet.

Written from the graphs in the shipped ncnn `.param` files, so that weights converted from the `.bin` files load
with `load_state_dict(strict=True)`. Parameter names follow the Real-ESRGAN reference implementation (body.N,
conv_first, RRDB_trunk-style `body.N.rdbK.convJ`), which keeps converted files readable next to published ones.

Both take RGB in 0..1, NCHW, and return the upscaled image unclipped (the caller clamps). This module imports
torch at import time; import it only from code paths that run a torch model.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F


class SRVGGNetCompact(nn.Module):
    """Real-ESRGAN's compact VGG-style network (realesr-animevideov3).

    conv in + PReLU, `num_conv` conv + PReLU pairs, conv out to 3*upscale² channels, PixelShuffle, plus the
    nearest-upsampled input. `out_scale` < upscale adds the final bicubic resize that the shipped x2/x3 files
    put after the x4 network (their weights are the x4 network's).
    """

    def __init__(self, num_in_ch: int = 3, num_out_ch: int = 3, num_feat: int = 64, num_conv: int = 16,
                 upscale: int = 4, out_scale: int | None = None) -> None:
        super().__init__()
        self.upscale = upscale
        self.out_scale = out_scale or upscale
        layers: list[nn.Module] = [nn.Conv2d(num_in_ch, num_feat, 3, 1, 1), nn.PReLU(num_parameters=num_feat)]
        for _ in range(num_conv):
            layers += [nn.Conv2d(num_feat, num_feat, 3, 1, 1), nn.PReLU(num_parameters=num_feat)]
        layers.append(nn.Conv2d(num_feat, num_out_ch * upscale * upscale, 3, 1, 1))
        self.body = nn.ModuleList(layers)
        self.upsampler = nn.PixelShuffle(upscale)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = x
        for layer in self.body:
            out = layer(out)
        out = self.upsampler(out) + F.interpolate(x, scale_factor=self.upscale, mode="nearest")
        if self.out_scale != self.upscale:
            h, w = x.shape[-2:]
            out = F.interpolate(out, size=(h * self.out_scale, w * self.out_scale), mode="bicubic",
                                align_corners=False)
        return out


class ResidualDenseBlock(nn.Module):
    """Five 3x3 convs with dense connections; the output is scaled by 0.2 and added to the input."""

    def __init__(self, num_feat: int = 64, num_grow_ch: int = 32) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(num_feat, num_grow_ch, 3, 1, 1)
        self.conv2 = nn.Conv2d(num_feat + num_grow_ch, num_grow_ch, 3, 1, 1)
        self.conv3 = nn.Conv2d(num_feat + 2 * num_grow_ch, num_grow_ch, 3, 1, 1)
        self.conv4 = nn.Conv2d(num_feat + 3 * num_grow_ch, num_grow_ch, 3, 1, 1)
        self.conv5 = nn.Conv2d(num_feat + 4 * num_grow_ch, num_feat, 3, 1, 1)
        self.lrelu = nn.LeakyReLU(negative_slope=0.2, inplace=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x1 = self.lrelu(self.conv1(x))
        x2 = self.lrelu(self.conv2(torch.cat((x, x1), 1)))
        x3 = self.lrelu(self.conv3(torch.cat((x, x1, x2), 1)))
        x4 = self.lrelu(self.conv4(torch.cat((x, x1, x2, x3), 1)))
        x5 = self.conv5(torch.cat((x, x1, x2, x3, x4), 1))
        return x5 * 0.2 + x


class RRDB(nn.Module):
    """Residual in residual dense block: three dense blocks, scaled by 0.2, plus the input."""

    def __init__(self, num_feat: int, num_grow_ch: int = 32) -> None:
        super().__init__()
        self.rdb1 = ResidualDenseBlock(num_feat, num_grow_ch)
        self.rdb2 = ResidualDenseBlock(num_feat, num_grow_ch)
        self.rdb3 = ResidualDenseBlock(num_feat, num_grow_ch)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.rdb3(self.rdb2(self.rdb1(x)))
        return out * 0.2 + x


class RRDBNet(nn.Module):
    """ESRGAN's generator as used by RealESRGAN_x4plus: conv_first, `num_block` RRDBs, conv_body with a long
    skip, two nearest x2 upsamplings each followed by conv + LeakyReLU, conv_hr + LeakyReLU, conv_last."""

    def __init__(self, num_in_ch: int = 3, num_out_ch: int = 3, num_feat: int = 64, num_block: int = 23,
                 num_grow_ch: int = 32, upscale: int = 4) -> None:
        super().__init__()
        if upscale != 4:
            raise ValueError("this RRDBNet builds the x4 generator only")
        self.upscale = upscale
        self.out_scale = upscale
        self.conv_first = nn.Conv2d(num_in_ch, num_feat, 3, 1, 1)
        self.body = nn.Sequential(*[RRDB(num_feat, num_grow_ch) for _ in range(num_block)])
        self.conv_body = nn.Conv2d(num_feat, num_feat, 3, 1, 1)
        self.conv_up1 = nn.Conv2d(num_feat, num_feat, 3, 1, 1)
        self.conv_up2 = nn.Conv2d(num_feat, num_feat, 3, 1, 1)
        self.conv_hr = nn.Conv2d(num_feat, num_feat, 3, 1, 1)
        self.conv_last = nn.Conv2d(num_feat, num_out_ch, 3, 1, 1)
        self.lrelu = nn.LeakyReLU(negative_slope=0.2, inplace=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        feat = self.conv_first(x)
        feat = feat + self.conv_body(self.body(feat))
        feat = self.lrelu(self.conv_up1(F.interpolate(feat, scale_factor=2, mode="nearest")))
        feat = self.lrelu(self.conv_up2(F.interpolate(feat, scale_factor=2, mode="nearest")))
        return self.conv_last(self.lrelu(self.conv_hr(feat)))


class TorchUpscaler:
    """A converted network as a tiler backend: uint8 (N, h, w, 3) -> float32 (N, h*s, w*s, 3) in 0..1.

    Precision: ``fp16`` (the default on CUDA, the whole batch of frames in one forward pass), ``bf16`` (on a CPU
    with bfloat16 matrix units: autocast over fp32 weights, so oneDNN runs the convolutions in bf16 and keeps
    fp32 accumulation) or ``fp32``. On a CPU the tensors are channels_last (oneDNN's native layout: no reorder
    per convolution) and denormals are flushed to zero (they make CPU convolutions many times slower).
    """

    def __init__(self, module: nn.Module, scale: int, device: str = "cpu", *, half: bool | None = None,
                 precision: str | None = None) -> None:
        self.device = torch.device(device)
        if precision is None:
            # fp16 by default on CUDA only; `half=True` on a CPU is for checking fp16 numerics without a GPU.
            use_half = self.device.type == "cuda" if half is None else half
            precision = "fp16" if use_half else "fp32"
        if precision not in ("fp32", "bf16", "fp16"):
            raise ValueError(f"unknown precision {precision!r}")
        self.precision = precision
        self.half = precision == "fp16"
        self.channels_last = self.device.type == "cpu"
        if self.device.type == "cpu":
            torch.set_flush_denormal(True)
        module = module.to(self.device, dtype=torch.float16 if self.half else torch.float32).eval()
        if self.channels_last:
            module = module.to(memory_format=torch.channels_last)  # type: ignore[call-overload]
        self.module = module
        self.scale = scale

    @torch.inference_mode()
    def __call__(self, batch: np.ndarray) -> np.ndarray:
        x = torch.from_numpy(np.ascontiguousarray(batch)).to(self.device).permute(0, 3, 1, 2)
        x = x.to(torch.float16 if self.half else torch.float32).div_(255.0)
        if self.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        if self.precision == "bf16":
            with torch.autocast(self.device.type, dtype=torch.bfloat16):
                y = self.module(x)
        else:
            y = self.module(x)
        return y.float().permute(0, 2, 3, 1).contiguous().cpu().numpy()

    def release_cache(self) -> None:
        """Give cached allocator blocks back after an out-of-memory error, before retrying smaller."""
        if self.device.type == "cuda":
            torch.cuda.empty_cache()
