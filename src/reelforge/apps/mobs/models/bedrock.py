"""Hosted adapters: TwelveLabs Pegasus 1.2 and Marengo Embed 2.7 on Amazon Bedrock, through boto3's
``bedrock-runtime`` client (``endpoint_url`` from settings, so tests point it at a local server).

- video.participation -> Pegasus (``InvokeModel``): ``{"inputPrompt", "mediaSource": {"base64String"} |
  {"s3Location": {"uri", "bucketOwner"}}, "temperature", "maxOutputTokens"}`` -> ``{"message",
  "finishReason"}``. The prompt asks for one JSON object; the reply is checked field by field.
- video.embed -> Marengo (``StartAsyncInvoke`` with ``modelInput = {"inputType": "video", "mediaSource",
  "embeddingOption": ["visual-image", "audio"]}`` and ``outputDataConfig.s3OutputDataConfig.s3Uri``), polled
  with ``GetAsyncInvoke`` until ``Completed``/``Failed``, then ``<s3Uri>/<invocation id>/output.json``
  (``{"data": [{"embedding", "embeddingOption", "startSec", "endSec"}, ...]}``) is read from S3. Segment
  embeddings are pooled per option (weighted by length) into raw = [visual-image 1024 | audio 1024], then
  projected like the local features.

Any failure (HTTP error, throttling, a failed or timed-out invocation, a reply that does not parse or lacks
a field) raises HostedModelError, so the step fails and is retried; nothing is ever filled in.
"""

from __future__ import annotations

import base64
import hashlib
import json
import re
import threading
import time
import uuid
from pathlib import Path
from typing import Any

import numpy as np

from reelforge.apps.mobs.models import embeddings, participation
from reelforge.apps.mobs.models import text as textmod
from reelforge.apps.mobs.models.tasks import TASK_EMBED, TASK_PARTICIPATION
from reelforge.apps.mobs.ports import EmbedResult, ParticipationResult, VideoAnalysisRequest
from reelforge.errors import JobCancelled, ReelforgeError, ValidationFailed
from reelforge.ports.models import Availability, CancelledFn, ProgressFn

MARENGO_DIM = 1024
MARENGO_OPTIONS = ("visual-image", "audio")
_RETRYABLE_CODES = {"ThrottlingException", "ServiceUnavailableException", "InternalServerException",
                    "ModelNotReadyException", "ModelTimeoutException", "ServiceQuotaExceededException",
                    "RequestTimeout", "SlowDown", "InternalError"}


class HostedModelError(ReelforgeError):
    """A hosted model call failed or answered something unusable; the step fails (and is retried)."""

    status, code, title, retryable = 502, "hosted_model_error", "Hosted model failed", True


class HostedModelRejected(HostedModelError):
    """The hosted service refused the request itself (validation, access): retrying the same call cannot help."""

    status, code, title, retryable = 422, "hosted_model_rejected", "Hosted model refused the request", False


PEGASUS_PROMPT = """Analyse this short video and answer with one JSON object only, no prose, with exactly these keys:
"ocr_text": list of the distinct lines of text shown on screen (empty list if none);
"transcript": the exact words spoken (empty string if none);
"words": list of {"word": string, "start": seconds, "end": seconds} for each spoken word;
"hashtags": list of hashtags written or spoken, without '#';
"mentions": list of @mentions, without '@';
"motion": number 0..1, how much the picture moves (0 still, 1 constant chaotic change);
"scene_cuts": integer number of hard cuts;
"subject_presence": number 0..1, fraction of the video in which a person or clear subject is visible;
"visual_quality": number 0..1, 1 for clear natural footage, 0 for black, blank or random-noise frames."""

_PEGASUS_FIELDS: dict[str, type | tuple[type, ...]] = {
    "ocr_text": list, "transcript": str, "words": list, "hashtags": list, "mentions": list,
    "motion": (int, float), "scene_cuts": (int, float), "subject_presence": (int, float),
    "visual_quality": (int, float),
}


