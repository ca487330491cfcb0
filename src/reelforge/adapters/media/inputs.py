"""Opening untrusted media: every input file the platform reads goes through here.

- **Containers** are opened with FFmpeg's ``protocol_whitelist=file`` and a ``format_whitelist`` of ordinary
  media containers. Playlists (HLS/M3U8, DASH), concat lists (ffconcat), image sequences and every other
  demuxer that opens further files or URLs are refused before their header is read (``unsupported_format``),
  so an upload can never make FFmpeg read another file on the server or fetch a URL. The ffmpeg command line
  gets the same options for its inputs (:func:`ffmpeg_input_args`).
- **Decoders** get ``max_pixels``: FFmpeg refuses to allocate a picture larger than the policy allows, even
  when a stream's size grows after its first header. FFmpeg's own probing decode (while the file is opened)
  gets it too, so opening a 16384x16128 video costs no picture buffer.
- **Images** are measured from their header (Pillow opens lazily) and refused before a pixel is decoded; a
  decompression bomb is an ``image_too_large`` refusal, never an exception of Pillow's.
- **Active content**: files that start like markup (HTML, SVG, XML), carry a script anywhere, or have an archive
  appended (a PNG that is also a ZIP) are refused (``active_content``, ``polyglot_file``).
"""

from __future__ import annotations

import io
import os
import re
import struct
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from reelforge.domain.media import MediaLimits, check_image, refuse

# FFmpeg demuxers an input may be read with (names as FFmpeg lists them; "mov,mp4,..." is one demuxer). None of
# them opens another file or URL: the mov demuxer's external data references are off by default (enable_drefs).
DEMUXERS = ",".join((
    "mov,mp4,m4a,3gp,3g2,mj2", "matroska,webm", "avi", "mpegts", "flv", "nut", "ogg", "mpeg", "asf", "ivf",
    "wav", "mp3", "aac", "flac", "gif", "apng", "png_pipe", "jpeg_pipe", "webp_pipe", "bmp_pipe", "tiff_pipe",
))
PROTOCOLS = "file"
# Decoding threads per stream: bounded, so the memory a decode needs is bounded too (domain/media.py).
MAX_DECODER_THREADS = 8

_SNIFF_BLOCK = 8 * 1024 * 1024
# Markup that runs script wherever it sits in a file a browser might render; long enough never to occur by
# chance in compressed media.
_SCRIPT = re.compile(rb"<script[\s>/]|javascript:|<!doctype\s+html|<iframe[\s>]|<object[\s>]|<embed[\s>]",
                     re.IGNORECASE)
_ZIP_END = b"PK\x05\x06"
_PNG_END = b"IEND\xaeB`\x82"


def decoder_threads() -> int:
    """Threads a decoder of ours may use."""
    return max(1, min(MAX_DECODER_THREADS, os.cpu_count() or 1))


def padded(pixels: int) -> int:
    """A picture-size cap with room for the decoder's coded size (rounded up to whole macroblocks or CTUs)."""
    return int(pixels) + int(pixels) // 8 + 64 * 64


def container_options(max_pixels: int | None = None) -> dict[str, str]:
    """Options for opening an input: the protocol and format whitelists, and FFmpeg's picture-size cap for the
    decode it does while probing."""
    options = {"protocol_whitelist": PROTOCOLS, "format_whitelist": DEMUXERS}
    if max_pixels:
        options["max_pixels"] = str(padded(max_pixels))
    return options


def ffmpeg_input_args() -> list[str]:
    """The same whitelists for an ffmpeg command line; put them before each ``-i`` of untrusted input."""
    return ["-protocol_whitelist", PROTOCOLS, "-format_whitelist", DEMUXERS]


def open_input(path: Path | str, *, max_pixels: int | None = None, unreadable: str = "not_a_video",
               what: str = "media file") -> Any:
    """A PyAV input container for a local file, opened with the whitelists (see the module docstring).

    Refusals: ``unsupported_format`` (a playlist, a concat list, any container not on the list) and
    ``unreadable`` (the code for a file that is no media at all). Messages never carry the path.
    """
    import av

    path = Path(path)
    if not path.is_file():
        raise refuse(unreadable, f"The {what} is missing")
    try:
        return av.open(str(path), options=container_options(max_pixels), metadata_errors="replace")
    except av.error.ArgumentError as exc:  # EINVAL: FFmpeg's "Format not on whitelist"
        raise refuse("unsupported_format", "The file's container format is not accepted (playlists, file lists "
                     "and image sequences are refused; upload the media itself)") from exc
    except av.error.FFmpegError as exc:
        raise refuse(unreadable, f"Not a readable {what} ({exc.strerror or type(exc).__name__})") from exc
    except OSError as exc:
        raise refuse(unreadable, f"Not a readable {what} ({exc.strerror or type(exc).__name__})") from exc


