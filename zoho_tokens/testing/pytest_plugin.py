"""pytest fixtures for testing code that drives the Zoho CRM SDK against :class:`FakeZoho`.

Enable with ``pytest_plugins = ["zoho_tokens.testing.pytest_plugin"]``. Fixtures:

``fake_zoho``
    A :class:`FakeZoho` started once per session and ``reset()`` before each test. It
    plays two data centres, ``"us"`` (``base_url``) and ``"eu"`` (``url_of("eu")``), and
    each one's API domain maps to it in ``ZOHO_TOKENS_ACCOUNTS_SERVERS`` for the test.
``zoho_sdk_reset``
    Clears the SDK's global and thread-local ``Initializer`` state before and after the
    test, so one test's ``Initializer.initialize``/``switch_user`` cannot leak into the next.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager

import pytest

from zoho_tokens.testing.fake_zoho import FakeZoho

__all__ = ["fake_zoho", "reset_zoho_sdk", "zoho_sdk_reset"]


@pytest.fixture(scope="session")
def _fake_zoho_server() -> Iterator[FakeZoho]:
    """The session-wide server behind ``fake_zoho``."""
    with FakeZoho(data_centres=("us", "eu")) as server:
        yield server


@pytest.fixture
def fake_zoho(_fake_zoho_server: FakeZoho) -> Iterator[FakeZoho]:
    """A running :class:`FakeZoho` with no users, tokens, counts or injected errors.

    Each data centre's API domain is also its accounts server in
    ``ZOHO_TOKENS_ACCOUNTS_SERVERS`` for the test (when Django is configured), so the store
    refreshes and revokes its tokens there, as it would at a real data centre.
    """
    _fake_zoho_server.reset()
    with _accounts_servers_mapped(_fake_zoho_server.accounts_servers()):
        yield _fake_zoho_server


@contextmanager
def _accounts_servers_mapped(servers: dict[str, str]) -> Iterator[None]:
    from django.conf import settings

    if not settings.configured:
        yield
        return
    from django.test import override_settings

    mapped = {**getattr(settings, "ZOHO_TOKENS_ACCOUNTS_SERVERS", {}), **servers}
    with override_settings(ZOHO_TOKENS_ACCOUNTS_SERVERS=mapped):
        yield


def reset_zoho_sdk() -> None:
    """Forget the SDK's initializer: the global one and every thread's ``switch_user`` one.

    ``Initializer.get_initializer()`` prefers ``Initializer.LOCAL.init`` (set per thread by
    ``switch_user``) over ``Initializer.initializer`` (set by ``initialize``). Setting
    ``LOCAL.init = None`` only clears the calling thread, so ``LOCAL`` is also replaced by a
    fresh ``threading.local()``, which clears it for all threads (the SDK always reads it
    through the class attribute).
    """
    from zohocrmsdk.src.com.zoho.crm.api.initializer import Initializer

    Initializer.LOCAL.init = None
    Initializer.LOCAL = threading.local()
    Initializer.LOCAL.init = None
    Initializer.initializer = None


@pytest.fixture
def zoho_sdk_reset() -> Iterator[None]:
    """Run the test with a pristine SDK ``Initializer`` and restore it afterwards."""
    reset_zoho_sdk()
    yield
    reset_zoho_sdk()
