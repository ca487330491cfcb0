"""The film studio's media building blocks: pure functions and small classes, no routes and no database.

- :mod:`.voices`: a line of dialogue to speech with per-word timings (Piper neural voice, espeak-ng fallback).
- :mod:`.subtitles`: cues, SRT and WebVTT from word timings; the translation port.
- :mod:`.lipsync`: a portrait's mouth animated from its voice track; the sync measurement.
- :mod:`.music`: a generated score per mood, ducking under dialogue, sound effects, mixing.
- :mod:`.visuals`: Ken Burns moves over stills and title cards, at the output size, frame by frame.
- :mod:`.compose`: clips and the mix into one H.264/AAC MP4 (transitions, subtitles, -14 LUFS, thumbnail).
- :mod:`.audio`: the helpers they share (resampling, envelopes, WAV files).

Each module imports its heavy dependencies (PyAV, OpenCV, SciPy, the speech engines) only when used.
"""
