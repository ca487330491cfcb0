"""The media layer: probing, chunked decode -> transform -> encode, joining and remuxing (PyAV + ffmpeg)."""

from reelforge.adapters.media.ffmpeg import FFmpegError, FFmpegNotFound, ffmpeg_exe, run_ffmpeg
from reelforge.adapters.media.probe import StreamInfo, VideoInfo, probe
from reelforge.adapters.media.video import (
    Chunk,
    ChunkResult,
    CorruptVideo,
    EncodeOptions,
    FrameFn,
    MediaError,
    NativeScale,
    choose_container,
    concat_chunks,
    plan_chunks,
    process_chunk,
    remux,
)

__all__ = [
    "Chunk",
    "ChunkResult",
    "CorruptVideo",
    "EncodeOptions",
    "FFmpegError",
    "FFmpegNotFound",
    "FrameFn",
    "MediaError",
    "NativeScale",
    "StreamInfo",
    "VideoInfo",
    "choose_container",
    "concat_chunks",
    "ffmpeg_exe",
    "plan_chunks",
    "probe",
    "process_chunk",
    "remux",
    "run_ffmpeg",
]
