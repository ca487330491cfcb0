"""The film's final file: scene clips and the sound mix into one H.264/AAC MP4, in one encode.

- **Video**: the clips' frames are streamed as raw RGB into one ffmpeg process (the binary the platform runs,
  ``adapters.media.ffmpeg``) that encodes H.264 (libx264, yuv420p, ``+faststart``). Crossfades between scenes
  are blended in NumPy while streaming: the last ``transition_s`` of a clip is held back (a few frames) and
  mixed into the start of the next, so nothing is decoded or encoded twice.
- **Subtitles**: ``burn`` draws them with libass (ffmpeg's ``subtitles`` filter) when the binary has it, else
  with Pillow on the frames as they stream (``pillow``, also selectable); ``soft`` adds a ``mov_text`` track;
  ``none`` leaves them out. The result says which was used.
- **Loudness**: two-pass EBU R128 ``loudnorm`` to ``loudness_lufs`` (default -14 LUFS integrated, true peak
  -1.5 dBTP): the first pass measures the mix (audio only, fast), the second applies the measured values
  (``linear=true``) in the same ffmpeg run that encodes the video. When that gain would push the true peak over
  the ceiling (loudnorm would then fall back to its dynamic mode), the gain is applied first with a soft peak
  limiter and the mix measured again. :func:`measure_loudness` reads a file's
  integrated loudness back with the ``ebur128`` filter.
- **Thumbnail**: one frame (by default a third of the way in) saved as JPEG while it streams past.

:func:`scene_starts` says where each scene begins once transitions overlap them, so dialogue, music and
subtitle cues can be placed on the film's timeline before composing.
"""

from __future__ import annotations

import collections
import json
import logging
import re
import subprocess
import tempfile
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np

from reelforge import errors
from reelforge.adapters.media.ffmpeg import FFmpegError, ffmpeg_exe, run_ffmpeg
from reelforge.apps.film.media import audio
from reelforge.apps.film.media.music import soft_limit
from reelforge.apps.film.media.subtitles import Cue, to_srt
from reelforge.apps.film.media.visuals import Clip, font

log = logging.getLogger("reelforge.film.compose")

SUBTITLE_MODES = ("burn", "pillow", "soft", "none")


@dataclass(frozen=True)
class Encode:
    """Encoder settings: x264 ``preset`` and ``crf``, AAC bitrate, loudness target and true-peak ceiling."""

    preset: str = "veryfast"
    crf: int = 21
    audio_bitrate: str = "160k"
    loudness_lufs: float | None = -14.0
    true_peak_db: float = -1.5
    lra: float = 11.0
    threads: int = 0  # 0: ffmpeg's choice


@dataclass(frozen=True)
class Loudness:
    integrated_lufs: float
    lra: float
    true_peak_db: float | None = None
    threshold_lufs: float | None = None


@dataclass(frozen=True)
class Film:
    """What :func:`compose` wrote."""

    path: Path
    duration_s: float
    frames: int
    size: tuple[int, int]
    fps: float
    subtitles: str  # libass, pillow, mov_text or none
    loudness_in: Loudness | None  # the mix before normalisation (first pass)
    thumbnail: Path | None
    timings: dict[str, float] = field(default_factory=dict)
    notes: tuple[str, ...] = ()


def scene_starts(durations: Sequence[float], transition_s: float = 0.0) -> list[float]:
    """When each scene starts on the film's timeline when consecutive scenes overlap by ``transition_s``."""
    starts, t = [], 0.0
    for d in durations:
        starts.append(t)
        t += d - transition_s
    return starts


@lru_cache(maxsize=4)
def has_libass(exe: str | None = None) -> bool:
    """Whether the ffmpeg binary has the libass ``subtitles`` filter."""
    try:
        out = subprocess.run([ffmpeg_exe(exe), "-hide_banner", "-filters"], capture_output=True, timeout=30,
                             check=False).stdout.decode("utf-8", "replace")
    except (OSError, subprocess.TimeoutExpired, errors.ReelforgeError):
        return False
    return bool(re.search(r"^\s*\S+\s+subtitles\s", out, re.MULTILINE))


