"""Zoho Accounts over HTTP: which server a token belongs to, refresh an access token,
revoke a refresh token, exchange a grant token.

Every call is bounded by a deadline for the whole exchange (connect, send, every read),
not a timeout per socket operation: a server that drips one byte at a time is cut off
when the deadline passes. Answers are classified rather than raised, so callers decide
what each means for the stored row. Nothing here logs or reports a secret.
"""

from __future__ import annotations

import contextlib
import enum
import http.client
import json
import socket
import threading
import time
import urllib.request
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlencode, urlsplit

from django.views.decorators.debug import sensitive_variables

from . import datacentres

# Zoho answers a refresh token it no longer accepts with these errors: only a new
# consent from the user helps.
REJECTED_REFRESH_ERRORS = frozenset({"invalid_code", "invalid_token", "invalid_refresh_token"})
# An access token lives an hour; anything beyond a day is not an answer to trust.
MAX_LIFETIME_MS = 24 * 3600 * 1000
# Zoho's answers are a few hundred bytes; a larger body is not read into memory.
MAX_ANSWER_BYTES = 64 * 1024


def token_endpoint(api_domain: str | None) -> str | None:
    """Zoho's token endpoint for a token of ``api_domain``: its data centre's (see
    :mod:`.datacentres`), else ``ZOHO_TOKENS_TOKEN_URL``, else ``None``.

    Never the environment the SDK was initialised with in this thread: that belongs
    to whichever user the thread served last, and may be another data centre's.
    """
    return datacentres.token_endpoint_for(api_domain)


class Outcome(enum.Enum):
    REFRESHED = "refreshed"
    REJECTED = "rejected"  # the refresh token is dead: re-authorise
    RATE_LIMITED = "rate_limited"  # Zoho's "too many requests": back off
    UNAVAILABLE = "unavailable"  # no answer in time, a network error, a 5xx: back off
    FAILED = "failed"  # any other error answer, or nonsense: back off


@dataclass(frozen=True)
class RefreshAnswer:
    outcome: Outcome
    access_token: str | None = field(default=None, repr=False)
    expiry_time: int | None = None  # epoch milliseconds, as the SDK stores it
    api_domain: str | None = None
    error: str = ""  # a short code or reason, never a secret


class ZohoUnreachable(Exception):
    """No usable answer in time: network error, deadline passed, a 5xx, a body that is not JSON."""


class ZohoTimedOut(ZohoUnreachable):
    """The deadline passed before Zoho's answer was complete."""


@sensitive_variables("refresh_token", "client_secret", "form", "body")
def refresh_access_token(
    token_url: str, *, refresh_token: str, client_id: str, client_secret: str, deadline: float
) -> RefreshAnswer:
    """POST ``grant_type=refresh_token`` to Zoho's token endpoint and classify the answer,
    all within ``deadline`` seconds."""
    form = {
        "refresh_token": refresh_token,
        "client_id": client_id,
        "client_secret": client_secret,
        "grant_type": "refresh_token",
    }
    try:
        status, body = post_form(token_url, form, deadline)
    except ZohoUnreachable as exc:
        return RefreshAnswer(Outcome.UNAVAILABLE, error=str(exc)[:100])
    if "access_token" in body:
        return _refreshed(body)
    error = str(body.get("error", f"HTTP {status} without an access_token"))
    description = str(body.get("error_description", ""))
    if "too many requests" in description.lower() or error == "Access Denied":
        return RefreshAnswer(Outcome.RATE_LIMITED, error="rate_limited")
    if error in REJECTED_REFRESH_ERRORS:
        return RefreshAnswer(Outcome.REJECTED, error=error)
    return RefreshAnswer(Outcome.FAILED, error=error[:100])


@sensitive_variables("body", "access_token")
def _refreshed(body: dict[str, Any]) -> RefreshAnswer:
    """A successful answer, checked field by field: nonsense is a failed refresh, never stored."""
    access_token = body.get("access_token")
    if not isinstance(access_token, str) or not access_token.strip():
        return RefreshAnswer(Outcome.FAILED, error="malformed answer: access_token is not a token")
    lifetime = _lifetime_ms(body)
    if lifetime is None:
        return RefreshAnswer(Outcome.FAILED, error="malformed answer: expires_in missing or invalid")
    api_domain = body.get("api_domain")
    if api_domain is not None and not (isinstance(api_domain, str) and api_domain.startswith("http")):
        return RefreshAnswer(Outcome.FAILED, error="malformed answer: api_domain is not a URL")
    return RefreshAnswer(
        Outcome.REFRESHED,
        access_token=access_token,
        expiry_time=int(time.time() * 1000) + lifetime,
        api_domain=api_domain,
    )


