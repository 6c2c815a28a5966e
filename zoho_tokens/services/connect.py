"""Connecting a Zoho account: a grant token exchanged at its data centre, the Zoho user
named as the SDK names it, the token stored for its owner, and the refresh token it
replaces revoked.

Shared by the OAuth callback view and ``zoho_connect``. Nothing is stored unless every
step succeeds; a refresh token Zoho issued for a connection that then fails is revoked
at once, as is the one a reconnection replaces: Zoho keeps at most 20 refresh tokens
per user and client and silently deletes the oldest for the 21st.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from typing import Any

from django.db import DatabaseError, router, transaction
from django.views.decorators.debug import sensitive_variables
from zohocrmsdk.src.com.zoho.api.authenticator.oauth_token import OAuthToken
from zohocrmsdk.src.com.zoho.crm.api.exception import SDKException
from zohocrmsdk.src.com.zoho.crm.api.user_signature import UserSignature

from .. import crypto, oauth, zoho
from ..conf import app_settings
from ..models import ZohoToken
from ..signals import zoho_connected, zoho_reconnected
from .save import save_token

logger = logging.getLogger("zoho_tokens.connect")


@dataclass(frozen=True)
class Client:
    """The OAuth client a code was issued to, and the redirect URL it was issued for."""

    client_id: str
    client_secret: str = field(repr=False)
    redirect_url: str


class ConnectFailed(Exception):
    """Nothing was stored. ``reason`` says which step failed: ``"rejected"`` (Zoho refused
    the code), ``"unreachable"``, ``"unidentified"`` (Zoho CRM did not name the user),
    ``"taken"`` (another user owns that Zoho account here) or ``"failed"`` (the database);
    ``detail`` is Zoho's error code or the cause, never a secret."""

    def __init__(self, reason: str, detail: str = "") -> None:
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.reason = reason
        self.detail = detail


@dataclass(frozen=True)
class Connection:
    token: ZohoToken
    reconnected: bool  # the owner's row for this Zoho account existed already
    replaced_revoked: bool | None  # None: no other refresh token was replaced


@sensitive_variables("code", "client", "answer", "token")
def connect(
    *, code: str, server: oauth.AccountsServer, client: Client, owner: Any = None, using: str | None = None
) -> Connection:
    """Exchange ``code`` at ``server`` (a trusted one, see :mod:`zoho_tokens.oauth`), name the
    Zoho user, store the token owned by ``owner`` (a user, or ``None``) and revoke the
    refresh token it replaces. Raises :class:`ConnectFailed`."""
    alias = using or router.db_for_write(ZohoToken)
    deadline = app_settings.REFRESH_TIMEOUT
    try:
        answer = zoho.exchange_grant_token(
            server.token_endpoint,
            code=code,
            client_id=client.client_id,
            client_secret=client.client_secret,
            redirect_url=client.redirect_url,
            deadline=deadline,
        )
    except zoho.ZohoUnreachable as exc:
        raise ConnectFailed("unreachable", str(exc)) from None
    if answer.error or not answer.refresh_token or not answer.access_token:
        raise ConnectFailed("rejected", answer.error)
    try:
        user_name = identify(server.api_domain, answer.access_token, deadline=deadline)
        token = OAuthToken(
            client_id=client.client_id,
            client_secret=client.client_secret,
            refresh_token=answer.refresh_token,
            access_token=answer.access_token,
            redirect_url=client.redirect_url or None,
            user_signature=UserSignature(user_name),
            api_domain=server.api_domain,
        )
        token.set_expires_in(str(answer.expiry_time))
        row, replaced = _store(token, owner, alias)
    except ConnectFailed:
        # Nobody will ever use it: it must not count against the user's 20 at Zoho.
        revoke_quietly(server.token_endpoint, answer.refresh_token)
        raise
    replaced_revoked = None
    if replaced is not None and replaced.refresh_token and replaced.refresh_token != row.refresh_token:
        replaced_revoked = revoke_quietly(_token_endpoint(replaced.api_domain), replaced.refresh_token)
    connection = Connection(row, replaced is not None, replaced_revoked)
    transaction.on_commit(lambda: _signal(connection, owner), using=alias)
    return connection


