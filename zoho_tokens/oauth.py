"""The OAuth web flow's protocol: Zoho's data centres, which accounts servers a code may
be exchanged at, the consent URL, and the ``state`` that ties a callback to the
session that asked for it.

Consent starts at ``accounts.zoho.com`` (``accounts.zoho.com.cn`` in China), but the
user's account may live in another data centre: Zoho names it in the callback's
``location`` and ``accounts-server`` parameters, and the code is good only there. Those
parameters come through the user's browser, so they are checked against a fixed list
before anything is sent: the client secret goes to Zoho's own accounts servers, and to
the ones ``ZOHO_TOKENS_TRUSTED_ACCOUNTS_SERVERS`` names (test servers), never anywhere else.
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

TOKEN_PATH = "/oauth/v2/token"


# --- Zoho's data centres ---------------------------------------------------------------
#
# To be served by datacentres.py once it lands (issue #13): DataCentre, DATA_CENTRES and
# origin() below are then imported from there, and nothing else in this module changes.


@dataclass(frozen=True)
class DataCentre:
    """One of Zoho's data centres: its code (the callback's ``location``), accounts server
    and production API domain."""

    code: str
    name: str
    accounts_server: str  # scheme and host, no slash
    api_suffix: str  # "zohoapis.eu"

    @property
    def api_domain(self) -> str:
        return f"https://www.{self.api_suffix}"

    @property
    def token_endpoint(self) -> str:
        return self.accounts_server + TOKEN_PATH


DATA_CENTRES: tuple[DataCentre, ...] = (
    DataCentre("us", "United States", "https://accounts.zoho.com", "zohoapis.com"),
    DataCentre("eu", "Europe", "https://accounts.zoho.eu", "zohoapis.eu"),
    DataCentre("in", "India", "https://accounts.zoho.in", "zohoapis.in"),
    DataCentre("au", "Australia", "https://accounts.zoho.com.au", "zohoapis.com.au"),
    DataCentre("jp", "Japan", "https://accounts.zoho.jp", "zohoapis.jp"),
    DataCentre("cn", "China", "https://accounts.zoho.com.cn", "zohoapis.com.cn"),
    DataCentre("ca", "Canada", "https://accounts.zohocloud.ca", "zohoapis.ca"),
    DataCentre("sa", "Saudi Arabia", "https://accounts.zoho.sa", "zohoapis.sa"),
    # Not in the SDK (7.0), which cannot refresh these tokens on its own.
    DataCentre("uk", "United Kingdom", "https://accounts.zoho.uk", "zohoapis.uk"),
)


def origin(url: str | None) -> str | None:
    """``"scheme://host[:port]"`` of ``url``, lower case, without path or slash; ``None`` if it has none."""
    if not url:
        return None
    try:
        parts = urlsplit(url.strip())
    except ValueError:
        return None
    if not parts.scheme or not parts.netloc:
        return None
    return f"{parts.scheme}://{parts.netloc}".lower()


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
    """Zoho's accounts server of every data centre, then ``ZOHO_TOKENS_TRUSTED_ACCOUNTS_SERVERS``."""
    servers = [AccountsServer(c.accounts_server, c.api_domain, c.code, c.name) for c in DATA_CENTRES]
    for url, api_domain in app_settings.TRUSTED_ACCOUNTS_SERVERS.items():
        server, domain = origin(url), origin(api_domain)
        if server and domain:
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
    domain = origin(api_domain)
    if domain is None:
        return None
    for server in trusted_servers():
        if domain == server.api_domain or domain in _sibling_api_domains(server):
            return server
    return None


def _sibling_api_domains(server: AccountsServer) -> tuple[str, ...]:
    """A data centre's sandbox and developer API domains beside its production one."""
    if not server.location:
        return ()
    suffix = server.api_domain.removeprefix("https://www.")
    return (f"https://sandbox.{suffix}", f"https://developer.{suffix}")


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