def _lifetime_ms(body: dict[str, Any]) -> int | None:
    """The access token's lifetime in milliseconds, read as the SDK reads it
    (``OAuthToken.get_token_expires_in``: with ``expires_in_sec`` present, ``expires_in``
    is already in milliseconds); ``None`` when missing or not a sane number."""
    raw = body.get("expires_in")
    if isinstance(raw, bool) or not isinstance(raw, int | str):
        return None
    try:
        value = int(raw)
    except ValueError:
        return None
    lifetime = value if "expires_in_sec" in body else value * 1000
    return lifetime if 0 < lifetime <= MAX_LIFETIME_MS else None


@dataclass(frozen=True)
class RevokeAnswer:
    revoked: bool  # Zoho revoked it, or it was already dead there
    error: str = ""


@sensitive_variables("refresh_token")
def revoke_refresh_token(token_url: str, *, refresh_token: str, deadline: float) -> RevokeAnswer:
    """POST to ``<token endpoint>/revoke`` within ``deadline`` seconds.

    A token Zoho no longer knows counts as revoked: there is nothing left to revoke.
    Raises ``ZohoUnreachable`` when no answer came in time.
    """
    _, body = post_form(token_url + "/revoke", {"token": refresh_token}, deadline)
    if body.get("status") == "success":
        return RevokeAnswer(True)
    error = str(body.get("error", body.get("status", "no status in the answer")))[:100]
    return RevokeAnswer(error in REJECTED_REFRESH_ERRORS, error)


@dataclass(frozen=True)
class GrantAnswer:
    """Zoho's answer to a grant token: the tokens, or ``error`` (Zoho's code, never a secret)."""

    refresh_token: str | None = field(default=None, repr=False)
    access_token: str | None = field(default=None, repr=False)
    expiry_time: int | None = None  # epoch milliseconds, as the SDK stores it
    api_domain: str | None = None
    error: str = ""


@sensitive_variables("code", "client_secret", "form", "body")
def exchange_grant_token(
    token_url: str, *, code: str, client_id: str, client_secret: str, redirect_url: str, deadline: float
) -> GrantAnswer:
    """POST ``grant_type=authorization_code`` within ``deadline`` seconds.

    An answer without both tokens is an error (``invalid_code`` for a code that is
    unknown, used or older than its few minutes). Raises ``ZohoUnreachable``.
    """
    form = {"grant_type": "authorization_code", "client_id": client_id, "client_secret": client_secret}
    if redirect_url:  # a self-client's grant token has none
        form["redirect_uri"] = redirect_url
    form["code"] = code
    status, body = post_form(token_url, form, deadline)
    refreshed = _refreshed(body) if "access_token" in body else None
    refresh_token = body.get("refresh_token")
    if refreshed is None or refreshed.outcome is not Outcome.REFRESHED:
        error = refreshed.error if refreshed else str(body.get("error", f"HTTP {status} without tokens"))
        return GrantAnswer(error=error[:100])
    if not isinstance(refresh_token, str) or not refresh_token.strip():
        return GrantAnswer(error="no refresh_token in the answer (was access_type=offline asked?)")
    return GrantAnswer(
        refresh_token=refresh_token,
        access_token=refreshed.access_token,
        expiry_time=refreshed.expiry_time,
        api_domain=refreshed.api_domain,
    )


# --- one HTTP exchange within a deadline ----------------------------------------------


@sensitive_variables("form", "payload")
def post_form(url: str, form: dict[str, str], deadline: float) -> tuple[int, dict[str, Any]]:
    """POST ``form`` and read the JSON object Zoho answers, all within ``deadline`` seconds.

    ``requests`` and urllib3 bound each socket operation, not the exchange, so this uses
    ``http.client`` with a watchdog that shuts the socket down when the deadline passes,
    which ends any read in progress. Proxies from the environment are honoured.
    Raises ``ZohoUnreachable`` (its message names the host and the cause, never the form).
    """
    payload = urlencode(form).encode("ascii")
    return _request("POST", url, payload, {"Content-Type": "application/x-www-form-urlencoded"}, deadline)


