"""What the platform and its cloud deployment must agree on, in one place.

The S3 adapter (storage class and tag on write), `reelforge storage apply-lifecycle` (the bucket's lifecycle
configuration), the metrics publisher and the CDK app in deploy/aws all read these definitions, so the bucket
rules, the scaling policy and the alarms cannot drift from what the platform writes and publishes.
"""

from __future__ import annotations

from typing import Any

from reelforge.domain.types import Lifecycle

# Every object the platform writes carries this tag; the bucket's lifecycle rules filter on it.
LIFECYCLE_TAG = "reelforge-lifecycle"

# The storage class an object is written in, per lifecycle class. Archive is Glacier Instant Retrieval: its
# objects stay readable by a plain GET (the platform serves and re-reads them without a restore step).
STORAGE_CLASS: dict[str, str] = {
    Lifecycle.hot: "STANDARD",
    Lifecycle.infrequent: "STANDARD_IA",
    Lifecycle.archive: "GLACIER_IR",
    Lifecycle.temporary: "STANDARD",
}

# Temporary objects expire after this many days (the platform's own sweeper deletes them after 24 h; the bucket
# rule is the backstop). Outputs (hot objects) move to Infrequent Access, then to Glacier Instant Retrieval.
TEMPORARY_EXPIRE_DAYS = 1
OUTPUT_IA_DAYS = 30
OUTPUT_GLACIER_DAYS = 90
INFREQUENT_GLACIER_DAYS = 90
ABORT_INCOMPLETE_MULTIPART_DAYS = 1
NONCURRENT_EXPIRE_DAYS = 30


def lifecycle_rules(*, transitions: bool = True) -> list[dict[str, Any]]:
    """The bucket lifecycle rules, in the shape of S3's PutBucketLifecycleConfiguration ``Rules``.

    ``transitions=False`` leaves out the storage-class transitions (and the rules that only tier), for a bucket
    written without storage classes: an S3-compatible server that has no classes refuses transition rules.
    """

    def tagged(value: str) -> dict[str, Any]:
        return {"Tag": {"Key": LIFECYCLE_TAG, "Value": value}}

    rules: list[dict[str, Any]] = [
        {"ID": "reelforge-temporary-expire", "Status": "Enabled", "Filter": tagged(Lifecycle.temporary),
         "Expiration": {"Days": TEMPORARY_EXPIRE_DAYS}},
        {"ID": "reelforge-hot-tiering", "Status": "Enabled", "Filter": tagged(Lifecycle.hot),
         "Transitions": [{"Days": OUTPUT_IA_DAYS, "StorageClass": "STANDARD_IA"},
                         {"Days": OUTPUT_GLACIER_DAYS, "StorageClass": "GLACIER_IR"}]},
        {"ID": "reelforge-infrequent-tiering", "Status": "Enabled", "Filter": tagged(Lifecycle.infrequent),
         "Transitions": [{"Days": INFREQUENT_GLACIER_DAYS, "StorageClass": "GLACIER_IR"}]},
        {"ID": "reelforge-abort-incomplete-multipart", "Status": "Enabled", "Filter": {"Prefix": ""},
         "AbortIncompleteMultipartUpload": {"DaysAfterInitiation": ABORT_INCOMPLETE_MULTIPART_DAYS}},
        {"ID": "reelforge-noncurrent-expire", "Status": "Enabled", "Filter": {"Prefix": ""},
         "NoncurrentVersionExpiration": {"NoncurrentDays": NONCURRENT_EXPIRE_DAYS}},
    ]
    if transitions:
        return rules
    out = []
    for rule in rules:
        rest = {k: v for k, v in rule.items() if k != "Transitions"}
        if set(rest) - {"ID", "Status", "Filter"}:  # an action is left
            out.append(rest)
    return out


# Metrics the platform publishes (CloudWatch PutMetricData, and /metrics) and the deployment scales and alarms on.
METRIC_NAMESPACE = "Reelforge"
QUEUE_DEPTH = "QueueDepth"            # jobs due and waiting, per JobKind and per ResourceClass
QUEUE_AGE = "QueueOldestAgeSeconds"   # seconds the oldest due job has waited, per JobKind and per ResourceClass
RUNNING = "RunningJobs"               # jobs running, per JobKind and per ResourceClass
ALARM_VALUE = "AlarmRuleValue"        # each alarm rule's observed value, per Rule (the platform's alarm rules)
DIM_KIND = "JobKind"
DIM_RESOURCE = "ResourceClass"
DIM_RULE = "Rule"
# A per-subject rule (model_error_rate) publishes one ALARM_VALUE per model with this dimension beside Rule, and
# the largest of them with Rule alone (what one alarm over every model reads).
DIM_MODEL = "Model"
RESOURCE_CLASSES = ("cpu", "gpu")
