"""ModelRegistry behaviour, with a small adapter of our own port as the test double."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from reelforge.adapters.models.registry import ModelRegistry, build_default_registry
from reelforge.config import Settings
from reelforge.errors import Conflict, JobCancelled, ModelUnavailable, NotFound, TransientError
from reelforge.ports.models import Availability, ModelAdapter


class FakeAdapter:
    """Counts setup() calls; can be made unavailable or failing."""

    def __init__(self, name: str = "fake", task: str = "image.generate", *, available: bool = True,
                 reason: str | None = None, setup_error: Exception | None = None,
                 setup_delay_s: float = 0.0) -> None:
        self.name = name
        self.task = task
        self.description = f"fake {name}"
        self.test_model = True
        self.source = "test/fake"
        self.available = available
        self.reason = reason
        self.setup_error = setup_error
        self.setup_delay_s = setup_delay_s
        self.setup_calls = 0
        self._lock = threading.Lock()

    def availability(self) -> Availability:
        return Availability(self.available, self.reason)

    def setup(self) -> None:
        with self._lock:
            self.setup_calls += 1
        time.sleep(self.setup_delay_s)
        if self.setup_error is not None:
            raise self.setup_error

    def run(self, request: Any, *, progress: Any = None, cancelled: Any = None) -> Any:
        if request == "cancel":
            raise JobCancelled()
        if request == "fail":
            raise RuntimeError("boom")
        return f"ran {request}"

    def details(self) -> dict[str, Any]:
        return {"kind": "fake"}


def test_fake_satisfies_the_port() -> None:
    assert isinstance(FakeAdapter(), ModelAdapter)


def test_register_get_and_duplicates() -> None:
    registry = ModelRegistry()
    adapter = FakeAdapter("a")
    registry.register(adapter)
    assert registry.get("image.generate", "a") is adapter
    assert registry.has("image.generate", "a")
    with pytest.raises(Conflict):
        registry.register(FakeAdapter("a"))
    other = FakeAdapter("a")
    registry.register(other, replace=True)
    assert registry.get("image.generate", "a") is other


def test_unknown_model_is_not_found() -> None:
    registry = ModelRegistry()
    registry.register(FakeAdapter("a"))
    with pytest.raises(NotFound) as info:
        registry.get("image.generate", "missing")
    assert info.value.code == "model_not_found"
    with pytest.raises(NotFound):
        registry.get("speech.tts", "a")
    with pytest.raises(NotFound):
        registry.ensure_ready("image.generate", "missing")


def test_list_filters_by_task_and_reports_availability() -> None:
    registry = ModelRegistry()
    registry.register(FakeAdapter("a"))
    registry.register(FakeAdapter("b", available=False, reason="weights not present"))
    registry.register(FakeAdapter("t", task="speech.tts"))
    assert registry.tasks() == ["image.generate", "speech.tts"]
    infos = registry.list("image.generate")
    assert [i.name for i in infos] == ["a", "b"]
    assert infos[0].available and infos[0].reason is None
    assert not infos[1].available and infos[1].reason == "weights not present"
    assert infos[0].details == {"kind": "fake"}
    assert infos[0].source == "test/fake" and infos[0].test_model
    assert [i.name for i in registry.list()] == ["a", "b", "t"]
    assert registry.list("nothing") == []


def test_a_failing_availability_check_lists_as_unavailable() -> None:
    adapter = FakeAdapter("a")

    def broken() -> Availability:
        raise RuntimeError("disk gone")

    adapter.availability = broken  # type: ignore[method-assign]
    registry = ModelRegistry()
    registry.register(adapter)
    (info,) = registry.list()
    assert not info.available and info.reason is not None and "disk gone" in info.reason


def test_setup_runs_once_across_threads() -> None:
    registry = ModelRegistry()
    adapter = FakeAdapter("a", setup_delay_s=0.05)
    registry.register(adapter)
    errors: list[BaseException] = []

    def worker() -> None:
        try:
            registry.ensure_ready("image.generate", "a")
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=worker) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    assert adapter.setup_calls == 1
    stats = registry.stats()["image.generate/a"]
    assert stats["loaded"] is True
    assert stats["load_s"] >= 0.05


def test_unavailable_model_is_refused_without_setup() -> None:
    registry = ModelRegistry()
    adapter = FakeAdapter("a", available=False, reason="weights not present in /x")
    registry.register(adapter)
    with pytest.raises(ModelUnavailable) as info:
        registry.ensure_ready("image.generate", "a")
    assert "weights not present" in info.value.message
    assert adapter.setup_calls == 0


def test_failed_setup_is_reported_and_retried() -> None:
    registry = ModelRegistry()
    adapter = FakeAdapter("a", setup_error=RuntimeError("out of memory"))
    registry.register(adapter)
    with pytest.raises(ModelUnavailable) as info:
        registry.ensure_ready("image.generate", "a")
    assert "out of memory" in info.value.message
    adapter.setup_error = TransientError("try later")
    # Our own errors pass through unchanged, so their retryable flag survives.
    with pytest.raises(TransientError):
        registry.ensure_ready("image.generate", "a")
    adapter.setup_error = None
    registry.ensure_ready("image.generate", "a")
    assert adapter.setup_calls == 3
    stats = registry.stats()["image.generate/a"]
    assert stats["setup_failures"] == 2 and stats["loaded"] is True


def test_run_counts_invocations_failures_and_cancellations() -> None:
    registry = ModelRegistry()
    registry.register(FakeAdapter("a"))
    assert registry.run("image.generate", "a", "x") == "ran x"
    assert registry.run("image.generate", "a", "y") == "ran y"
    with pytest.raises(RuntimeError):
        registry.run("image.generate", "a", "fail")
    with pytest.raises(JobCancelled):
        registry.run("image.generate", "a", "cancel")
    stats = registry.stats()["image.generate/a"]
    assert stats["invocations"] == 4
    assert stats["failures"] == 1
    assert stats["cancellations"] == 1
    assert stats["last_error"] == "RuntimeError: boom"
    # stats() is a snapshot.
    registry.stats()["image.generate/a"]["invocations"] = 99
    assert registry.stats()["image.generate/a"]["invocations"] == 4


def test_default_registry_lists_image_models(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path)
    # A user-supplied SDXL folder under its own name is picked up; other folders are not.
    custom = settings.models_dir / "my-xl"
    custom.mkdir(parents=True)
    (custom / "model_index.json").write_text(json.dumps({"_class_name": "StableDiffusionXLPipeline"}))
    (settings.models_dir / "not-a-pipeline").mkdir()
    (settings.models_dir / ".sd15.partial").mkdir()
    registry = build_default_registry(settings)
    infos = {i.name: i for i in registry.list("image.generate")}
    assert set(infos) == {"tiny-sd", "sd15", "sdxl", "sdxl-turbo", "sd-turbo", "my-xl"}
    assert infos["tiny-sd"].test_model and "random weights" in infos["tiny-sd"].description
    sd15 = infos["sd15"]
    assert not sd15.available
    assert sd15.reason is not None
    assert "reelforge models pull stable-diffusion-v1-5/stable-diffusion-v1-5" in sd15.reason
    assert sd15.source == "stable-diffusion-v1-5/stable-diffusion-v1-5"
    assert infos["sdxl-turbo"].details["default_steps"] == 1
    assert infos["sdxl-turbo"].details["default_guidance"] == 0.0
    assert infos["my-xl"].details["kind"] == "sdxl"
    assert infos["tiny-sd"].details["max_pixels"] == settings.models.max_pixels


def test_building_and_listing_the_registry_does_not_import_torch(tmp_path: Path) -> None:
    code = (
        "import sys\n"
        "from reelforge.config import Settings\n"
        "from reelforge.adapters.models.registry import build_default_registry\n"
        f"r = build_default_registry(Settings(data_dir={str(tmp_path)!r}))\n"
        "r.list()\n"
        "heavy = [m for m in ('torch', 'diffusers', 'transformers', 'PIL') if m in sys.modules]\n"
        "assert not heavy, heavy\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)