@sensitive_variables("headers")
def get_json(url: str, *, headers: dict[str, str], deadline: float) -> tuple[int, dict[str, Any]]:
    """GET ``url`` (a Zoho API) and read its JSON object, as :func:`post_form` does."""
    return _request("GET", url, None, headers, deadline)


@sensitive_variables("payload", "headers")
def _request(
    method: str, url: str, payload: bytes | None, headers: dict[str, str], deadline: float
) -> tuple[int, dict[str, Any]]:
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ZohoUnreachable(f"not an http(s) URL: {url[:100]!r}")
    # The socket's own timeout only backs the watchdog up: the watchdog ends the exchange.
    connection = _connection(parts.scheme, parts.hostname, parts.port, timeout=deadline + 1)
    path = parts.path or "/"
    if parts.query:
        path += f"?{parts.query}"
    if getattr(connection, "_zoho_tokens_absolute", False):
        path = url  # a plain-HTTP proxy wants the absolute URL
    watchdog = _Watchdog(connection, deadline)
    try:
        connection.connect()
        if watchdog.fired:  # during the connect, before there was a socket to shut down
            raise TimeoutError
        connection.request(method, path, body=payload, headers={**headers, "Accept": "application/json"})
        response = connection.getresponse()
        raw = response.read(MAX_ANSWER_BYTES + 1)
        status = response.status
    except (OSError, http.client.HTTPException) as exc:
        if watchdog.fired:
            raise ZohoTimedOut(f"{parts.hostname} gave no complete answer within {deadline:g} s") from None
        raise ZohoUnreachable(f"{parts.hostname}: {type(exc).__name__}: {exc}") from None
    finally:
        watchdog.cancel()
        connection.close()
    if watchdog.fired:
        raise ZohoTimedOut(f"{parts.hostname} gave no complete answer within {deadline:g} s")
    if status >= 500:
        raise ZohoUnreachable(f"{parts.hostname} answered HTTP {status}")
    if len(raw) > MAX_ANSWER_BYTES:
        raise ZohoUnreachable(f"{parts.hostname} answered more than {MAX_ANSWER_BYTES} bytes")
    try:
        body = json.loads(raw)
    except ValueError:
        raise ZohoUnreachable(f"{parts.hostname} answered HTTP {status} without JSON") from None
    if not isinstance(body, dict):
        raise ZohoUnreachable(f"{parts.hostname} answered JSON that is not an object")
    return status, body


def _connection(scheme: str, host: str, port: int | None, *, timeout: float) -> http.client.HTTPConnection:
    proxy = None if urllib.request.proxy_bypass(host) else urllib.request.getproxies().get(scheme)
    connection: http.client.HTTPConnection
    if proxy:
        proxy_parts = urlsplit(proxy if "://" in proxy else f"http://{proxy}")
        proxy_host, proxy_port = proxy_parts.hostname or "", proxy_parts.port
        if scheme == "https":
            connection = http.client.HTTPSConnection(proxy_host, proxy_port, timeout=timeout)
            connection.set_tunnel(host, port)
        else:
            connection = http.client.HTTPConnection(proxy_host, proxy_port, timeout=timeout)
            connection._zoho_tokens_absolute = True  # type: ignore[attr-defined]
    elif scheme == "https":
        connection = http.client.HTTPSConnection(host, port, timeout=timeout)
    else:
        connection = http.client.HTTPConnection(host, port, timeout=timeout)
    return connection


class _Watchdog:
    """Shuts the connection's socket down when the deadline passes."""

    def __init__(self, connection: http.client.HTTPConnection, deadline: float) -> None:
        self.fired = False
        self._connection = connection
        self._timer = threading.Timer(max(0.0, deadline), self._fire)
        self._timer.daemon = True
        self._timer.start()

    def _fire(self) -> None:
        self.fired = True
        sock = self._connection.sock
        if sock is not None:
            with contextlib.suppress(OSError):  # already closed
                sock.shutdown(socket.SHUT_RDWR)

    def cancel(self) -> None:
        self._timer.cancel()
