"""CloudWatch PutMetricData through boto3 (AWS, or any endpoint speaking its protocol)."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

import boto3
from botocore.config import Config

from reelforge.ports.metrics import Datum

# PutMetricData takes at most 1000 datums per request (and 1 MB; 1000 of ours are far below it).
MAX_DATUMS_PER_CALL = 1000


class CloudWatchSink:
    """One boto3 CloudWatch client; credentials from boto3's default chain (environment, task or instance role)."""

    def __init__(self, region: str, endpoint_url: str | None = None, *, timeout_s: float = 10.0,
                 access_key: str | None = None, secret_key: str | None = None) -> None:
        config = Config(connect_timeout=timeout_s, read_timeout=timeout_s,
                        # A failed tick is logged and the next one publishes fresh figures: no long retry chain.
                        retries={"max_attempts": 2, "mode": "standard"})
        self.client: Any = boto3.session.Session().client(
            "cloudwatch", region_name=region, endpoint_url=endpoint_url, aws_access_key_id=access_key,
            aws_secret_access_key=secret_key, config=config)

    def put(self, namespace: str, datums: Sequence[Datum], timestamp: float) -> int:
        """PutMetricData in chunks of MAX_DATUMS_PER_CALL; returns the number of requests."""
        when = datetime.fromtimestamp(timestamp, tz=UTC)
        data = [{"MetricName": d.name, "Value": float(d.value), "Unit": d.unit, "Timestamp": when,
                 "Dimensions": [{"Name": n, "Value": v} for n, v in d.dimensions]} for d in datums]
        calls = 0
        for start in range(0, len(data), MAX_DATUMS_PER_CALL):
            self.client.put_metric_data(Namespace=namespace, MetricData=data[start:start + MAX_DATUMS_PER_CALL])
            calls += 1
        return calls

    def close(self) -> None:
        self.client.close()
