"""The OAuth web flow's protocol: which accounts servers a code may be exchanged at
(Zoho's data centres, from ``datacentres``, and configured test servers), the consent
URL, and the ``state`` that ties a callback to the session that asked for it.

Consent starts at ``accounts.zoho.com`` (``accounts.zoho.com.cn`` in China), but the
user's account may live in another data centre: Zoho names it in the callback's
``location`` and ``accounts-server`` parameters, and the code is good only there. Those
parameters come through the user's browser, so they are checked against a fixed list
before anything is sent: the client secret goes to Zoho's own accounts servers, and to
the ones ``ZOHO_TOKENS_ACCOUNTS_SERVERS`` maps API domains to (test servers), never
anywhere else: the same places a refresh sends it.
"""

from __future__ import annotations

import hmac
import secrets
import time
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode, urlsplit

from django.http import HttpRequest

from .conf import app_settings
from .datacentres import (
    DATA_CENTRES,
    TOKEN_PATH,
    accounts_server_for,
    configured_accounts_servers,
    origin,
)

# --- where a code may be exchanged --------------------------------------------------------


@dataclass(frozen=True)
class AccountsServer:
    """A trusted accounts server, with the API domain of the tokens it issues."""

    url: str  # origin, no slash
    api_domain: str
    location: str  # the data centre's code; "" for a configured server
    name: str

    @property
    def token_endpoint(self) -> str:
        return self.url + TOKEN_PATH


class UntrustedAccountsServer(ValueError):
    """The callback named an accounts server this site does not send its secret to."""


def trusted_servers() -> list[AccountsServer]:
    """Zoho's accounts server of every data centre, then each server of
    ``ZOHO_TOKENS_ACCOUNTS_SERVERS`` (with the first API domain mapped to it)."""
    # A data centre's tokens carry its production API domain, the first of its domains.
    servers = [AccountsServer(c.accounts_server, c.api_domains[0], c.code, c.name) for c in DATA_CENTRES]
    known = {server.url for server in servers}
    for domain, server in configured_accounts_servers().items():
        if server not in known:
            known.add(server)
            servers.append(AccountsServer(server, domain, "", server))
    return servers


def accounts_server_named(accounts_server: str | None, location: str | None) -> AccountsServer:
    """The trusted accounts server a callback names, or ``UntrustedAccountsServer``.

    ``accounts-server`` decides; ``location``, when Zoho sends it for one of its data
    centres, must agree. Neither given: the server consent started at.
    """
    location = (location or "").strip().lower()
    named = accounts_server or (None if location else app_settings.AUTHORIZATION_URL)
    if named is None:
        by_location = [server for server in trusted_servers() if server.location == location]
        if not by_location:
            raise UntrustedAccountsServer(f"unknown data centre {location[:20]!r}")
        return by_location[0]
    server_origin = origin(named)
    parts = urlsplit(named.strip()) if server_origin else None
    if parts is None or parts.username is not None or parts.password is not None:
        raise UntrustedAccountsServer(f"{named[:100]!r} is not an accounts server")
    for server in trusted_servers():
        if hmac.compare_digest(server.url, server_origin or ""):
            if location and server.location and location != server.location:
                raise UntrustedAccountsServer(
                    f"location {location[:20]!r} is not the data centre of {server.url}"
                )
            return server
    raise UntrustedAccountsServer(f"{server_origin} is not one of Zoho's accounts servers")


def accounts_server_for_api_domain(api_domain: str | None) -> AccountsServer | None:
    """The trusted accounts server whose tokens carry ``api_domain`` (for revoking, and
    for the SDK's environment), if any."""
    # The one routing rule refreshes and revocations follow, so all three agree.
    url = accounts_server_for(api_domain)
    return next((server for server in trusted_servers() if server.url == url), None)


# --- the consent URL and its state ------------------------------------------------------------


def authorization_url(*, client_id: str, redirect_url: str, state: str) -> str:
    """Zoho's consent page, asking for a refresh token (offline, with consent every time)."""
    query = urlencode(
        {
            "scope": ",".join(app_settings.SCOPES),
            "client_id": client_id,
            "response_type": "code",
            "access_type": "offline",
            "prompt": "consent",
            "redirect_uri": redirect_url,
            "state": state,
        }
    )
    return f"{app_settings.AUTHORIZATION_URL}?{query}"


SESSION_KEY = "zoho_tokens_connect"
# Consents started and not finished (several tabs), and states already used.
MAX_PENDING = 5
MAX_USED = 10


class StateRefused(Exception):
    """The callback's ``state`` is not one this session is waiting for. ``reason`` is
    ``"missing"``, ``"unknown"``, ``"used"`` or ``"expired"``."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def start_consent(request: HttpRequest, next_url: str) -> str:
    """A new single-use ``state`` bound to this session and user, remembered with ``next_url``."""
    saved = _saved(request)
    now = time.time()
    pending = [entry for entry in saved["pending"] if now - entry["created"] < app_settings.CONNECT_STATE_TTL]
    state = secrets.token_urlsafe(32)
    pending.append({"state": state, "user": str(request.user.pk), "created": now, "next": next_url})
    saved["pending"] = pending[-MAX_PENDING:]
    request.session[SESSION_KEY] = saved
    return state


def finish_consent(request: HttpRequest, state: str | None) -> dict[str, Any]:
    """The consent ``state`` started in this session, forgotten from now on; else ``StateRefused``."""
    if not state:
        raise StateRefused("missing")
    saved = _saved(request)
    entry = next((e for e in saved["pending"] if hmac.compare_digest(e["state"], state)), None)
    if entry is None:
        used = any(hmac.compare_digest(old, state) for old in saved["used"])
        raise StateRefused("used" if used else "unknown")
    saved["pending"].remove(entry)
    saved["used"] = [*saved["used"], state][-MAX_USED:]
    request.session[SESSION_KEY] = saved
    if entry["user"] != str(request.user.pk):
        raise StateRefused("unknown")
    if time.time() - entry["created"] >= app_settings.CONNECT_STATE_TTL:
        raise StateRefused("expired")
    return entry


def _saved(request: HttpRequest) -> dict[str, list[Any]]:
    saved = request.session.get(SESSION_KEY) or {}
    return {"pending": list(saved.get("pending", [])), "used": list(saved.get("used", []))}
