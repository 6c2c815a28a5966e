"""Functions run in child processes started with the "spawn" method.

A spawned child imports this module afresh, so nothing here touches Django at
import time: each function configures Django itself and points the default
database at the parent's test database before the first query.
"""

from __future__ import annotations

import os
from typing import Any


def setup_django(database_name: str) -> None:
    """Configure Django in a fresh process to use the parent's test database."""
    os.environ["DJANGO_SETTINGS_MODULE"] = "tests.settings"
    import django
    from django.conf import settings

    django.setup()
    settings.DATABASES["default"]["NAME"] = database_name
    # Connections are created lazily from settings.DATABASES: nothing has
    # connected yet, but make sure no wrapper was built with the old name.
    from django.db import connections

    connections["default"].settings_dict["NAME"] = database_name


def save_same_user_repeatedly(
    database_name: str,
    barrier: Any,
    results: Any,
    worker: int,
    saves: int,
    workers: int,
    user_name: str,
    base_expiry: int,
    secrets: dict[str, str],
) -> None:
    """Save tokens for ``user_name`` ``saves`` times with increasing expiry.

    Save ``i`` of worker ``w`` has expiry ``base_expiry + (i * workers + w) * 1000``
    and access token ``"{access_prefix}-{i}-{w}"``, so the workers' expiries interleave.
    Puts ``(worker, ids, error)`` on ``results``: the ids each save set on its token.
    """
    ids: list[str] = []
    error: str | None = None
    try:
        setup_django(database_name)
        from django.db import connection
        from zohocrmsdk.src.com.zoho.api.authenticator.oauth_token import OAuthToken
        from zohocrmsdk.src.com.zoho.crm.api.user_signature import UserSignature

        from zoho_tokens.store import DjangoTokenStore

        store = DjangoTokenStore()
        try:
            barrier.wait(timeout=60)
            for i in range(saves):
                token = OAuthToken(
                    client_id=secrets["client_id"],
                    client_secret=secrets["client_secret"],
                    refresh_token=secrets["refresh_token"],
                    access_token=f"{secrets['access_prefix']}-{i}-{worker}",
                    user_signature=UserSignature(user_name),
                )
                token.set_expires_in(str(base_expiry + (i * workers + worker) * 1000))
                store.save_token(token)
                ids.append(token.get_id())
        finally:
            connection.close()
    except BaseException as exc:  # reported to the parent, which fails the test
        error = f"{type(exc).__name__}: {exc}"
    results.put((worker, ids, error))
