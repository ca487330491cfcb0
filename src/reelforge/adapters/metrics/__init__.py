"""Metric sinks (ports/metrics.py): CloudWatch through boto3."""
