"""The API latency benchmark runs end to end for a moment (real uvicorn servers, real load); numbers not checked."""

from __future__ import annotations

import json
from pathlib import Path


def test_api_latency_smoke(tmp_path: Path) -> None:
    from bench import api_latency

    out = tmp_path / "api_latency.json"
    result = api_latency.main(["--seconds", "0.5", "--warmup", "0.2", "--concurrency", "4", "--rounds", "1",
                               "--servers", "bare,reelforge,reelforge-mixed,reelforge-before,reelforge-tuned", "--out", str(out)])
    saved = json.loads(out.read_text())
    assert saved["params"]["concurrency"] == 4
    for name in ("bare", "reelforge", "reelforge-mixed", "reelforge-before", "reelforge-tuned"):
        assert result[name]["requests"] > 0 and result[name]["errors"] == 0, result[name]
    assert set(saved["ratio"]) == {"reelforge", "reelforge-mixed", "reelforge-before", "reelforge-tuned"}
