"""The super-resolution quality benchmark runs end to end in its quick mode (numbers not judged here)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

pytest.importorskip("ncnn")
pytest.importorskip("av")
pytest.importorskip("skimage")


def test_upscale_quality_quick(tmp_path: Path) -> None:
    from bench import upscale_quality

    out = tmp_path / "q.json"
    report = upscale_quality.main(["--quick", "--out", str(out), "--data-dir", str(tmp_path)])
    assert json.loads(out.read_text()) == report
    rows = {(r["dataset"], r["model"]): r for r in report["results"]}
    assert {d for d, _ in rows} == {"photos", "video-pan", "video-cartoon"}
    assert {m for _, m in rows} == {"bicubic", "lanczos", "realesr-animevideov3"}
    for (dataset, model), row in rows.items():
        assert 10 < row["psnr_db"] < 60 and 0 < row["ssim"] <= 1, (dataset, model)
        assert row["psnr_vs_bicubic_db"] is not None
        if model == "bicubic":
            assert row["psnr_vs_bicubic_db"] == 0
    assert rows[("video-pan", "realesr-animevideov3")]["frames"] == 2


def test_converter_command_fills_the_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    pytest.importorskip("safetensors")
    from reelforge.apps.upscale.models import convert_all
    from reelforge.config import Settings

    entries = convert_all(Settings(data_dir=tmp_path))
    assert [(e["model"], e["scale"]) for e in entries] == [
        ("realesr-animevideov3", 2), ("realesr-animevideov3", 3), ("realesr-animevideov3", 4),
        ("realesrgan-x4plus", 4)]
    assert all(Path(e["path"]).is_file() and not e["cached"] for e in entries)
    assert all(Path(e["path"]).parent == tmp_path / "models" / ".converted" / "realesrgan" for e in entries)
    assert all(e["cached"] for e in convert_all(Settings(data_dir=tmp_path)))
