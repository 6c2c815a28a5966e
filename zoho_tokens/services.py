"""Operations on stored tokens shared by the store, the admin and the management commands."""

from __future__ import annotations

import logging
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from django.db import router, transaction
from django.db.models import QuerySet
from django.utils import timezone

from . import zoho
from .conf import app_settings
from .endpoints import token_endpoint
from .locking import lock_row
from .models import ZohoToken
from .signals import reauthorization_needed, token_refreshed

logger = logging.getLogger("zoho_tokens.refresh")


def refresh_due(row: ZohoToken, margin: float) -> bool:
    """Whether ``row`` should be refreshed now: close to expiry and refreshable."""
    if row.is_revoked or row.needs_reauthorization or not row.expires_within(margin):
        return False
    if row.refresh_retry_at is not None and row.refresh_retry_at > timezone.now():
        return False
    return bool(row.refresh_token and row.client_id and row.client_secret)


def refresh_if_due(pk: int, *, using: str, token_url: str, margin: float) -> ZohoToken | None:
    """Refresh one token at most once across every worker sharing the database.

    The row is locked and re-read first: a worker that waited for another's refresh
    finds the new token and makes no request. Zoho's answer is applied in the same
    transaction; a network error raises ``zoho.ZohoUnreachable`` and changes nothing.
    Returns the current row (``None`` if it was deleted meanwhile).
    """
    with transaction.atomic(using=using):
        row = lock_row(using, pk, app_settings.LOCK_TIMEOUT)
        if row is None or not refresh_due(row, margin):
            return row
        assert row.refresh_token and row.client_id and row.client_secret  # refresh_due checked them
        answer = zoho.refresh_access_token(
            token_url,
            refresh_token=row.refresh_token,
            client_id=row.client_id,
            client_secret=row.client_secret,
            timeout=app_settings.REFRESH_TIMEOUT,
        )
        apply_refresh_answer(row, answer)
        row.save(using=using)
        _log(row, answer)
        transaction.on_commit(lambda: _signal(row, answer), using=using)
    return row


def apply_refresh_answer(row: ZohoToken, answer: zoho.RefreshAnswer) -> None:
    now = timezone.now()
    if answer.outcome is zoho.Outcome.REFRESHED:
        row.access_token = answer.access_token
        row.expiry_time = answer.expiry_time
        if answer.api_domain:
            row.api_domain = answer.api_domain
        row.last_refreshed_at = now
        row.clear_refresh_state()
    elif answer.outcome is zoho.Outcome.REJECTED:
        row.needs_reauthorization_at = now
        row.refresh_error = answer.error
    elif answer.outcome is zoho.Outcome.RATE_LIMITED:
        row.refresh_retry_at = now + timedelta(seconds=app_settings.RATE_LIMIT_BACKOFF)
        row.refresh_error = answer.error
    else:
        row.refresh_error = answer.error


def _log(row: ZohoToken, answer: zoho.RefreshAnswer) -> None:
    if answer.outcome is zoho.Outcome.REFRESHED:
        logger.info("Refreshed the access token of token %s", row.token_id)
    elif answer.outcome is zoho.Outcome.REJECTED:
        logger.warning(
            "Zoho rejected the refresh token of token %s (%s): the user must authorise again",
            row.token_id,
            answer.error,
        )
    elif answer.outcome is zoho.Outcome.RATE_LIMITED:
        logger.warning(
            "Zoho rate-limited the refresh of token %s; no refresh before %s",
            row.token_id,
            row.refresh_retry_at,
        )
    else:
        logger.error("Zoho refused to refresh token %s: %s", row.token_id, answer.error)


def _signal(row: ZohoToken, answer: zoho.RefreshAnswer) -> None:
    if answer.outcome is zoho.Outcome.REFRESHED:
        token_refreshed.send(sender=ZohoToken, token=row)
    elif answer.outcome is zoho.Outcome.REJECTED:
        reauthorization_needed.send(sender=ZohoToken, token=row, error=answer.error)