def measure_loudness(path: Path | str, *, exe: str | None = None) -> Loudness:
    """Integrated loudness (LUFS), loudness range (LU) and true peak (dBTP) of a file's audio, from ffmpeg's
    EBU R128 ``ebur128`` filter."""
    proc = run_ffmpeg(["-loglevel", "info", "-i", str(path), "-map", "0:a:0", "-af",
                       "ebur128=peak=true:framelog=quiet", "-f", "null", "-"], exe=exe, timeout=600)
    text = proc.stderr.decode("utf-8", "replace")
    summary = text[text.rfind("Summary:"):]
    i = re.search(r"I:\s*(-?[\d.]+|-inf)\s*LUFS", summary)
    lra = re.search(r"LRA:\s*(-?[\d.]+)\s*LU\b", summary)
    thr = re.search(r"Threshold:\s*(-?[\d.]+)\s*LUFS", summary)
    peak = re.search(r"Peak:\s*(-?[\d.]+|-inf)\s*dBFS", summary)
    if not i:
        raise FFmpegError("ebur128 printed no integrated loudness")

    def num(m: re.Match[str] | None) -> float | None:
        return None if m is None else (float("-inf") if m.group(1) == "-inf" else float(m.group(1)))

    return Loudness(float(num(i) or 0.0), float(num(lra) or 0.0), num(peak), num(thr))


def _loudnorm_measure(wav: Path, enc: Encode, exe: str | None) -> dict[str, Any]:
    proc = run_ffmpeg(["-loglevel", "info", "-i", str(wav), "-af",
                       f"loudnorm=I={enc.loudness_lufs}:TP={enc.true_peak_db}:LRA={enc.lra}:print_format=json",
                       "-f", "null", "-"], exe=exe, timeout=600)
    text = proc.stderr.decode("utf-8", "replace")
    start = text.rfind("{")
    end = text.rfind("}")
    if start < 0 or end < start:
        raise FFmpegError("loudnorm printed no measurement")
    return dict(json.loads(text[start:end + 1]))


def _style(size: tuple[int, int]) -> str:
    """libass style for SRT cues: a font size that fits 42 characters across the frame, scaled to libass's
    default 288-line script height."""
    w, h = size
    px = min(0.9 * w / (42 * 0.56), 0.055 * h)
    fontsize = max(6, round(px * 288 / h))
    margin = max(8, round(0.06 * 288))
    return (f"FontName=DejaVu Sans,FontSize={fontsize},PrimaryColour=&H00FFFFFF,OutlineColour=&H80000000,"
            f"BorderStyle=1,Outline=2,Shadow=0,MarginV={margin}")