@sensitive_variables("access_token", "headers")
def identify(api_domain: str, access_token: str, *, deadline: float) -> str:
    """The Zoho user of ``access_token`` named as the SDK names it, ``"email:zgid"``, from
    the CRM's current user and organisation, within ``deadline`` seconds in all."""
    headers = {"Authorization": f"Zoho-oauthtoken {access_token}"}
    ends = time.monotonic() + deadline
    try:
        _, users = zoho.get_json(
            f"{api_domain}/crm/v8/users?type=CurrentUser", headers=headers, deadline=deadline
        )
        _, org = zoho.get_json(
            f"{api_domain}/crm/v8/org", headers=headers, deadline=max(0.1, ends - time.monotonic())
        )
    except zoho.ZohoUnreachable as exc:
        raise ConnectFailed("unreachable", str(exc)) from None
    email = _first(users, "users").get("email")
    zgid = _first(org, "org").get("zgid")
    if not isinstance(email, str) or not email or not isinstance(zgid, str | int) or not str(zgid):
        error = users.get("code") or org.get("code") or "no user or organisation in the answer"
        raise ConnectFailed("unidentified", str(error)[:100])
    return f"{email}:{zgid}"


def _first(body: dict[str, Any], key: str) -> dict[str, Any]:
    items = body.get(key)
    first = items[0] if isinstance(items, list) and items else None
    return first if isinstance(first, dict) else {}


STORE_FAILURES = (DatabaseError, SDKException, crypto.DecryptionError)


def _store(token: OAuthToken, owner: Any, alias: str) -> tuple[ZohoToken, ZohoToken | None]:
    """Save ``token`` as the SDK's own save would, owned by ``owner``, in one transaction;
    returns the row and, for a reconnection, the row as it was."""
    user_name = str(token.get_user_signature().get_name())
    rows = ZohoToken.objects.using(alias)
    try:
        with transaction.atomic(using=alias):
            existing = rows.select_for_update().for_user_name(user_name).first()
            if existing is not None and owner is not None and existing.owner_id not in (None, owner.pk):
                raise ConnectFailed("taken", user_name.rpartition(":")[0])
            saved = save_token(token, using=alias)
            row = rows.get(token_id=token.get_id()) if saved is None else saved
            if owner is not None and row.owner_id != owner.pk:
                rows.filter(pk=row.pk).update(owner=owner)
                row.owner = owner
    except STORE_FAILURES as exc:
        logger.error("Could not store the token of %s: %s: %s", user_name, type(exc).__name__, exc)
        raise ConnectFailed("failed", type(exc).__name__) from None
    return row, existing


def _token_endpoint(api_domain: str | None) -> str | None:
    server = oauth.accounts_server_for_api_domain(api_domain)
    return server.token_endpoint if server is not None else zoho.token_endpoint(api_domain)


@sensitive_variables("refresh_token")
def revoke_quietly(token_url: str | None, refresh_token: str) -> bool:
    """Revoke ``refresh_token`` at Zoho; whether Zoho no longer honours it. Logs a failure, never raises."""
    if token_url is None:
        logger.warning("A replaced refresh token was not revoked: no Zoho token endpoint is known for it")
        return False
    try:
        answer = zoho.revoke_refresh_token(
            token_url, refresh_token=refresh_token, deadline=app_settings.REFRESH_TIMEOUT
        )
    except zoho.ZohoUnreachable as exc:
        logger.warning("A refresh token was not revoked at Zoho: %s", exc)
        return False
    if not answer.revoked:
        logger.warning("A refresh token was not revoked at Zoho: %s", answer.error)
    return answer.revoked


def _signal(connection: Connection, owner: Any) -> None:
    if connection.reconnected:
        zoho_reconnected.send(
            sender=ZohoToken, token=connection.token, user=owner, replaced_revoked=connection.replaced_revoked
        )
    else:
        zoho_connected.send(sender=ZohoToken, token=connection.token, user=owner)
