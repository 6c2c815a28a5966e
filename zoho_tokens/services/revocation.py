"""Revoking tokens: at Zoho (so the refresh token stops working), then locally."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from django.db import transaction
from django.utils import timezone

from .. import zoho
from ..conf import app_settings
from ..models import ZohoToken


@dataclass
class RevocationReport:
    revoked: list[ZohoToken] = field(default_factory=list)
    failed: list[tuple[ZohoToken, str]] = field(default_factory=list)  # reasons carry no secret
    already_revoked: list[ZohoToken] = field(default_factory=list)


def revoke(
    tokens: Iterable[ZohoToken],
    *,
    at_zoho: bool = True,
    on_revoked: Callable[[ZohoToken], object] | None = None,
) -> RevocationReport:
    """Revoke each token at Zoho (unless ``at_zoho=False``), then locally.

    A token Zoho could not revoke stays active, so the action can be retried: the
    refresh token is still needed for that. Rows already revoked are left as they are.
    ``on_revoked(row)`` runs in the transaction of that row's local revocation.
    """
    report = RevocationReport()
    for row in tokens:
        if row.is_revoked:
            report.already_revoked.append(row)
            continue
        reason = _revoke_at_zoho(row) if at_zoho else None
        if reason is not None:
            report.failed.append((row, reason))
            continue
        with transaction.atomic(using=row._state.db):
            row.revoked_at = timezone.now()
            row.save(update_fields=["revoked_at", "updated_at"])
            if on_revoked is not None:
                on_revoked(row)
        report.revoked.append(row)
    return report


def _revoke_at_zoho(row: ZohoToken) -> str | None:
    """``None`` when Zoho no longer honours the token, else why it may still work."""
    if not row.refresh_token:
        return None  # nothing Zoho could still honour
    token_url = zoho.token_endpoint(row.api_domain)
    if token_url is None:
        return "no Zoho token endpoint is known for it: set ZOHO_TOKENS_TOKEN_URL"
    try:
        answer = zoho.revoke_refresh_token(
            token_url, refresh_token=row.refresh_token, timeout=app_settings.REFRESH_TIMEOUT
        )
    except zoho.ZohoUnreachable as exc:
        return f"Zoho could not be reached ({exc})"
    if not answer.revoked:
        return f"Zoho refused ({answer.error})"
    return None
