"""The pgvector server fixtures for the VectorIndex contract suite."""

from tests.fixtures.pgvector_server import pgvector_server, pgvector_url

__all__ = ["pgvector_server", "pgvector_url"]
