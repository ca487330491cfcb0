"""Film studio media steps: the time of each step for one scene, and a whole short film end to end.

Part 1 times every building block of `reelforge.apps.film.media` on one scene of --seconds (default 10 s) at
the output size (default 1280x720, 24 fps): loading the voice, speaking the scene's lines, building subtitles,
rendering the lip-synced portrait, the Ken Burns background and a title card, the score, the effects, ducking
and mixing, and composing the scene into an MP4 (H.264/AAC, burned subtitles, two-pass loudnorm). Frames are
generated and dropped (as the pipeline streams them into the encoder), so frame times include no disk I/O.

Part 2 renders a film of --film-seconds (default 60 s) in --scenes scenes (default 3: a Ken Burns scene with a
narrator, a lip-synced portrait of a character, a Ken Burns scene ending on the title) the way the render
pipeline will: voices, cues, score per mood, effects, ducking, one composition with crossfades, burned
subtitles, -14 LUFS and a thumbnail. Reported: wall seconds and their ratio to the film's duration (the
platform's goal: at most 1.5 on the 2-core machine), and the output's measured loudness.

    python -m bench.film_media                 # results in bench/results/film_media.json
    python -m bench.film_media --smoke         # 2 s scene, 320x180, 6 s film: does it still run?
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import tempfile
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any, TypeVar

import numpy as np

from bench.common import cpu_model, package_version, parse_args

RESULTS = Path(__file__).resolve().parent / "results" / "film_media.json"
GOAL_RATIO = 1.5
T = TypeVar("T")

LINES = [
    "The storm came in from the north, faster than anyone expected.",
    "Martha closed the shutters and listened to the rain on the roof.",
    "Somebody is knocking at the door. Don't open it!",
    "I heard thunder over the hills, and then the lights went out.",
    "We have until morning. After that, the road will be gone.",
    "Then we leave now, while we still can.",
]


def timed(results: dict[str, float], name: str, fn: Callable[[], T]) -> T:
    t0 = time.perf_counter()
    out = fn()
    results[name] = round(time.perf_counter() - t0, 4)
    return out


def drain(frames: Iterable[np.ndarray]) -> int:
    n = 0
    for _ in frames:
        n += 1
    return n


def speak_lines(voice: Any, seconds: float, offset: int = 0) -> list[tuple[float, Any]]:
    """Lines of dialogue, one after another with 0.6 s between them, filling about 70 % of ``seconds``."""
    from reelforge.apps.film.media import voices

    out: list[tuple[float, Any]] = []
    t = 0.5
    k = offset
    while t < 0.7 * seconds:
        speech = voices.synthesize(LINES[k % len(LINES)], voice)
        if t + speech.duration_s > seconds - 0.3 and out:  # at least one line, even in a short scene
            break
        out.append((t, speech))
        t += speech.duration_s + 0.6
        k += 1
    return out


def dialogue_track(lines: list[tuple[float, Any]], seconds: float) -> np.ndarray:
    from reelforge.apps.film.media import audio, music

    tracks = [music.Track(audio.resample(s.samples, s.sample_rate, audio.MIX_RATE), at) for at, s in lines]
    return music.mix(tracks, audio.MIX_RATE, seconds, ceiling=None)


def scene_steps(args: argparse.Namespace, size: tuple[int, int], tmp: Path) -> dict[str, Any]:
    from reelforge.apps.film.media import compose, lipsync, music, subtitles, visuals, voices

    steps: dict[str, float] = {}
    sec, fps = args.seconds, args.fps
    voice = voices.Voice(engine=args.engine)
    first = timed(steps, "voice_load_and_first_line", lambda: voices.synthesize("Hello.", voice))
    lines = timed(steps, "voices", lambda: speak_lines(voice, sec))
    speech_s = sum(s.duration_s for _, s in lines)
    cues = timed(steps, "subtitles", lambda: [c for at, s in lines for c in subtitles.shift(
        subtitles.build_cues(s.words), at)])
    timed(steps, "subtitles_srt_vtt", lambda: (subtitles.to_srt(cues), subtitles.to_vtt(cues)))
    talk = dialogue_track(lines, sec)
    portrait = visuals.sample_photo("astronaut")
    sync = timed(steps, "lipsync_setup", lambda: lipsync.LipSync(portrait, lines[0][1] if lines else first,
                                                                  fps=fps, size=size, duration_s=sec))
    timed(steps, "lipsync_frames", lambda: drain(sync.frames()))
    photo = visuals.sample_photo("coffee")
    timed(steps, "ken_burns_frames", lambda: drain(visuals.ken_burns(photo, sec, size=size, fps=fps).frames))
    timed(steps, "title_card_frames", lambda: drain(visuals.title_card("The Storm", sec, subtitle="Scene one",
                                                                         size=size, fps=fps).frames))
    score = timed(steps, "music_score", lambda: music.score("tense", sec, seed=1).samples)
    effects = timed(steps, "sound_effects", lambda: [music.sound_effect(n) for n in ("knock", "rain")])
    mix = timed(steps, "duck_and_mix", lambda: music.mix(
        [music.Track(talk), music.Track(music.duck(score, talk, music.RATE)), music.Track(effects[0], 1.0, -6),
         music.Track(effects[1][: int(sec * music.RATE)], 0.0, -14)], music.RATE, sec))
    clip = visuals.ken_burns(photo, sec, size=size, fps=fps)
    film = timed(steps, "compose_scene_mp4", lambda: compose.compose(
        [clip], mix, music.RATE, tmp / "scene.mp4", cues=cues, thumbnail=tmp / "scene.jpg"))
    return {"seconds": sec, "size": list(size), "fps": fps, "engine": first.engine, "timing": first.timing,
            "dialogue_lines": len(lines), "speech_s": round(speech_s, 2), "lipsync_method": sync.method,
            "subtitles": film.subtitles, "compose_inner": {k: round(v, 4) for k, v in film.timings.items()},
            "steps_s": steps}


def whole_film(args: argparse.Namespace, size: tuple[int, int], tmp: Path) -> dict[str, Any]:
    from reelforge.apps.film.media import compose, lipsync, music, subtitles, visuals, voices

    fps, n = args.fps, max(1, args.scenes)
    transition = 0.5
    scene_s = (args.film_seconds + transition * (n - 1)) / n
    starts = compose.scene_starts([scene_s] * n, transition)
    total = starts[-1] + scene_s
    cast = voices.cast(["NARRATOR", "MARTHA"], engine=args.engine)
    moods = ["calm", "tense", "epic"]
    photos = ["coffee", "astronaut", "rocket"]
    t0 = time.perf_counter()
    clips: list[visuals.Clip] = []
    cues: list[subtitles.Cue] = []
    tracks: list[music.Track] = []
    for i in range(n):
        voice = cast["MARTHA" if i % 3 == 1 else "NARRATOR"]
        lines = speak_lines(voice, scene_s, offset=2 * i)
        for at, s in lines:
            cues += subtitles.shift(subtitles.build_cues(s.words, speaker=voice.name), starts[i] + at)
        talk = dialogue_track(lines, scene_s)
        score = music.score(moods[i % 3], scene_s, seed=i).samples
        tracks += [music.Track(talk, starts[i]), music.Track(music.duck(score, talk, music.RATE), starts[i])]
        for k, effect in enumerate(music.effects_for(["Rain on the window.", "Somebody knocks.",
                                                      "Thunder rolls."][i % 3])):
            tracks.append(music.Track(music.sound_effect(effect, seed=i), starts[i] + 0.5 + k, -8))
        photo = visuals.sample_photo(photos[i % 3])
        if i % 3 == 1 and lines:
            sync = lipsync.LipSync(photo, lines[0][1], fps=fps, size=size, duration_s=scene_s)
            clips.append(visuals.Clip(sync.frames(), len(sync), fps, size, sync.method))
        else:
            clips.append(visuals.ken_burns(photo, scene_s, size=size, fps=fps, move=visuals.pick_move(i)))
    mix = music.mix(tracks, music.RATE, total)
    prep_s = time.perf_counter() - t0
    film = compose.compose(clips, mix, music.RATE, tmp / "film.mp4", transition_s=transition, cues=cues,
                           thumbnail=tmp / "film.jpg")
    wall = time.perf_counter() - t0
    loud = compose.measure_loudness(film.path)
    return {"film_s": round(film.duration_s, 2), "scenes": n, "size": list(size), "fps": fps,
            "wall_s": round(wall, 2), "prepare_audio_and_cues_s": round(prep_s, 2),
            "compose_s": round(wall - prep_s, 2), "ratio_to_duration": round(wall / film.duration_s, 3),
            "goal_ratio": GOAL_RATIO, "goal_met": wall / film.duration_s <= GOAL_RATIO,
            "loudness_lufs": loud.integrated_lufs, "subtitles": film.subtitles, "cues": len(cues),
            "bytes": film.path.stat().st_size}


def main(argv: list[str] | None = None) -> dict[str, Any]:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seconds", type=float, default=10.0, help="length of the scene timed step by step")
    ap.add_argument("--film-seconds", type=float, default=60.0)
    ap.add_argument("--scenes", type=int, default=3)
    ap.add_argument("--width", type=int, default=1280)
    ap.add_argument("--height", type=int, default=720)
    ap.add_argument("--fps", type=float, default=24.0)
    ap.add_argument("--engine", default="piper", choices=["piper", "espeak-ng"])
    ap.add_argument("--out", type=Path, default=RESULTS)
    args = parse_args(ap, argv, {"seconds": 2.0, "film_seconds": 6.0, "width": 320, "height": 180})
    size = (args.width, args.height)
    with tempfile.TemporaryDirectory(prefix="rf-bench-film-") as tmp:
        scene = scene_steps(args, size, Path(tmp))
        film = whole_film(args, size, Path(tmp))
    report = {
        "benchmark": "film_media",
        "params": {"seconds": args.seconds, "film_seconds": args.film_seconds, "scenes": args.scenes,
                   "size": list(size), "fps": args.fps, "engine": args.engine, "smoke": args.smoke},
        "machine": {"cpu_count": os.cpu_count(), "cpu": cpu_model(), "python": platform.python_version(),
                    "packages": {p: package_version(p) for p in ("piper-tts", "espeakng-loader", "av",
                                                                 "imageio-ffmpeg", "opencv-python-headless",
                                                                 "scipy", "scikit-image", "faster-whisper")}},
        "scene": scene,
        "film": film,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    print(json.dumps(report, indent=2))
    return report


if __name__ == "__main__":
    main()
