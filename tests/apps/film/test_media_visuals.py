"""Ken Burns moves and title cards: sizes, geometry of the move, smoothness, text on the card."""

from __future__ import annotations

import itertools
from collections.abc import Iterator

import cv2
import numpy as np
import pytest

from reelforge import errors
from reelforge.apps.film.media import visuals


def checker(w: int = 800, h: int = 600) -> np.ndarray:
    """A test still with structure everywhere (for registration): smooth colour blobs and a grid."""
    rng = np.random.default_rng(0)
    img = cv2.GaussianBlur(rng.integers(0, 255, (h, w, 3)).astype(np.uint8), (0, 0), 6)
    img = cv2.normalize(img, None, 0, 255, cv2.NORM_MINMAX)
    img[::40] = 255
    img[:, ::40] = 255
    return img


def shift_between(a: np.ndarray, b: np.ndarray) -> tuple[float, float]:
    ga = cv2.cvtColor(a, cv2.COLOR_RGB2GRAY).astype(np.float32)
    gb = cv2.cvtColor(b, cv2.COLOR_RGB2GRAY).astype(np.float32)
    window = cv2.createHanningWindow(ga.shape[::-1], cv2.CV_32F)
    (dx, dy), _ = cv2.phaseCorrelate(ga, gb, window)
    return dx, dy


def test_sizes() -> None:
    assert visuals.frame_size("16:9") == (1280, 720) and visuals.frame_size("9:16") == (720, 1280)
    assert visuals.frame_size("16:9", 360) == (640, 360) and visuals.frame_size("9:16", 640) == (360, 640)
    with pytest.raises(errors.ValidationFailed):
        visuals.frame_size("4:3")


@pytest.mark.parametrize("size", [(640, 360), (360, 640)])
@pytest.mark.parametrize("move", visuals.MOVES)
def test_every_move_streams_frames_of_the_output_size(move: str, size: tuple[int, int]) -> None:
    clip = visuals.ken_burns(visuals.sample_photo("coffee"), 1.0, size=size, fps=12, move=move)
    assert isinstance(clip.frames, Iterator) and clip.n_frames == 12 and clip.size == size
    frames = list(clip.frames)
    assert len(frames) == 12 and all(f.shape == (size[1], size[0], 3) and f.dtype == np.uint8 for f in frames)
    assert np.abs(frames[0].astype(int) - frames[-1]).mean() > 2  # the camera moved


def test_zoom_in_starts_wide_and_ends_on_the_focus() -> None:
    img = checker(800, 600)
    clip = visuals.ken_burns(img, 1.0, size=(640, 360), fps=10, move="zoom_in", zoom=2.0, focus=(0.5, 0.5))
    frames = list(clip.frames)
    # first frame: the widest 16:9 view (800x450, centred), scaled to 640x360
    wide = cv2.resize(img[75:525], (640, 360), interpolation=cv2.INTER_AREA)
    assert np.abs(frames[0].astype(int) - wide).mean() < 12
    # last frame: half as wide (400x225) around the centre
    close = cv2.resize(img[188:413, 200:600], (640, 360), interpolation=cv2.INTER_CUBIC)
    assert np.abs(frames[-1].astype(int) - close).mean() < 12
    assert np.abs(frames[-1].astype(int) - wide).mean() > 20


def test_pan_is_smooth_with_subpixel_steps_and_eased() -> None:
    img = checker(1200, 500)
    img[::40] = img[:, ::40] = 0  # no periodic grid: registration must be unambiguous
    img = cv2.GaussianBlur(img, (0, 0), 1.0)
    n = 50
    clip = visuals.ken_burns(img, 2.0, size=(320, 180), fps=25, move="pan_right", zoom=1.1, easing="ease_in_out")
    frames = list(clip.frames)
    measured = -np.array([shift_between(a, b)[0] for a, b in itertools.pairwise(frames)])
    # expected: the 16:9 view (888.9 px of the still, over 1.1 = 808.1 px wide) travels from the left edge to
    # the right (391.9 still px = 155.2 output px), eased by 0.5 - 0.5 cos(pi t)
    full_w = 500 * 16 / 9
    view = full_w / 1.1
    travel = (1200 - view) * 320 / view
    p = 0.5 - 0.5 * np.cos(np.pi * np.arange(n) / (n - 1))
    expected = travel * np.diff(p)
    assert np.abs(measured - expected).max() < 0.3, np.round(measured - expected, 2)
    assert expected[0] < 0.2 and measured[0] < 0.5  # sub-pixel first step, rendered as such
    linear = list(visuals.ken_burns(img, 2.0, size=(320, 180), fps=25, move="pan_right", zoom=1.1,
                                    easing="linear").frames)
    lsteps = -np.array([shift_between(a, b)[0] for a, b in itertools.pairwise(linear)])
    assert np.abs(lsteps - travel / (n - 1)).max() < 0.3


def test_title_card_text_and_fades() -> None:
    clip = visuals.title_card("The Storm Over Hollow Creek", 2.0, subtitle="Scene one: night", size=(640, 360),
                              fps=10, fade_s=0.5)
    frames = list(clip.frames)
    assert len(frames) == 20
    mid = frames[10]
    bright = mid.max(axis=2) > 200  # the light text on a dark background
    _ys, xs = np.nonzero(bright)
    assert bright.sum() > 2000
    assert xs.min() > 0.1 * 640 and xs.max() < 0.9 * 640  # centred, inside the margins
    assert abs((xs.min() + xs.max()) / 2 - 320) < 20
    assert frames[0].mean() < 0.3 * mid.mean() and frames[-1].mean() < 0.3 * mid.mean()
    assert np.array_equal(frames[9], mid)


def test_title_card_wraps_in_portrait() -> None:
    card = visuals.render_title("A Very Long Title That Cannot Possibly Fit On One Line", size=(360, 640),
                                background=visuals.sample_photo("rocket"))
    bright = card.max(axis=2) > 215
    ys, xs = np.nonzero(bright)
    assert xs.min() > 360 * 0.05 and xs.max() < 360 * 0.95
    assert ys.max() - ys.min() > 80  # several lines
    assert visuals.font(20) is visuals.font(20)


def test_bad_arguments() -> None:
    img = visuals.sample_photo("camera")
    assert img.shape == (512, 512, 3)
    with pytest.raises(errors.ValidationFailed):
        visuals.ken_burns(img, 1.0, move="dolly")
    with pytest.raises(errors.ValidationFailed):
        visuals.ken_burns(img, 0.0)
    with pytest.raises(errors.ValidationFailed):
        visuals.sample_photo("lena")
    assert visuals.pick_move(3) in visuals.MOVES


def test_project_images_go_through_the_media_policy(tmp_path: object) -> None:
    import io

    from PIL import Image

    from reelforge.domain.media import MediaLimits

    buf = io.BytesIO()
    Image.fromarray(visuals.sample_photo("chelsea")).save(buf, "PNG")
    img = visuals.load_image(buf.getvalue())
    assert img.shape == (300, 451, 3) and img.dtype == np.uint8
    with pytest.raises(errors.ValidationFailed) as big:
        visuals.load_image(buf.getvalue(), MediaLimits(image_max_pixels=100 * 100))
    assert big.value.code == "image_too_large"
    with pytest.raises(errors.ValidationFailed) as markup:
        visuals.load_image(b"<svg xmlns='http://www.w3.org/2000/svg'><script>alert(1)</script></svg>")
    assert markup.value.code in ("active_content", "not_an_image")
