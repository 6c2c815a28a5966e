"""Test helpers for apps using ``zoho_tokens``: a fake Zoho server and pytest fixtures.

Enable the fixtures with ``pytest_plugins = ["zoho_tokens.testing.pytest_plugin"]``.
"""

from zoho_tokens.testing.fake_zoho import (
    DROP,
    ENDPOINTS,
    RATE_LIMIT_BODY,
    RATE_LIMIT_STATUS,
    FakeZoho,
)

__all__ = ["DROP", "ENDPOINTS", "RATE_LIMIT_BODY", "RATE_LIMIT_STATUS", "FakeZoho"]