class _PillowSubtitles:
    """Cues drawn on frames with Pillow: each cue's text block is rendered once, then pasted while it shows."""

    def __init__(self, cues: Sequence[Cue], size: tuple[int, int]) -> None:
        self.cues = sorted(cues, key=lambda c: c.start)
        self.size = size
        w, h = size
        self.font = font(max(10, int(min(0.9 * w / (42 * 0.56), 0.055 * h))))
        self._cache: dict[int, tuple[np.ndarray, np.ndarray, int, int]] = {}

    def _block(self, k: int) -> tuple[np.ndarray, np.ndarray, int, int]:
        if k not in self._cache:
            from PIL import Image, ImageDraw

            w, h = self.size
            lines = self.cues[k].lines
            line_h = int(self.font.size * 1.25)
            bw = int(max(self.font.getlength(line) for line in lines)) + 16
            bh = line_h * len(lines) + 12
            img = Image.new("RGBA", (bw, bh), (0, 0, 0, 0))
            draw = ImageDraw.Draw(img)
            for i, line in enumerate(lines):
                x = (bw - draw.textlength(line, font=self.font)) / 2
                draw.text((x, 6 + i * line_h), line, font=self.font, fill=(255, 255, 255, 255),
                          stroke_width=max(1, self.font.size // 14), stroke_fill=(0, 0, 0, 200))
            rgba = np.asarray(img, np.float32)
            x0 = (w - bw) // 2
            y0 = h - bh - int(0.06 * h)
            self._cache[k] = (rgba[..., :3], rgba[..., 3:] / 255.0, x0, y0)
        return self._cache[k]

    def draw(self, frame: np.ndarray, t: float) -> np.ndarray:
        for k, cue in enumerate(self.cues):
            if cue.start <= t < cue.end:
                rgb, alpha, x0, y0 = self._block(k)
                h, w = rgb.shape[:2]
                fx0, fy0 = max(0, x0), max(0, y0)
                fx1, fy1 = min(frame.shape[1], x0 + w), min(frame.shape[0], y0 + h)
                region = frame[fy0:fy1, fx0:fx1].astype(np.float32)
                a = alpha[fy0 - y0:fy1 - y0, fx0 - x0:fx1 - x0]
                frame[fy0:fy1, fx0:fx1] = (region * (1 - a) + rgb[fy0 - y0:fy1 - y0, fx0 - x0:fx1 - x0] * a
                                           ).astype(np.uint8)
            elif cue.start > t:
                break
        return frame


def _blended(clips: Sequence[Clip], transition_frames: int) -> Iterator[np.ndarray]:
    """All clips' frames in order, consecutive clips crossfaded over ``transition_frames``."""
    held: collections.deque[np.ndarray] = collections.deque()
    for ci, clip in enumerate(clips):
        last = ci == len(clips) - 1
        keep = 0 if last else min(transition_frames, clip.n_frames // 2, clips[ci + 1].n_frames // 2)
        fade_in = len(held)
        for i, frame in enumerate(clip.frames):
            if i < fade_in:
                a = (i + 1) / (fade_in + 1)
                prev = held.popleft()
                frame = (prev.astype(np.float32) * (1 - a) + frame.astype(np.float32) * a + 0.5).astype(np.uint8)
            if keep and i >= clip.n_frames - keep:
                held.append(frame)
            else:
                yield frame
        while held and last:
            yield held.popleft()


def compose(clips: Sequence[Clip], mix: np.ndarray, sample_rate: int, out_path: Path | str, *,
            transition_s: float = 0.5, cues: Sequence[Cue] = (), subtitles: str = "burn",
            encode: Encode | None = None, thumbnail: Path | str | None = None, thumbnail_at_s: float | None = None,
            exe: str | None = None, timeout_s: float = 3600.0) -> Film:
    """Write the film (see the module docstring). ``clips`` share one size and frame rate; ``mix`` is the
    whole film's mono sound at ``sample_rate`` (placed with :func:`scene_starts`); it is padded with silence
    or cut to the video's length. ``cues`` are on the film's timeline."""
    if not clips:
        raise errors.ValidationFailed("a film needs at least one clip")
    if subtitles not in SUBTITLE_MODES:
        raise errors.ValidationFailed(f"subtitles must be one of {', '.join(SUBTITLE_MODES)}")
    size, fps = clips[0].size, clips[0].fps
    if any(c.size != size or abs(c.fps - fps) > 1e-6 for c in clips):
        raise errors.ValidationFailed("all clips must have the same size and frame rate")
    if size[0] % 2 or size[1] % 2:
        raise errors.ValidationFailed("H.264 in yuv420p needs an even width and height")
    enc = encode or Encode()
    out_path = Path(out_path)
    k = round(transition_s * fps)
    total = sum(c.n_frames for c in clips) - sum(
        min(k, clips[i].n_frames // 2, clips[i + 1].n_frames // 2) for i in range(len(clips) - 1))
    duration = total / fps
    notes: list[str] = []
    timings: dict[str, float] = {}
    mode = subtitles
    if not cues:
        mode = "none"
    elif subtitles == "burn" and not has_libass(exe):
        mode = "pillow"
        notes.append("this ffmpeg has no libass: subtitles drawn with Pillow")
    sound = audio.as_mono(mix)
    n_audio = round(duration * sample_rate)
    sound = np.pad(sound, (0, max(0, n_audio - sound.size)))[:n_audio]
    with tempfile.TemporaryDirectory(prefix="rf-film-") as tmp:
        work = Path(tmp)
        wav = audio.write_wav(work / "mix.wav", sound, sample_rate)
        loud_in: Loudness | None = None
        afilter = f"aresample={audio.MIX_RATE}"
        if enc.loudness_lufs is not None:
            t0 = time.perf_counter()
            m = _loudnorm_measure(wav, enc, exe)
            timings["loudness_pass1_s"] = time.perf_counter() - t0
            loud_in = Loudness(float(m["input_i"]), float(m["input_lra"]), float(m["input_tp"]),
                               float(m["input_thresh"]))
            if not np.isfinite(loud_in.integrated_lufs) or loud_in.integrated_lufs < -70:
                notes.append("the mix is silent: loudness left as it is")
            else:
                gain = enc.loudness_lufs - loud_in.integrated_lufs
                if loud_in.true_peak_db is not None and loud_in.true_peak_db + gain > enc.true_peak_db - 0.3:
                    # loudnorm's linear mode would break the true-peak ceiling and fall back to its dynamic
                    # mode (which lands short of the target): apply the gain here, bend the peaks under the
                    # ceiling, and measure again, so that the encode pass stays a plain linear gain
                    t0 = time.perf_counter()
                    sound = soft_limit(sound * audio.db_to_gain(gain), audio.db_to_gain(enc.true_peak_db - 1.0))
                    audio.write_wav(wav, sound, sample_rate)
                    m = _loudnorm_measure(wav, enc, exe)
                    timings["loudness_prelimit_s"] = time.perf_counter() - t0
                    notes.append(f"mix raised {gain:+.1f} dB with its peaks limited before loudnorm")
                afilter = (f"loudnorm=I={enc.loudness_lufs}:TP={enc.true_peak_db}:LRA={enc.lra}"
                           f":measured_I={m['input_i']}:measured_TP={m['input_tp']}:measured_LRA={m['input_lra']}"
                           f":measured_thresh={m['input_thresh']}:offset={m['target_offset']}:linear=true,"
                           f"aresample={audio.MIX_RATE}")
        w, h = size
        args: list[str] = [ffmpeg_exe(exe), "-hide_banner", "-nostdin", "-loglevel", "error", "-y",
                           "-f", "rawvideo", "-pix_fmt", "rgb24", "-s", f"{w}x{h}", "-framerate", f"{fps:g}",
                           "-i", "pipe:0", "-i", "mix.wav"]
        vfilter = "null"
        if mode in ("burn", "soft"):
            (work / "subs.srt").write_text(to_srt(cues), encoding="utf-8")
        if mode == "burn":
            vfilter = f"subtitles=subs.srt:force_style='{_style(size)}'"
        if mode == "soft":
            args += ["-i", "subs.srt"]
        args += ["-filter_complex", f"[0:v]{vfilter},format=yuv420p[v];[1:a]{afilter}[a]", "-map", "[v]",
                 "-map", "[a]"]
        if mode == "soft":
            args += ["-map", "2:s", "-c:s", "mov_text", "-metadata:s:s:0", "language=eng"]
        args += ["-c:v", "libx264", "-preset", enc.preset, "-crf", str(enc.crf), "-g", str(round(fps * 2)),
                 "-colorspace", "bt709", "-color_primaries", "bt709", "-color_trc", "bt709",
                 "-c:a", "aac", "-b:a", enc.audio_bitrate, "-ac", "2", "-ar", str(audio.MIX_RATE),
                 "-t", f"{duration:.6f}", "-movflags", "+faststart"]
        if enc.threads:
            args += ["-threads", str(enc.threads)]
        args.append(str(out_path.resolve()))
        pillow = _PillowSubtitles(cues, size) if mode == "pillow" else None
        thumb_index = round((thumbnail_at_s if thumbnail_at_s is not None else duration / 3) * fps)
        thumb_index = min(max(0, thumb_index), total - 1)
        thumb_path = Path(thumbnail) if thumbnail else None
        err_log = work / "ffmpeg.log"
        t0 = time.perf_counter()
        frames_written = 0
        with open(err_log, "wb") as err:
            proc = subprocess.Popen(args, stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, stderr=err, cwd=work)
            assert proc.stdin is not None
            try:
                for i, frame in enumerate(_blended(clips, k)):
                    if frame.shape != (h, w, 3) or frame.dtype != np.uint8:
                        raise errors.ValidationFailed(f"frame {i} is {frame.shape} {frame.dtype}, not ({h}, {w}, 3)"
                                                      " uint8")
                    if i == thumb_index and thumb_path is not None:
                        _save_jpeg(frame, thumb_path)
                    if pillow is not None:
                        frame = pillow.draw(np.array(frame), i / fps)
                    proc.stdin.write(np.ascontiguousarray(frame).data)
                    frames_written += 1
                proc.stdin.close()
                rc = proc.wait(timeout=timeout_s)
            except BrokenPipeError:
                rc = proc.wait(timeout=60)
            except BaseException:
                proc.kill()
                proc.wait()
                raise
        timings["encode_s"] = time.perf_counter() - t0
        if rc != 0:
            tail = err_log.read_text("utf-8", "replace").strip()[-2000:]
            raise FFmpegError(f"ffmpeg exited with {rc}: {tail or 'no message'}", returncode=rc)
    if frames_written != total:
        notes.append(f"{frames_written} frames written, {total} planned (a clip gave fewer frames than it said)")
    sub_kind = {"burn": "libass", "pillow": "pillow", "soft": "mov_text", "none": "none"}[mode]
    return Film(out_path, frames_written / fps, frames_written, size, fps, sub_kind, loud_in,
                thumb_path if thumb_path and thumb_path.exists() else None, timings, tuple(notes))


def _save_jpeg(frame: np.ndarray, path: Path, quality: int = 88) -> None:
    from PIL import Image

    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(frame).save(path, "JPEG", quality=quality, optimize=True)
