"""How the SDK's ``OAuthToken`` maps onto stored tokens: matching and copying.

Matching is written once, over a :class:`Finder`: the ORM's (:class:`RowFinder`, for
writes, which need model instances to lock and save) and the hot path's
(``reads.ValueFinder``, for lookups).
"""

from __future__ import annotations

from typing import Any, Protocol

from zohocrmsdk.src.com.zoho.api.authenticator.oauth_token import OAuthToken
from zohocrmsdk.src.com.zoho.crm.api.exception import SDKException
from zohocrmsdk.src.com.zoho.crm.api.user_signature import UserSignature

from .models import ZohoToken, ZohoTokenQuerySet

TOKEN_STORE = "TOKEN_STORE"


def user_name_of(token: OAuthToken) -> str | None:
    signature = token.get_user_signature()
    name = signature.get_name() if signature is not None else None
    return name or None


class Finder(Protocol):
    def one(self, field: str, value: str) -> Any:
        """The stored token whose ``field`` (user_name, token_id, or a secret) equals ``value``."""

    def for_email(self, email: str) -> list[Any]:
        """Stored tokens saved as ``"email:zgid"`` for this exact email."""


class RowFinder:
    """Finds ``ZohoToken`` instances through the ORM."""

    def __init__(self, rows: ZohoTokenQuerySet) -> None:
        self.rows = rows

    def one(self, field: str, value: str) -> ZohoToken | None:
        if field == "user_name":
            return self.rows.for_user_name(value).first()
        return self.rows.filter(**{field: value}).first()

    def for_email(self, email: str) -> list[ZohoToken]:
        return self.rows.for_email(email)


def match_row(finder: Finder, token: OAuthToken) -> Any:
    """The stored token the SDK means by ``token``, in the SDK's own precedence.

    User name (no fallthrough) -> access token alone -> grant token, then refresh
    token -> id.
    """
    name = user_name_of(token)
    if name is not None:
        return match_user_name(finder, name)
    access_token = token.get_access_token()
    if access_token and token.get_client_id() is None and token.get_client_secret() is None:
        return finder.one("access_token", access_token)
    grant_token, refresh_token = token.get_grant_token(), token.get_refresh_token()
    if grant_token or refresh_token:
        for field, value in (("grant_token", grant_token), ("refresh_token", refresh_token)):
            if value:
                found = finder.one(field, value)
                if found is not None:
                    return found
        return None
    if token.get_id() is not None:
        return finder.one("token_id", str(token.get_id()))
    return None


def match_user_name(finder: Finder, name: str) -> Any:
    found = finder.one("user_name", name)
    if found is not None or ":" in name:
        return found
    # Zoho's docs have users write UserSignature("alice@example.com"), while the
    # SDK saves "alice@example.com:<zgid>": accept the email when it is unambiguous.
    rows_for_email = finder.for_email(name)
    if len(rows_for_email) > 1:
        orgs = ", ".join(sorted(row.user_name or "" for row in rows_for_email))
        raise SDKException(
            TOKEN_STORE,
            f"User {name!r} has tokens in {len(rows_for_email)} Zoho organisations ({orgs}); "
            'name one as UserSignature("email:zgid").',
        )
    return rows_for_email[0] if rows_for_email else None


def fill_token(token: OAuthToken, row: Any) -> None:
    """Copy the row into the token's empty (None) attributes only."""
    if token.get_id() is None:
        token.set_id(row.token_id)
    if token.get_user_signature() is None and row.user_name:
        token.set_user_signature(UserSignature(row.user_name))
    if token.get_expires_in() is None and row.expiry_time is not None:
        token.set_expires_in(str(row.expiry_time))
    for attribute in ("client_id", "client_secret", "refresh_token", "access_token", "grant_token"):
        if getattr(token, f"get_{attribute}")() is None:
            getattr(token, f"set_{attribute}")(getattr(row, attribute))
    if token.get_redirect_url() is None:
        token.set_redirect_url(row.redirect_url)
    if token.get_api_domain() is None:
        token.set_api_domain(row.api_domain)


def token_from_row(row: Any) -> OAuthToken:
    # The real constructor sets every private attribute the SDK reads later
    # (object.__new__ would leave out __find_user and break its save path).
    token = OAuthToken(
        client_id=row.client_id,
        client_secret=row.client_secret,
        grant_token=row.grant_token,
        refresh_token=row.refresh_token,
        redirect_url=row.redirect_url,
        id=row.token_id,
        access_token=row.access_token,
        user_signature=UserSignature(row.user_name) if row.user_name else None,
        api_domain=row.api_domain,
    )
    if row.expiry_time is not None:
        token.set_expires_in(str(row.expiry_time))
    return token