@dataclass
class RevocationReport:
    revoked: list[ZohoToken] = field(default_factory=list)
    failed: list[tuple[ZohoToken, str]] = field(default_factory=list)  # reasons carry no secret
    already_revoked: list[ZohoToken] = field(default_factory=list)


def revoke(tokens: Iterable[ZohoToken], *, at_zoho: bool = True) -> RevocationReport:
    """Revoke each token at Zoho (unless ``at_zoho=False``), then locally.

    A token Zoho could not revoke stays active, so the action can be retried: the
    refresh token is still needed for that. Rows already revoked are left as they are.
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
        row.revoked_at = timezone.now()
        row.save(update_fields=["revoked_at", "updated_at"])
        report.revoked.append(row)
    return report


def _revoke_at_zoho(row: ZohoToken) -> str | None:
    """``None`` when Zoho no longer honours the token, else why it may still work."""
    if not row.refresh_token:
        return None  # nothing Zoho could still honour
    token_url = token_endpoint(row)
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


@dataclass(frozen=True)
class PurgeReport:
    revoked: int
    needing_reauthorization: int

    @property
    def total(self) -> int:
        return self.revoked + self.needing_reauthorization


def purgeable(
    *, revoked_before: datetime | None, reauthorization_before: datetime | None, using: str | None = None
) -> tuple[QuerySet[ZohoToken], QuerySet[ZohoToken]]:
    """Rows revoked before the first cutoff, and rows left un-re-authorised since before
    the second (``None`` leaves that kind alone)."""
    rows = ZohoToken.objects.using(using)
    revoked = rows.none() if revoked_before is None else rows.filter(revoked_at__lt=revoked_before)
    stale = (
        rows.none()
        if reauthorization_before is None
        else rows.filter(revoked_at__isnull=True, needs_reauthorization_at__lt=reauthorization_before)
    )
    return revoked, stale


def purge(
    *,
    revoked_before: datetime | None,
    reauthorization_before: datetime | None,
    dry_run: bool = False,
    using: str | None = None,
) -> PurgeReport:
    """Delete (or with ``dry_run`` only count) the rows :func:`purgeable` selects, in one transaction."""
    alias = using or router.db_for_write(ZohoToken)
    with transaction.atomic(using=alias):
        revoked, stale = purgeable(
            revoked_before=revoked_before, reauthorization_before=reauthorization_before, using=alias
        )
        if dry_run:
            return PurgeReport(revoked.count(), stale.count())
        return PurgeReport(revoked.delete()[0], stale.delete()[0])


ENCRYPTED_AND_DIGESTED = ("client_secret", "refresh_token", "access_token", "grant_token")


def rotate_keys(*, batch_size: int = 500, using: str | None = None) -> int:
    """Re-encrypt every row's secrets with the first encryption key and re-digest them
    with the first HMAC key; returns how many rows were rewritten.

    Run it after putting a new key first in ``ZOHO_TOKENS_ENCRYPTION_KEYS`` or
    ``ZOHO_TOKENS_HMAC_KEYS``; then the old keys can be removed. Each batch is its own
    transaction, so a large table is never locked as a whole.
    """
    alias = using or router.db_for_write(ZohoToken)
    rows = ZohoToken.objects.using(alias)
    rewritten = 0
    last_pk = 0
    while True:
        with transaction.atomic(using=alias):
            batch = list(rows.select_for_update().filter(pk__gt=last_pk).order_by("pk")[:batch_size])
            if not batch:
                return rewritten
            # Decrypted with any key on load; bulk_update encrypts with the first
            # key and recomputes the digests (DigestSyncQuerySet).
            rows.bulk_update(batch, ENCRYPTED_AND_DIGESTED)
        rewritten += len(batch)
        last_pk = batch[-1].pk
