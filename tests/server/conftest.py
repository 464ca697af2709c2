"""Fixtures shared by the server tests that need real services."""

from tests.server.test_multiprocess import redis_url

__all__ = ["redis_url"]