def _mobs(settings: Any) -> Any:
    return getattr(settings, "mobs", settings)


class _BedrockBase:
    """Client creation, media upload and error translation shared by both adapters."""

    test_model = False

    def __init__(self, mobs: Any) -> None:
        self.mobs = mobs
        self.cfg = mobs.bedrock
        self._lock = threading.Lock()
        self._clients: dict[str, Any] = {}

    @property
    def source(self) -> str:
        return f"Amazon Bedrock ({self.cfg.region}{', ' + self.cfg.endpoint_url if self.cfg.endpoint_url else ''})"

    def availability(self) -> Availability:
        try:
            import boto3  # noqa: F401
        except ImportError as exc:  # pragma: no cover - boto3 is a core dependency
            return Availability(False, f"boto3 is not installed: {exc}")
        if not self.cfg.bucket and self.task == TASK_EMBED:
            return Availability(False, "set mobs.bedrock.bucket: Marengo writes its asynchronous output to S3")
        if not (self.cfg.endpoint_url or self.cfg.region):
            return Availability(False, "set mobs.bedrock.region or mobs.bedrock.endpoint_url")
        return Availability(True)

    task: str = ""

    def setup(self) -> None:
        self._client("bedrock-runtime")

    def _client(self, service: str) -> Any:
        with self._lock:
            if service not in self._clients:
                import boto3
                from botocore.config import Config

                kwargs: dict[str, Any] = {"region_name": self.cfg.region or "us-east-1"}
                endpoint = self.cfg.endpoint_url if service == "bedrock-runtime" else self.cfg.s3_endpoint_url
                if endpoint:
                    kwargs["endpoint_url"] = endpoint
                if self.cfg.access_key_id:
                    kwargs["aws_access_key_id"] = self.cfg.access_key_id
                    kwargs["aws_secret_access_key"] = self.cfg.secret_access_key
                extra = {"s3": {"addressing_style": "path"}} if service == "s3" else {}
                config = Config(retries={"max_attempts": 3, "mode": "standard"}, connect_timeout=10,
                                read_timeout=300, **extra)
                self._clients[service] = boto3.session.Session().client(service, config=config, **kwargs)
            return self._clients[service]

    def _call(self, what: str, fn: Any, **kwargs: Any) -> Any:
        from botocore.exceptions import BotoCoreError, ClientError

        try:
            return fn(**kwargs)
        except ClientError as exc:
            err = exc.response.get("Error", {})
            code = str(err.get("Code") or "Unknown")
            message = str(err.get("Message") or exc)
            status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
            cls = HostedModelError if (code in _RETRYABLE_CODES or (status or 0) >= 500) else HostedModelRejected
            raise cls(f"{what} failed: {code}: {message}", service_code=code, http_status=status) from exc
        except BotoCoreError as exc:
            raise HostedModelError(f"{what} failed: {type(exc).__name__}: {exc}") from exc

    def _media_source(self, path: Path) -> dict[str, Any]:
        """Inline base64 for small videos; larger ones are uploaded to the bucket and passed by s3Location."""
        try:
            size = path.stat().st_size
        except OSError as exc:
            raise ValidationFailed(f"video file not found: {path}", code="invalid_media") from exc
        if size <= self.cfg.inline_max_bytes:
            return {"base64String": base64.b64encode(path.read_bytes()).decode("ascii")}
        if not self.cfg.bucket:
            raise HostedModelRejected(f"the video is {size} bytes, over the inline limit of "
                                      f"{self.cfg.inline_max_bytes}; set mobs.bedrock.bucket to pass it through S3")
        digest = hashlib.sha256()
        with path.open("rb") as fh:
            for block in iter(lambda: fh.read(1 << 20), b""):
                digest.update(block)
        key = f"{self.cfg.prefix}inputs/{digest.hexdigest()}{path.suffix.lower()}"
        s3 = self._client("s3")
        self._call("S3 upload", s3.upload_file, Filename=str(path), Bucket=self.cfg.bucket, Key=key)
        location: dict[str, Any] = {"uri": f"s3://{self.cfg.bucket}/{key}"}
        if self.cfg.bucket_owner:
            location["bucketOwner"] = self.cfg.bucket_owner
        return {"s3Location": location}


