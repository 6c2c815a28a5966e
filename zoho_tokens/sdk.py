"""The SDK's ``OAuthToken`` and a stored token: which row a token means, and copying between them.

Everything here follows how the SDK really calls a store (see the README, "Using it
with the SDK"): the match order of the SDK's own stores plus id-only tokens, filling
only a token's empty (``None``) values, and ``expires_in`` as a string of epoch
milliseconds. Matching is written once, over a :class:`Finder`, so that the fast
lookups and the locked save find the same row.
"""

from __future__ import annotations

from typing import Any, Protocol

from django.utils import timezone
from django.views.decorators.debug import sensitive_variables
from zohocrmsdk.src.com.zoho.api.authenticator.oauth_token import OAuthToken
from zohocrmsdk.src.com.zoho.crm.api.exception import SDKException
from zohocrmsdk.src.com.zoho.crm.api.user_signature import UserSignature

from .models import CREDENTIAL_FIELDS, SDK_FIELDS, ZohoToken

TOKEN_STORE = "TOKEN_STORE"


def store_error(message: str) -> SDKException:
    """The error the SDK expects from a store; ``message`` must carry no secret."""
    return SDKException(TOKEN_STORE, message)


def user_name_of(token: OAuthToken) -> str | None:
    signature = token.get_user_signature()
    name = signature.get_name() if signature is not None else None
    return name or None


def names_same_user(name: str, stored_name: str | None) -> bool:
    """``name`` is the stored name, or its email part (``"email"`` for ``"email:zgid"``)."""
    stored = stored_name or ""
    return name == stored or stored.startswith(f"{name}:")


def parse_expiry(expires_in: Any) -> int | None:
    """The token's ``expires_in`` (a string of epoch milliseconds) as a number."""
    if expires_in is None or expires_in == "":
        return None
    try:
        return int(expires_in)
    except (TypeError, ValueError):
        raise store_error("expires_in must be epoch milliseconds as a string of digits.") from None


# --- which stored token a token means -----------------------------------------------


class Finder(Protocol):
    def one(self, field: str, value: str) -> Any:
        """The stored token whose ``field`` (user_name, token_id, or a secret) equals ``value``."""

    def for_email(self, email: str) -> list[Any]:
        """Stored tokens saved as ``"email:zgid"`` for this exact email."""


def match(finder: Finder, token: OAuthToken) -> Any:
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


def matches_by_secret(token: OAuthToken) -> bool:
    """Whether :func:`match` looks ``token`` up through a secret's keyed digest."""
    if user_name_of(token) is not None:
        return False
    access_token = token.get_access_token()
    if access_token and token.get_client_id() is None and token.get_client_secret() is None:
        return True
    return bool(token.get_grant_token() or token.get_refresh_token())


def match_user_name(finder: Finder, name: str) -> Any:
    found = finder.one("user_name", name)
    if found is not None or ":" in name:
        return found
    # Zoho's docs have users write UserSignature("alice@example.com"), while the
    # SDK saves "alice@example.com:<zgid>": accept the email when it is unambiguous.
    rows_for_email = finder.for_email(name)
    if len(rows_for_email) > 1:
        orgs = ", ".join(sorted(row.user_name or "" for row in rows_for_email))
        raise store_error(
            f"User {name!r} has tokens in {len(rows_for_email)} Zoho organisations ({orgs}); "
            'name one as UserSignature("email:zgid").'
        )
    return rows_for_email[0] if rows_for_email else None


# --- stored token -> OAuthToken ------------------------------------------------------


def fill_token(token: OAuthToken, row: Any) -> None:
    """Copy the stored token into the token's empty (None) attributes only."""
    if token.get_id() is None:
        token.set_id(row.token_id)
    if token.get_user_signature() is None and row.user_name:
        token.set_user_signature(UserSignature(row.user_name))
    if token.get_expires_in() is None and row.expiry_time is not None:
        token.set_expires_in(str(row.expiry_time))
    for name in SDK_FIELDS:
        if getattr(token, f"get_{name}")() is None:
            getattr(token, f"set_{name}")(getattr(row, name))


def token_from_row(row: Any) -> OAuthToken:
    """A new, fully populated token for a stored one."""
    # The real constructor sets every private attribute the SDK reads later
    # (object.__new__ would leave out __find_user and break its save path).
    token = OAuthToken(
        id=row.token_id,
        user_signature=UserSignature(row.user_name) if row.user_name else None,
        **{name: getattr(row, name) for name in SDK_FIELDS},
    )
    if row.expiry_time is not None:
        token.set_expires_in(str(row.expiry_time))
    return token


# --- OAuthToken -> row -------------------------------------------------------------------


def new_row(token: OAuthToken) -> ZohoToken:
    """An unsaved row for a token no stored row matches, if it carries something to store."""
    has_secret = token.get_refresh_token() or token.get_grant_token() or token.get_access_token()
    if not has_secret and (token.get_id() is not None or user_name_of(token) is not None):
        raise store_error(
            "Exception in save_token - DjangoTokenStore : Given user authentication details not found."
        )
    row = ZohoToken()
    if token.get_id() is not None:
        row.token_id = str(token.get_id())
    return row


@sensitive_variables()
def copy_onto_row(token: OAuthToken, row: ZohoToken) -> None:
    """Copy the token's non-None values onto the row (not saved)."""
    if is_new_authorisation(token, row):
        row.clear_refresh_state()
    name = user_name_of(token)
    # Keep "email:zgid" when the token only says "email".
    if name is not None and not names_same_user(name, row.user_name):
        row.user_name = name
    for field in CREDENTIAL_FIELDS:
        value = getattr(token, f"get_{field}")()
        if value is not None:
            setattr(row, field, value)
    expiry = parse_expiry(token.get_expires_in())
    # A slower worker must not replace a newer access token with its older one.
    stale = expiry is not None and row.expiry_time is not None and expiry < row.expiry_time
    access_token = token.get_access_token()
    if access_token is not None and not stale:
        if access_token != row.access_token:
            row.last_refreshed_at = timezone.now()
            row.clear_refresh_state()  # the refresh token works
        row.access_token = access_token
        if expiry is not None:
            row.expiry_time = expiry


@sensitive_variables()
def is_new_authorisation(token: OAuthToken, row: ZohoToken) -> bool:
    """A refresh token other than the stored one: the user consented again."""
    refresh_token = token.get_refresh_token()
    return refresh_token is not None and refresh_token != row.refresh_token


def credentials_of(token: OAuthToken) -> list[str | None]:
    """The token's values of ``CREDENTIAL_FIELDS``, in that order (what the fingerprint covers)."""
    return [getattr(token, f"get_{field}")() for field in CREDENTIAL_FIELDS]
