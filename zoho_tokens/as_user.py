"""Calling the Zoho SDK as a Django user: ``use_zoho_as(user)``, then the SDK's calls.

The SDK keeps one initializer per process (``Initializer.initialize``) and one per thread
(``Initializer.switch_user``); its calls use the thread's, else the process's.
``use_zoho_as`` initialises the process once, with a placeholder token that Zoho refuses,
then switches the calling thread to the user's token. Every request, task or command
thread therefore acts as the user it named, whatever other threads do, and a thread that
never named one fails at Zoho instead of acting as someone else.
"""

from __future__ import annotations

import os
import tempfile
import threading
from typing import Any

from django.core.exceptions import ImproperlyConfigured
from zohocrmsdk.src.com.zoho.api.authenticator.oauth_token import OAuthToken
from zohocrmsdk.src.com.zoho.crm.api.dc.data_center import DataCenter
from zohocrmsdk.src.com.zoho.crm.api.initializer import Initializer

from . import oauth
from .conf import app_settings
from .models import NEEDS_REAUTHORIZATION, ZohoToken
from .store import DjangoTokenStore

_initializing = threading.Lock()
# What un-switched threads send Zoho: not a token, so Zoho answers INVALID_TOKEN.
PLACEHOLDER_TOKEN = "no-user:call-zoho_tokens.as_user.use_zoho_as-first"
FAR_FUTURE_MS = str(2**62)


class ZohoNotConnected(Exception):
    """The user has no Zoho connection the SDK can use. ``token`` is the row that needs the
    user's consent again (revoked, or refused by Zoho), or ``None`` when there is none."""

    def __init__(self, message: str, token: ZohoToken | None = None) -> None:
        super().__init__(message)
        self.token = token


def use_zoho_as(user_or_token: Any, *, sdk_config: Any = None) -> ZohoToken:
    """Make the SDK's next calls in this thread use ``user_or_token``'s Zoho token (a user
    who owns one connection, or a ``ZohoToken``); returns that row.

    Raises :class:`ZohoNotConnected` when there is no usable token, ``ValueError`` when
    the user owns several connections (pass the ``ZohoToken`` to use).
    """
    row = user_or_token if isinstance(user_or_token, ZohoToken) else token_of(user_or_token)
    if row.is_revoked or row.status == NEEDS_REAUTHORIZATION:
        raise ZohoNotConnected(f"The Zoho connection of {row.email} must be reconnected.", row)
    environment = environment_for(row.api_domain)
    initialize_once(environment, sdk_config)
    Initializer.switch_user(environment=environment, token=OAuthToken(id=row.token_id), sdk_config=sdk_config)
    return row


def token_of(user: Any) -> ZohoToken:
    """The user's Zoho connection: the one active row they own, else the most recent
    flagged one (as :class:`ZohoNotConnected`)."""
    rows = list(ZohoToken.objects.filter(owner=user).order_by("-updated_at"))
    active = [row for row in rows if not row.is_revoked]
    if len(active) > 1:
        names = ", ".join(row.user_name or row.token_id for row in active)
        raise ValueError(f"{user} has {len(active)} Zoho connections ({names}): pass the ZohoToken to use.")
    if active:
        return active[0]
    if rows:
        raise ZohoNotConnected(f"The Zoho connection of {rows[0].email} must be reconnected.", rows[0])
    raise ZohoNotConnected(f"{user} has not connected Zoho.")


def environment_for(api_domain: str | None) -> Any:
    """The SDK's ``Environment`` for tokens of ``api_domain``: the SDK's own data centre,
    else the trusted accounts server whose tokens carry it (the UK, a test server)."""
    environment = DataCenter.get(api_domain) if api_domain else None
    if environment is not None:
        return environment
    server = oauth.accounts_server_for_api_domain(api_domain)
    if server is None:
        raise ImproperlyConfigured(
            f"No Zoho accounts server is known for the API domain {api_domain!r}: "
            "map it in ZOHO_TOKENS_ACCOUNTS_SERVERS."
        )
    upload = server.api_domain.replace("://www.", "://content.") if server.location else server.api_domain
    return DataCenter.Environment(oauth.origin(api_domain), server.token_endpoint, upload)


def initialize_once(environment: Any, sdk_config: Any = None) -> None:
    """Initialise the SDK for this process, once, with the store and a placeholder token."""
    with _initializing:
        if Initializer.initializer is not None:
            return
        placeholder = OAuthToken(access_token=PLACEHOLDER_TOKEN)
        # With an expiry the SDK neither refreshes it nor asks Zoho whose it is.
        placeholder.set_expires_in(FAR_FUTURE_MS)
        Initializer.initialize(
            environment=environment,
            token=placeholder,
            store=DjangoTokenStore(),
            sdk_config=sdk_config,
            resource_path=resource_path(),
        )


def resource_path() -> str:
    """Where the SDK keeps its field metadata (``ZOHO_TOKENS_SDK_RESOURCE_PATH``), created if need be."""
    path = app_settings.SDK_RESOURCE_PATH or os.path.join(tempfile.gettempdir(), "zoho_tokens_sdk")
    os.makedirs(path, exist_ok=True)
    return path
