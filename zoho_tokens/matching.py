"""How the SDK's ``OAuthToken`` maps onto ``ZohoToken`` rows: matching and copying."""

from __future__ import annotations

from zohocrmsdk.src.com.zoho.api.authenticator.oauth_token import OAuthToken
from zohocrmsdk.src.com.zoho.crm.api.exception import SDKException
from zohocrmsdk.src.com.zoho.crm.api.user_signature import UserSignature

from .models import ZohoToken, ZohoTokenQuerySet

TOKEN_STORE = "TOKEN_STORE"


def user_name_of(token: OAuthToken) -> str | None:
    signature = token.get_user_signature()
    name = signature.get_name() if signature is not None else None
    return name or None


def match_row(rows: ZohoTokenQuerySet, token: OAuthToken) -> ZohoToken | None:
    """The row the SDK means by ``token``, in the SDK's own precedence.

    User name (no fallthrough) -> access token alone -> grant token, then refresh
    token -> id.
    """
    name = user_name_of(token)
    if name is not None:
        return match_user_name(rows, name)
    access_token = token.get_access_token()
    if access_token and token.get_client_id() is None and token.get_client_secret() is None:
        return rows.filter(access_token=access_token).first()
    grant_token, refresh_token = token.get_grant_token(), token.get_refresh_token()
    if grant_token or refresh_token:
        for field, value in (("grant_token", grant_token), ("refresh_token", refresh_token)):
            if value:
                row = rows.filter(**{field: value}).first()
                if row is not None:
                    return row
        return None
    if token.get_id() is not None:
        return rows.filter(token_id=str(token.get_id())).first()
    return None


def match_user_name(rows: ZohoTokenQuerySet, name: str) -> ZohoToken | None:
    row = rows.for_user_name(name).first()
    if row is not None or ":" in name:
        return row
    # Zoho's docs have users write UserSignature("alice@example.com"), while the
    # SDK saves "alice@example.com:<zgid>": accept the email when it is unambiguous.
    rows_for_email = rows.for_email(name)
    if len(rows_for_email) > 1:
        orgs = ", ".join(sorted(row.user_name or "" for row in rows_for_email))
        raise SDKException(
            TOKEN_STORE,
            f"User {name!r} has tokens in {len(rows_for_email)} Zoho organisations ({orgs}); "
            'name one as UserSignature("email:zgid").',
        )
    return rows_for_email[0] if rows_for_email else None


def fill_token(token: OAuthToken, row: ZohoToken) -> None:
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


def token_from_row(row: ZohoToken) -> OAuthToken:
    # The real constructor sets every private attribute the SDK reads later
    # (object.__new__ would leave out __find_user and break its save path).
    token = OAuthToken(id=row.token_id)
    fill_token(token, row)
    return token
