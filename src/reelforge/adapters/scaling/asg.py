"""Workers as an EC2 Auto Scaling group per resource class: the autoscaler sets its desired capacity (boto3).

The group's own instance lifecycle does the rest (launch template, Spot mix); instances that the group removes
get their Spot-style notice or SIGTERM and hand their jobs back (docs/architecture.md, "Elasticity").
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any


class AsgScaler:
    def __init__(self, groups: Mapping[str, str], *, region: str = "us-east-1", endpoint_url: str | None = None,
                 client: Any = None) -> None:
        if client is None:
            import boto3

            client = boto3.client("autoscaling", region_name=region, endpoint_url=endpoint_url or None)
        self.client = client
        self.groups = dict(groups)

    def _group(self, resource_class: str) -> dict[str, Any] | None:
        name = self.groups.get(resource_class)
        if not name:
            return None
        found = self.client.describe_auto_scaling_groups(AutoScalingGroupNames=[name])["AutoScalingGroups"]
        return found[0] if found else None

    def current(self, resource_class: str) -> int:
        group = self._group(resource_class)
        return int(group["DesiredCapacity"]) if group is not None else 0

    def set_desired(self, resource_class: str, count: int) -> None:
        group = self._group(resource_class)
        if group is None:
            return  # no group for this class: nothing to scale
        count = max(int(group["MinSize"]), min(int(group["MaxSize"]), count))
        self.client.set_desired_capacity(AutoScalingGroupName=group["AutoScalingGroupName"],
                                         DesiredCapacity=count, HonorCooldown=False)

    def close(self) -> None:
        pass