def _request(request: Any) -> VideoAnalysisRequest:
    if not isinstance(request, VideoAnalysisRequest):
        raise ValidationFailed("expected a VideoAnalysisRequest", code="invalid_request")
    return request


def _json_object(message: str) -> dict[str, Any]:
    text = message.strip()
    fenced = re.search(r"```(?:json)?\s*(.*?)```", text, re.DOTALL)
    if fenced:
        text = fenced.group(1).strip()
    start, end = text.find("{"), text.rfind("}")
    if start < 0 or end <= start:
        raise HostedModelError(f"Pegasus did not answer with a JSON object: {message[:200]!r}")
    try:
        value = json.loads(text[start:end + 1])
    except json.JSONDecodeError as exc:
        raise HostedModelError(f"Pegasus answered invalid JSON ({exc}): {message[:200]!r}") from exc
    if not isinstance(value, dict):
        raise HostedModelError("Pegasus answered JSON that is not an object")
    return value


def _strings(value: list[Any], field: str) -> list[str]:
    if not all(isinstance(v, str) for v in value):
        raise HostedModelError(f"Pegasus field {field!r} must be a list of strings")
    return [v.strip().lstrip("#@").casefold() if field in ("hashtags", "mentions") else v.strip()
            for v in value if v.strip()]


class PegasusParticipationAdapter(_BedrockBase):
    """video.participation by TwelveLabs Pegasus 1.2 on Bedrock."""

    task = TASK_PARTICIPATION
    name = "bedrock"
    description = "TwelveLabs Pegasus 1.2 on Amazon Bedrock (InvokeModel): on-screen text, speech, hashtags, activity"

    def run(self, request: Any, *, progress: ProgressFn | None = None,
            cancelled: CancelledFn | None = None) -> ParticipationResult:
        req = _request(request)
        if progress:
            progress(0.05, "sending the video to Pegasus")
        body = {"inputPrompt": PEGASUS_PROMPT, "mediaSource": self._media_source(Path(req.path)),
                "temperature": 0.0, "maxOutputTokens": 4096}
        client = self._client("bedrock-runtime")
        resp = self._call("Pegasus InvokeModel", client.invoke_model, modelId=self.cfg.pegasus_model_id,
                          body=json.dumps(body).encode(), contentType="application/json", accept="application/json")
        if cancelled is not None and cancelled():
            raise JobCancelled("analysis cancelled")
        try:
            payload = json.loads(resp["body"].read())
        except (ValueError, KeyError) as exc:
            raise HostedModelError(f"Pegasus response is not JSON: {exc}") from exc
        message = payload.get("message") if isinstance(payload, dict) else None
        if not isinstance(message, str):
            raise HostedModelError("Pegasus response has no 'message'")
        if payload.get("finishReason") == "length":
            raise HostedModelError("Pegasus stopped at the token limit (finishReason=length); the answer is incomplete")
        data = _json_object(message)
        missing = [k for k in _PEGASUS_FIELDS if k not in data]
        wrong = [k for k, t in _PEGASUS_FIELDS.items() if k in data and
                 (not isinstance(data[k], t) or isinstance(data[k], bool))]
        if missing or wrong:
            raise HostedModelError(f"Pegasus answer lacks fields {missing} or has wrong types for {wrong}")
        words: list[dict[str, Any]] = []
        for w in data["words"]:
            if not (isinstance(w, dict) and isinstance(w.get("word"), str)
                    and isinstance(w.get("start"), int | float) and isinstance(w.get("end"), int | float)):
                raise HostedModelError("Pegasus 'words' entries must be {word, start, end}")
            words.append({"word": w["word"].strip(), "start": float(w["start"]), "end": float(w["end"])})
        for k in ("motion", "subject_presence", "visual_quality"):
            if not 0.0 <= float(data[k]) <= 1.0:
                raise HostedModelError(f"Pegasus field {k!r} must lie in 0..1, got {data[k]}")
        ocr_text = _strings(data["ocr_text"], "ocr_text")
        transcript = data["transcript"].strip()
        joined = "\n".join(ocr_text)
        tags = textmod.hashtags(req.caption, joined, spoken=transcript)
        tags += [t for t in _strings(data["hashtags"], "hashtags") if t not in tags]
        ments = textmod.mentions(req.caption, joined)
        ments += [m for m in _strings(data["mentions"], "mentions") if m not in ments]
        activity = {"motion": float(data["motion"]), "scene_cuts": float(data["scene_cuts"]),
                    "subject_presence": float(data["subject_presence"]),
                    "visual_quality": float(data["visual_quality"])}
        parts = participation.components(ocr_text=ocr_text, words=words, hashtags=tags, mentions=ments,
                                         activity=activity)
        if progress:
            progress(1.0, "Pegasus analysis read")
        return ParticipationResult(
            ocr_text=ocr_text, transcript=transcript, words=words, hashtags=tags, mentions=ments,
            terms=textmod.terms(req.caption, joined, transcript), activity=activity, components=parts,
            score=participation.score(parts), model=f"bedrock:{self.cfg.pegasus_model_id}",
        )


