"""ncnn `.param`/`.bin` -> PyTorch state_dict converter for the shipped Real-ESRGAN models.

The `.param` file is ncnn's text graph: a magic line (7767517), a "layers blobs" line, then one line per layer:
`type name n_in n_out in_blobs... out_blobs... k=v ...`. The `.bin` file holds the weights of the layers that
have any, in layer order, with no names:

- Convolution: `weight_data` (num_output * num_input * k * k values, in torch's OIHW order), stored with a
  4-byte tag first: 0x01306B47 = float16 (padded to 4 bytes), 0 = float32; then, when bias_term (5=1), the bias
  as raw float32 (no tag).
- PReLU: `num_slope` raw float32 values (no tag).

Other layers in these graphs (Input, Split, Concat, Eltwise, BinaryOp, Interp, PixelShuffle) have no weights.
The converter reads the graph, checks that it is one of the two architectures in `torch_arch` (and with which
hyper-parameters), maps the weights onto the torch parameter names and caches the result as safetensors,
keyed by the sha256 of the source files. It needs numpy and safetensors only, not torch.
"""

from __future__ import annotations

import hashlib
import json
import os
import struct
import tempfile
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

NCNN_MAGIC = 7767517
TAG_FP16 = 0x01306B47
TAG_FP32 = 0x00000000
CONVERTER_VERSION = "1"


class ConversionError(ValueError):
    """The ncnn files are not a graph this converter knows, or they are damaged."""


@dataclass(frozen=True)
class NcnnLayer:
    type: str
    name: str
    inputs: tuple[str, ...]
    outputs: tuple[str, ...]
    params: dict[str, str]
    weights: dict[str, np.ndarray] = field(default_factory=dict, compare=False)

    def int_param(self, key: str, default: int = 0) -> int:
        return int(self.params.get(key, default))

    def float_param(self, key: str, default: float = 0.0) -> float:
        return float(self.params.get(key, default))


