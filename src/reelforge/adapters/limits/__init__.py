"""Shared rate-limit counters (ports/limits.WindowCounter): a database table or Redis."""
