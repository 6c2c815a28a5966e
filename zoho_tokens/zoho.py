"""Zoho Accounts over HTTP: which server a token belongs to, refresh an access token,
revoke a refresh token.

Answers are classified rather than raised, so callers decide what each means for the
stored row. Nothing here logs a token.
"""

from __future__ import annotations

import enum
import time
from dataclasses import dataclass
from typing import Any

import requests

from . import datacentres

# Zoho answers a refresh token it no longer accepts with these errors: only a new
# consent from the user helps.
REJECTED_REFRESH_ERRORS = frozenset({"invalid_code", "invalid_token", "invalid_refresh_token"})


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
    RATE_LIMITED = "rate_limited"  # back off
    FAILED = "failed"  # any other error answer; the row stays as it was


@dataclass(frozen=True)
class RefreshAnswer:
    outcome: Outcome
    access_token: str | None = None
    expiry_time: int | None = None  # epoch milliseconds, as the SDK stores it
    api_domain: str | None = None
    error: str = ""


class ZohoUnreachable(Exception):
    """No usable answer: network error, timeout, or a body that is not JSON."""


def refresh_access_token(
    token_url: str, *, refresh_token: str, client_id: str, client_secret: str, timeout: float
) -> RefreshAnswer:
    """POST ``grant_type=refresh_token`` to Zoho's token endpoint and classify the answer."""
    body = _post(
        token_url,
        {
            "refresh_token": refresh_token,
            "client_id": client_id,
            "client_secret": client_secret,
            "grant_type": "refresh_token",
        },
        timeout,
    )
    if "access_token" in body:
        return RefreshAnswer(
            Outcome.REFRESHED,
            access_token=str(body["access_token"]),
            expiry_time=int(time.time() * 1000) + _lifetime_ms(body),
            api_domain=body.get("api_domain"),
        )
    error = str(body.get("error", "no access_token in the answer"))
    description = str(body.get("error_description", ""))
    if "too many requests" in description.lower() or error == "Access Denied":
        return RefreshAnswer(Outcome.RATE_LIMITED, error="rate_limited")
    if error in REJECTED_REFRESH_ERRORS:
        return RefreshAnswer(Outcome.REJECTED, error=error)
    return RefreshAnswer(Outcome.FAILED, error=error[:100])


@dataclass(frozen=True)
class RevokeAnswer:
    revoked: bool  # Zoho revoked it, or it was already dead there
    error: str = ""


def revoke_refresh_token(token_url: str, *, refresh_token: str, timeout: float) -> RevokeAnswer:
    """POST to ``<token endpoint>/revoke``.

    A token Zoho no longer knows counts as revoked: there is nothing left to revoke.
    """
    body = _post(token_url + "/revoke", {"token": refresh_token}, timeout)
    if body.get("status") == "success":
        return RevokeAnswer(True)
    error = str(body.get("error", body.get("status", "no status in the answer")))[:100]
    return RevokeAnswer(error in REJECTED_REFRESH_ERRORS, error)


def _lifetime_ms(body: dict[str, Any]) -> int:
    # The SDK's own reading (OAuthToken.get_token_expires_in): with "expires_in_sec"
    # present, "expires_in" is already in milliseconds.
    if "expires_in_sec" in body:
        return int(body["expires_in"])
    return int(body["expires_in"]) * 1000


def _post(url: str, data: dict[str, str], timeout: float) -> dict[str, Any]:
    try:
        response = requests.post(url, data=data, timeout=timeout, allow_redirects=False)
        body = response.json()
    except (requests.RequestException, ValueError) as exc:
        # The exception text names the URL and the cause, never the form data.
        raise ZohoUnreachable(f"{type(exc).__name__}: {exc}") from None
    if not isinstance(body, dict):
        raise ZohoUnreachable("Zoho answered with JSON that is not an object")
    return body
