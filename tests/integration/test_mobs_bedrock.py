"""The hosted adapters (TwelveLabs Pegasus and Marengo on Bedrock) against a local server that speaks the
Bedrock runtime API, with SeaweedFS as the S3 bucket for uploads and asynchronous output.

Every failure must fail the call with a clear error; nothing is ever made up."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import numpy as np
import pytest
from botocore.config import Config

from reelforge.adapters.models.registry import ModelRegistry
from reelforge.apps.mobs.models import (
    TASK_EMBED,
    TASK_PARTICIPATION,
    VideoAnalysisRequest,
    validate_scores,
    video_understanding_adapters,
)
from reelforge.apps.mobs.models.bedrock import HostedModelError, HostedModelRejected
from reelforge.config import Settings
from tests.fixtures.fake_bedrock import FakeBedrock
from tests.fixtures.mob_corpus import TRENDS, make_trend_video

pytestmark = pytest.mark.s3

REPLY = {
    "ocr_text": ["CAT DANCE"], "transcript": "watch my cat dance tonight",
    "words": [{"word": w, "start": 0.3 + 0.3 * i, "end": 0.5 + 0.3 * i}
              for i, w in enumerate(["watch", "my", "cat", "dance", "tonight"])],
    "hashtags": ["#CatDance"], "mentions": [], "motion": 0.3, "scene_cuts": 0, "subject_presence": 0.9,
    "visual_quality": 0.95,
}


@pytest.fixture(scope="module")
def video(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_trend_video(tmp_path_factory.mktemp("bedrock") / "cat.mp4", TRENDS[2], 0, seconds=1.0,
                            size=(160, 120), speech=False).path


@pytest.fixture
def s3(seaweed: Any) -> Any:
    return boto3.client("s3", endpoint_url=seaweed.endpoint_url, aws_access_key_id=seaweed.access_key,
                        aws_secret_access_key=seaweed.secret_key, region_name="us-east-1",
                        config=Config(s3={"addressing_style": "path"}))


@pytest.fixture
def fake(s3: Any) -> Iterator[FakeBedrock]:
    with FakeBedrock(s3) as server:
        yield server


@pytest.fixture
def settings(tmp_path: Path, seaweed: Any, s3: Any, fake: FakeBedrock) -> Settings:
    bucket = f"mobs-{uuid.uuid4().hex[:10]}"
    s3.create_bucket(Bucket=bucket)
    base = Settings(data_dir=tmp_path)
    bedrock = base.mobs.bedrock.model_copy(update={
        "endpoint_url": fake.endpoint_url, "s3_endpoint_url": seaweed.endpoint_url, "bucket": bucket,
        "access_key_id": seaweed.access_key, "secret_access_key": seaweed.secret_key, "poll_interval_s": 0.05,
        "timeout_s": 10.0,
    })
    mobs = base.mobs.model_copy(update={"bedrock": bedrock, "participation_adapter": "bedrock",
                                        "embed_adapter": "bedrock"})
    return base.model_copy(update={"mobs": mobs})


def _adapter(settings: Settings, task: str) -> Any:
    return next(a for a in video_understanding_adapters(settings) if a.task == task and a.name == "bedrock")


def test_pegasus_participation_success(settings: Settings, fake: FakeBedrock, video: Path) -> None:
    fake.pegasus_reply = REPLY
    p = _adapter(settings, TASK_PARTICIPATION).run(VideoAnalysisRequest(video, "Cat dance time @mia"))
    assert p.ocr_text == ["CAT DANCE"] and p.transcript == "watch my cat dance tonight"
    assert p.hashtags == ["catdance"] and p.mentions == ["mia"]
    assert p.activity["subject_presence"] == 0.9 and len(p.words) == 5
    assert p.model == "bedrock:twelvelabs.pegasus-1-2-v1:0"
    assert validate_scores(p, settings).status == "validated"
    sent = json.loads(fake.requests[-1]["body"])
    assert fake.requests[-1]["path"] == "/model/twelvelabs.pegasus-1-2-v1%3A0/invoke"
    assert sent["inputPrompt"] and "base64String" in sent["mediaSource"]


def test_pegasus_large_video_goes_through_s3(settings: Settings, fake: FakeBedrock, video: Path, s3: Any) -> None:
    fake.pegasus_reply = REPLY
    mobs = settings.mobs.model_copy(update={"bedrock": settings.mobs.bedrock.model_copy(
        update={"inline_max_bytes": 0})})
    _adapter(settings.model_copy(update={"mobs": mobs}), TASK_PARTICIPATION).run(VideoAnalysisRequest(video))
    source = json.loads(fake.requests[-1]["body"])["mediaSource"]
    uri = source["s3Location"]["uri"]
    bucket, key = uri[len("s3://"):].split("/", 1)
    assert s3.get_object(Bucket=bucket, Key=key)["Body"].read() == video.read_bytes()


@pytest.mark.parametrize("reply", [
    "I think the video shows a cat.",  # not JSON
    json.dumps({**REPLY, "transcript": None}),  # wrong type
    json.dumps({k: v for k, v in REPLY.items() if k != "words"}),  # missing field
    json.dumps({**REPLY, "motion": 3}),  # out of range
])
def test_pegasus_unusable_answer_fails_never_made_up(settings: Settings, fake: FakeBedrock, video: Path,
                                                     reply: str) -> None:
    fake.pegasus_reply = reply
    with pytest.raises(HostedModelError) as err:
        _adapter(settings, TASK_PARTICIPATION).run(VideoAnalysisRequest(video))
    assert err.value.code == "hosted_model_error" and err.value.retryable


def test_pegasus_service_errors(settings: Settings, fake: FakeBedrock, video: Path) -> None:
    fake.pegasus_reply = REPLY
    adapter = _adapter(settings, TASK_PARTICIPATION)
    fake.fail_next("InvokeModel", 400, "ValidationException", "Video duration is too short")
    with pytest.raises(HostedModelRejected) as err:
        adapter.run(VideoAnalysisRequest(video))
    assert "ValidationException: Video duration is too short" in err.value.message and not err.value.retryable
    fake.fail_next("InvokeModel", 429, "ThrottlingException", "Too many requests", times=10)
    with pytest.raises(HostedModelError) as err2:
        adapter.run(VideoAnalysisRequest(video))
    assert "ThrottlingException" in err2.value.message and err2.value.retryable
    fake.errors.clear()
    fake.pegasus_finish = "length"
    with pytest.raises(HostedModelError, match="token limit"):
        adapter.run(VideoAnalysisRequest(video))


def test_marengo_async_embedding(settings: Settings, fake: FakeBedrock, video: Path) -> None:
    fake.polls_before_done = 3
    adapter = _adapter(settings, TASK_EMBED)
    e = adapter.run(VideoAnalysisRequest(video))
    assert e.vector.shape == (256,) and abs(float(np.linalg.norm(e.vector)) - 1.0) < 1e-5
    assert e.model_version == "marengo-2.7/rp-0-256-2048" and e.model == "bedrock:twelvelabs.marengo-embed-2-7-v1:0"
    ops = [r["op"] for r in fake.requests]
    assert ops.count("StartAsyncInvoke") == 1 and ops.count("GetAsyncInvoke") == 4
    start = json.loads(next(r["body"] for r in fake.requests if r["op"] == "StartAsyncInvoke"))
    assert start["modelId"] == "twelvelabs.marengo-embed-2-7-v1:0"
    assert start["modelInput"]["inputType"] == "video" and start["modelInput"]["embeddingOption"] == ["visual-image",
                                                                                                       "audio"]
    assert start["outputDataConfig"]["s3OutputDataConfig"]["s3Uri"].startswith(f"s3://{settings.mobs.bedrock.bucket}/")
    again = adapter.run(VideoAnalysisRequest(video))
    assert np.allclose(again.vector, e.vector)


def test_marengo_failures_fail_the_step(settings: Settings, fake: FakeBedrock, video: Path) -> None:
    adapter = _adapter(settings, TASK_EMBED)
    fake.fail_async = "The video could not be decoded"
    with pytest.raises(HostedModelError, match="could not be decoded"):
        adapter.run(VideoAnalysisRequest(video))
    fake.fail_async = None
    fake.fail_next("StartAsyncInvoke", 403, "AccessDeniedException", "not subscribed to this model")
    with pytest.raises(HostedModelRejected, match="AccessDeniedException"):
        adapter.run(VideoAnalysisRequest(video))
    fake.polls_before_done = 10_000
    mobs = settings.mobs.model_copy(update={"bedrock": settings.mobs.bedrock.model_copy(update={"timeout_s": 0.3})})
    with pytest.raises(HostedModelError, match="still running"):
        _adapter(settings.model_copy(update={"mobs": mobs}), TASK_EMBED).run(VideoAnalysisRequest(video))


def test_registry_run_counts_the_failure(settings: Settings, fake: FakeBedrock, video: Path) -> None:
    registry = ModelRegistry()
    for a in video_understanding_adapters(settings):
        registry.register(a)
    fake.fail_next("InvokeModel", 500, "InternalServerException", "boom", times=10)
    with pytest.raises(HostedModelError):
        registry.run(TASK_PARTICIPATION, settings.mobs.participation_adapter, VideoAnalysisRequest(video))
    stats = registry.stats()[f"{TASK_PARTICIPATION}/bedrock"]
    assert stats["failures"] == 1 and "InternalServerException" in stats["last_error"]