def limit_decoder(stream: Any, max_pixels: int | None) -> None:
    """Cap the stream's decoder: FFmpeg refuses pictures over ``max_pixels`` (a size that grows mid-stream
    included) and decodes on a bounded number of threads. Call before the first decode."""
    cc = getattr(stream, "codec_context", None)
    if cc is None:
        return
    options = dict(cc.options or {})
    if max_pixels:
        options["max_pixels"] = str(padded(max_pixels))
    cc.options = options
    if not cc.thread_count or cc.thread_count > MAX_DECODER_THREADS:
        cc.thread_count = decoder_threads()


# --- active content and appended archives ---------------------------------------------------------------------

def _starts_like_markup(head: bytes) -> bool:
    return head.lstrip(b" \t\r\n\x0c\x00").removeprefix(b"\xef\xbb\xbf").lstrip(b" \t\r\n\x0c").startswith(b"<")


def _zip_appended(tail: bytes, size: int) -> bool:
    """An end-of-central-directory record whose comment ends exactly at the end of the file: a ZIP archive."""
    start = len(tail)
    while (pos := tail.rfind(_ZIP_END, 0, start)) >= 0:
        if pos + 22 <= len(tail):
            (comment,) = struct.unpack_from("<H", tail, pos + 20)
            if size - len(tail) + pos + 22 + comment == size:
                return True
        start = pos
    return False


def check_content(source: Path | bytes) -> None:
    """Refuse markup, script and appended archives (see the module docstring); reads the file in blocks."""
    if isinstance(source, bytes | bytearray | memoryview):
        data = bytes(source)
        blocks: Any = [data]
        size = len(data)
        head, tail = data[:1024], data[-(65536 + 22):]
    else:
        path = Path(source)
        size = path.stat().st_size
        with path.open("rb") as f:
            head = f.read(1024)
            f.seek(max(0, size - 65536 - 22))
            tail = f.read()
        blocks = _blocks(path)
    if _starts_like_markup(head):
        raise refuse("active_content", "The file is markup (HTML, SVG or XML), not media")
    for block in blocks:
        if _SCRIPT.search(block):
            raise refuse("active_content", "The file carries script or HTML")
    if _zip_appended(tail, size):
        raise refuse("polyglot_file", "The file has an archive appended to it")


def _blocks(path: Path) -> Any:
    overlap = b""
    with path.open("rb") as f:
        while block := f.read(_SNIFF_BLOCK):
            yield overlap + block
            overlap = block[-32:]


# --- images ---------------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class ImageFacts:
    format: str
    width: int
    height: int
    mode: str
    frames: int


def _open_image(data: bytes, limits: MediaLimits) -> Any:
    from PIL import Image, UnidentifiedImageError

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            return Image.open(io.BytesIO(data), formats=sorted(limits.image_formats) or None)
    except Image.DecompressionBombError as exc:
        raise refuse("image_too_large", f"The image has more than {limits.image_max_pixels} pixels",
                     max_pixels=limits.image_max_pixels) from exc
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError) as exc:
        raise refuse("not_an_image", "The file is not an image of an accepted format ("
                     f"{', '.join(sorted(limits.image_formats))})") from exc


def inspect_image(data: bytes, limits: MediaLimits) -> ImageFacts:
    """Format, size, mode and frame count from the image's header, within the limits; nothing is decoded.
    Refusals: ``not_an_image``, ``image_too_large``, ``active_content``, ``polyglot_file``."""
    check_content(data)
    img = _open_image(data, limits)
    try:
        width, height = img.size
        fmt = str(img.format or "")
        check_image(limits, width=width, height=height, format=fmt)
        try:
            frames = int(getattr(img, "n_frames", 1) or 1)
        except (OSError, ValueError, EOFError) as exc:
            raise refuse("not_an_image", "The image's frames cannot be read") from exc
        check_image(limits, width=width, height=height, format=fmt, frames=frames)
        if fmt == "PNG" and not data.rstrip(b"\x00").endswith(_PNG_END):
            raise refuse("polyglot_file", "The PNG has data after its end")
        return ImageFacts(format=fmt, width=width, height=height, mode=str(img.mode), frames=frames)
    finally:
        img.close()


def decode_image(data: bytes, limits: MediaLimits) -> Any:
    """The first frame of an image, decoded, after :func:`inspect_image` accepted it (a Pillow image)."""
    inspect_image(data, limits)
    img = _open_image(data, limits)
    try:
        img.load()
    except (OSError, ValueError, SyntaxError, EOFError) as exc:
        img.close()
        raise refuse("not_an_image", "The image cannot be decoded (it is damaged or cut short)") from exc
    return img