class MarengoEmbedAdapter(_BedrockBase):
    """video.embed by TwelveLabs Marengo Embed 2.7 on Bedrock (asynchronous invocation, output in S3)."""

    task = TASK_EMBED
    name = "bedrock"
    description = "TwelveLabs Marengo Embed 2.7 on Amazon Bedrock (StartAsyncInvoke -> S3), projected to the index size"

    def __init__(self, mobs: Any) -> None:
        super().__init__(mobs)
        self.raw_dim = MARENGO_DIM * len(MARENGO_OPTIONS)
        self._projection: embeddings.Projection | None = None

    def projection(self) -> embeddings.Projection:
        with self._lock:
            if self._projection is None:
                self._projection = embeddings.random_projection(
                    int(self.mobs.embedding_dim), seed=int(self.mobs.projection_seed), in_dim=self.raw_dim)
            return self._projection

    def _start(self, path: Path) -> tuple[str, str]:
        out_uri = f"s3://{self.cfg.bucket}/{self.cfg.prefix}async/"
        output: dict[str, Any] = {"s3Uri": out_uri}
        if self.cfg.bucket_owner:
            output["bucketOwner"] = self.cfg.bucket_owner
        model_input = {"inputType": "video", "mediaSource": self._media_source(path),
                       "embeddingOption": list(MARENGO_OPTIONS)}
        resp = self._call("Marengo StartAsyncInvoke", self._client("bedrock-runtime").start_async_invoke,
                          clientRequestToken=uuid.uuid4().hex, modelId=self.cfg.marengo_model_id,
                          modelInput=model_input, outputDataConfig={"s3OutputDataConfig": output})
        arn = resp.get("invocationArn")
        if not isinstance(arn, str) or not arn:
            raise HostedModelError("StartAsyncInvoke returned no invocationArn")
        return arn, out_uri

    def _wait(self, arn: str, cancelled: CancelledFn | None, progress: ProgressFn | None) -> dict[str, Any]:
        client = self._client("bedrock-runtime")
        deadline = time.monotonic() + float(self.cfg.timeout_s)
        while True:
            resp = self._call("Marengo GetAsyncInvoke", client.get_async_invoke, invocationArn=arn)
            status = resp.get("status")
            if status == "Completed":
                return dict(resp)
            if status == "Failed":
                reason = resp.get("failureMessage") or "no reason given"
                raise HostedModelError(f"Marengo invocation {arn} failed: {reason}")
            if status != "InProgress":
                raise HostedModelError(f"Marengo invocation {arn} has unknown status {status!r}")
            if cancelled is not None and cancelled():
                raise JobCancelled("analysis cancelled")
            if time.monotonic() > deadline:
                raise HostedModelError(f"Marengo invocation {arn} still running after {self.cfg.timeout_s:.0f} s")
            if progress:
                progress(0.5, "waiting for Marengo")
            time.sleep(float(self.cfg.poll_interval_s))

    def _read_output(self, arn: str, status: dict[str, Any], default_uri: str) -> dict[str, Any]:
        uri = (status.get("outputDataConfig") or {}).get("s3OutputDataConfig", {}).get("s3Uri") or default_uri
        m = re.match(r"s3://([^/]+)/?(.*)$", uri)
        if not m:
            raise HostedModelError(f"Marengo output location is not an s3:// URI: {uri!r}")
        bucket, prefix = m.group(1), m.group(2)
        if prefix and not prefix.endswith("/"):
            prefix += "/"
        invocation_id = arn.rsplit("/", 1)[-1]
        key = f"{prefix}{invocation_id}/output.json"
        s3 = self._client("s3")
        obj = self._call("reading Marengo output from S3", s3.get_object, Bucket=bucket, Key=key)
        try:
            data = json.loads(obj["Body"].read())
        except ValueError as exc:
            raise HostedModelError(f"Marengo output s3://{bucket}/{key} is not JSON: {exc}") from exc
        if not isinstance(data, dict) or not isinstance(data.get("data"), list):
            raise HostedModelError(f"Marengo output s3://{bucket}/{key} has no 'data' list")
        return data

    def pool(self, data: dict[str, Any]) -> np.ndarray:
        """raw = [visual-image | audio] (each the length-weighted mean of its segments, unit-normalised;
        zeros for an option with no segments, such as audio of a silent video)."""
        blocks: list[np.ndarray] = []
        found = 0
        for option in MARENGO_OPTIONS:
            acc = np.zeros(MARENGO_DIM, np.float64)
            total = 0.0
            for seg in data["data"]:
                if not isinstance(seg, dict) or seg.get("embeddingOption") != option:
                    continue
                vec = seg.get("embedding")
                if not isinstance(vec, list) or len(vec) != MARENGO_DIM:
                    raise HostedModelError(f"Marengo segment embedding must have {MARENGO_DIM} values")
                weight = max(float(seg.get("endSec", 0.0)) - float(seg.get("startSec", 0.0)), 1e-3)
                acc += weight * np.asarray(vec, np.float64)
                total += weight
            if total > 0:
                found += 1
                acc /= np.linalg.norm(acc) + 1e-12
            blocks.append(acc.astype(np.float32))
        if found == 0 or not np.any(blocks[0]):
            raise HostedModelError("Marengo output holds no visual embedding")
        return np.concatenate(blocks)

    def raw_features(self, request: Any, *, cancelled: CancelledFn | None = None,
                     progress: ProgressFn | None = None) -> np.ndarray:
        req = _request(request)
        arn, out_uri = self._start(Path(req.path))
        status = self._wait(arn, cancelled, progress)
        return self.pool(self._read_output(arn, status, out_uri))

    def run(self, request: Any, *, progress: ProgressFn | None = None,
            cancelled: CancelledFn | None = None) -> EmbedResult:
        raw = self.raw_features(request, cancelled=cancelled, progress=progress)
        proj = self.projection()
        if progress:
            progress(1.0, "Marengo embedding read")
        return EmbedResult(vector=proj.project(raw), model_version=f"marengo-2.7/{proj.version}",
                           frame_dim=MARENGO_DIM, text_dim=MARENGO_DIM, model=f"bedrock:{self.cfg.marengo_model_id}",
                           notes=("second block is Marengo's audio embedding",))