@dataclass(frozen=True)
class ArchSpec:
    """Which torch architecture a graph is, and its hyper-parameters."""

    kind: str  # "srvgg" | "rrdb"
    num_feat: int
    upscale: int  # the network's own factor
    out_scale: int  # after any final resize in the graph
    num_conv: int = 0  # srvgg body convs
    num_block: int = 0  # rrdb blocks
    num_grow_ch: int = 0  # rrdb growth channels

    def to_json(self) -> str:
        return json.dumps(asdict(self), sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> ArchSpec:
        return cls(**json.loads(text))


def parse_param(text: str) -> list[NcnnLayer]:
    """The layers of an ncnn text `.param` file, in file order."""
    lines = [ln for ln in text.splitlines() if ln.strip()]
    if len(lines) < 3 or lines[0].strip() != str(NCNN_MAGIC):
        raise ConversionError("not an ncnn text .param file (bad magic line)")
    try:
        layer_count, _blob_count = (int(v) for v in lines[1].split())
    except ValueError as exc:
        raise ConversionError("bad layer/blob count line in .param") from exc
    layers: list[NcnnLayer] = []
    for line in lines[2:]:
        parts = line.split()
        try:
            n_in, n_out = int(parts[2]), int(parts[3])
        except (IndexError, ValueError) as exc:
            raise ConversionError(f"bad layer line in .param: {line[:80]!r}") from exc
        blobs = parts[4:4 + n_in + n_out]
        params = dict(p.split("=", 1) for p in parts[4 + n_in + n_out:] if "=" in p)
        layers.append(NcnnLayer(parts[0], parts[1], tuple(blobs[:n_in]), tuple(blobs[n_in:]), params))
    if len(layers) != layer_count:
        raise ConversionError(f".param declares {layer_count} layers but lists {len(layers)}")
    return layers


class _BinReader:
    def __init__(self, data: bytes) -> None:
        self.data = data
        self.offset = 0

    def _take(self, nbytes: int) -> bytes:
        if self.offset + nbytes > len(self.data):
            raise ConversionError(".bin file is shorter than its .param needs")
        chunk = self.data[self.offset:self.offset + nbytes]
        self.offset += nbytes
        return chunk

    def tagged(self, count: int) -> np.ndarray:
        """A weight blob stored with a type tag (ncnn ModelBin::load(w, type=0))."""
        (tag,) = struct.unpack("<I", self._take(4))
        if tag == TAG_FP16:
            raw = self._take((count * 2 + 3) // 4 * 4)
            return np.frombuffer(raw, dtype="<f2", count=count).astype(np.float32)
        if tag == TAG_FP32:
            return np.frombuffer(self._take(count * 4), dtype="<f4").astype(np.float32)
        raise ConversionError(f"unsupported ncnn weight storage tag 0x{tag:08x} (quantized or int8 weights)")

    def raw(self, count: int) -> np.ndarray:
        """A raw float32 blob (ModelBin::load(w, type=1))."""
        return np.frombuffer(self._take(count * 4), dtype="<f4").astype(np.float32)


def read_ncnn(param_path: Path, bin_path: Path) -> list[NcnnLayer]:
    """The graph with every layer's weights attached (Convolution: weight OIHW + bias; PReLU: slope)."""
    layers = parse_param(param_path.read_text(encoding="utf-8"))
    reader = _BinReader(bin_path.read_bytes())
    out: list[NcnnLayer] = []
    for layer in layers:
        weights: dict[str, np.ndarray] = {}
        if layer.type == "Convolution":
            num_output = layer.int_param("0")
            kernel = layer.int_param("1")
            size = layer.int_param("6")
            if layer.int_param("2", 1) != 1 or layer.int_param("3", 1) != 1 or layer.int_param("4") != kernel // 2:
                raise ConversionError(f"{layer.name}: only stride-1, dilation-1, same-padding convs are supported")
            if num_output <= 0 or kernel <= 0 or size % (num_output * kernel * kernel):
                raise ConversionError(f"{layer.name}: inconsistent convolution shape")
            num_input = size // (num_output * kernel * kernel)
            weights["weight"] = reader.tagged(size).reshape(num_output, num_input, kernel, kernel)
            if layer.int_param("5"):
                weights["bias"] = reader.raw(num_output)
        elif layer.type == "PReLU":
            weights["weight"] = reader.raw(layer.int_param("0", 1))
        elif layer.type in {"InnerProduct", "ConvolutionDepthWise", "Deconvolution", "BatchNorm", "Scale"}:
            raise ConversionError(f"{layer.name}: layer type {layer.type} is not used by the supported models")
        out.append(NcnnLayer(layer.type, layer.name, layer.inputs, layer.outputs, layer.params, weights))
    if reader.offset != len(reader.data):
        raise ConversionError(f".bin has {len(reader.data) - reader.offset} bytes left over: wrong .param for it")
    return out


def _leaky(layer: NcnnLayer) -> bool:
    return layer.int_param("9") == 2


def detect_arch(layers: list[NcnnLayer]) -> ArchSpec:
    """Which architecture the graph is; ConversionError if it is neither SRVGGNetCompact nor RRDBNet x4."""
    convs = [la for la in layers if la.type == "Convolution"]
    types = [la.type for la in layers]
    if not convs:
        raise ConversionError("graph has no convolutions")
    num_feat = convs[0].int_param("0")
    if "PixelShuffle" in types and "PReLU" in types:
        shuffle = next(la for la in layers if la.type == "PixelShuffle")
        upscale = shuffle.int_param("0")
        prelus = [la for la in layers if la.type == "PReLU"]
        num_conv = len(convs) - 2
        if len(prelus) != len(convs) - 1 or convs[-1].int_param("0") != 3 * upscale * upscale:
            raise ConversionError("PixelShuffle graph does not match SRVGGNetCompact")
        if any(c.int_param("0") != num_feat for c in convs[:-1]) or any(_leaky(c) for c in convs):
            raise ConversionError("PixelShuffle graph does not match SRVGGNetCompact")
        out_scale = upscale
        tail = layers[-1]
        if tail.type == "Interp":
            if tail.int_param("0") != 3:
                raise ConversionError("final resize of the graph is not bicubic")
            out_scale = round(upscale * tail.float_param("1"))
            if abs(out_scale - upscale * tail.float_param("1")) > 1e-4:
                raise ConversionError("final resize does not give an integer scale")
        return ArchSpec("srvgg", num_feat=num_feat, upscale=upscale, out_scale=out_scale, num_conv=num_conv)
    if "Concat" in types and "Eltwise" in types:
        # conv_first + 15 per RRDB + conv_body, up1, up2, hr, last
        body = len(convs) - 6
        if body <= 0 or body % 15:
            raise ConversionError("dense graph does not match RRDBNet")
        num_block = body // 15
        grow = convs[1].int_param("0")
        interps = [la for la in layers if la.type == "Interp"]
        if len(interps) != 2 or any(la.int_param("0") != 1 or la.float_param("1") != 2.0 for la in interps):
            raise ConversionError("RRDBNet graph without two nearest x2 upsamplings (only x4 is supported)")
        expected = ([False] + ([True] * 4 + [False]) * 3 * num_block + [False, True, True, True, False])
        if [_leaky(c) for c in convs] != expected:
            raise ConversionError("activation pattern does not match RRDBNet")
        return ArchSpec("rrdb", num_feat=num_feat, upscale=4, out_scale=4, num_block=num_block, num_grow_ch=grow)
    raise ConversionError("graph is neither SRVGGNetCompact nor RRDBNet")


def param_names(spec: ArchSpec) -> list[tuple[str, str]]:
    """(torch prefix, ncnn layer type) in the order the weighted layers appear in the ncnn graph."""
    names: list[tuple[str, str]] = []
    if spec.kind == "srvgg":
        index = 0
        for _ in range(spec.num_conv + 1):
            names += [(f"body.{index}", "Convolution"), (f"body.{index + 1}", "PReLU")]
            index += 2
        names.append((f"body.{index}", "Convolution"))
        return names
    names.append(("conv_first", "Convolution"))
    for block in range(spec.num_block):
        for rdb in (1, 2, 3):
            names += [(f"body.{block}.rdb{rdb}.conv{c}", "Convolution") for c in range(1, 6)]
    names += [(n, "Convolution") for n in ("conv_body", "conv_up1", "conv_up2", "conv_hr", "conv_last")]
    return names


def to_state_dict(layers: list[NcnnLayer], spec: ArchSpec) -> dict[str, np.ndarray]:
    """The torch state_dict (numpy float32 arrays) for the graph's weights."""
    weighted = [la for la in layers if la.weights]
    names = param_names(spec)
    if len(weighted) != len(names):
        raise ConversionError(f"graph has {len(weighted)} weighted layers, the architecture {len(names)}")
    state: dict[str, np.ndarray] = {}
    for layer, (prefix, kind) in zip(weighted, names, strict=True):
        if layer.type != kind:
            raise ConversionError(f"{layer.name} is {layer.type}, expected {kind} for {prefix}")
        for key, value in layer.weights.items():
            state[f"{prefix}.{key}"] = np.ascontiguousarray(value, dtype=np.float32)
    return state


def file_sha256(*paths: Path) -> str:
    """One sha256 over the files' contents, in order."""
    digest = hashlib.sha256()
    for path in paths:
        with path.open("rb") as fh:
            for chunk in iter(lambda: fh.read(1 << 20), b""):
                digest.update(chunk)
    return digest.hexdigest()


@dataclass(frozen=True)
class Converted:
    path: Path
    spec: ArchSpec
    sha256: str
    cached: bool


def convert(param_path: Path, bin_path: Path, cache_dir: Path) -> Converted:
    """Convert one ncnn model to a safetensors file under `cache_dir` (reused when the sources' sha256 matches).

    The file is written to a temporary name and renamed, so concurrent converters never see half a file.
    """
    sha = file_sha256(param_path, bin_path)
    target = cache_dir / f"{bin_path.stem.lower()}-{sha[:16]}.safetensors"
    if target.is_file():
        try:
            return Converted(target, load_spec(target), sha, cached=True)
        except (ConversionError, OSError, ValueError):
            pass  # damaged cache entry: convert again
    from safetensors.numpy import save_file

    layers = read_ncnn(param_path, bin_path)
    spec = detect_arch(layers)
    state = to_state_dict(layers, spec)
    cache_dir.mkdir(parents=True, exist_ok=True)
    metadata = {
        "format": "pt",
        "arch": spec.to_json(),
        "source_sha256": sha,
        "source_param": param_path.name,
        "source_bin": bin_path.name,
        "converter_version": CONVERTER_VERSION,
    }
    fd, tmp = tempfile.mkstemp(dir=cache_dir, prefix=".tmp-", suffix=".safetensors")
    os.close(fd)
    try:
        save_file(state, tmp, metadata=metadata)
        os.replace(tmp, target)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return Converted(target, spec, sha, cached=False)


def load_spec(path: Path) -> ArchSpec:
    """The architecture recorded in a converted file's metadata."""
    from safetensors import safe_open

    with safe_open(str(path), framework="numpy") as fh:
        meta: dict[str, Any] = fh.metadata() or {}
    if meta.get("converter_version") != CONVERTER_VERSION or "arch" not in meta:
        raise ConversionError(f"{path.name} was written by another converter version")
    return ArchSpec.from_json(meta["arch"])


def build_module(spec: ArchSpec) -> Any:
    """An untrained torch module for `spec` (imports torch)."""
    from .torch_arch import RRDBNet, SRVGGNetCompact

    if spec.kind == "srvgg":
        return SRVGGNetCompact(num_feat=spec.num_feat, num_conv=spec.num_conv, upscale=spec.upscale,
                               out_scale=spec.out_scale)
    return RRDBNet(num_feat=spec.num_feat, num_block=spec.num_block, num_grow_ch=spec.num_grow_ch,
                   upscale=spec.upscale)


def load_torch_model(converted: Converted) -> Any:
    """The torch module with the converted weights loaded (strict), in eval mode, on the CPU."""
    from safetensors.torch import load_file

    module = build_module(converted.spec)
    module.load_state_dict(load_file(str(converted.path)), strict=True)
    return module.eval().requires_grad_(False)


def main() -> None:
    """`python -m reelforge.apps.upscale.models.convert`: convert every shipped Real-ESRGAN model into
    the cache under the configured models folder and print what was done (JSON lines)."""
    from reelforge.config import get_settings

    from .adapters import convert_all

    for entry in convert_all(get_settings()):
        print(json.dumps(entry))


if __name__ == "__main__":
    main()
