"""Operations on stored tokens shared by the store, the admin and the management commands."""

from __future__ import annotations

import logging
from datetime import timedelta

from django.db import transaction
from django.db.models import QuerySet
from django.utils import timezone

from . import zoho
from .conf import app_settings
from .locking import lock_row
from .models import ZohoToken
from .signals import reauthorization_needed, token_refreshed

logger = logging.getLogger("zoho_tokens.refresh")


def revoke_locally(tokens: QuerySet[ZohoToken]) -> int:
    """Mark the tokens revoked so the SDK no longer finds them; returns how many changed.

    The rows stay (for the audit trail) until purged. A new authorisation of the
    same user (a new refresh token) brings the row back to life.
    """
    return tokens.filter(revoked_at__isnull=True).update(revoked_at=timezone.now())


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
