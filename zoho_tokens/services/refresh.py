"""The store's own refresh: when a token needs one, and doing it once across every worker.

The SDK refreshes only when less than 5 s remain, and every worker does it on its
own; refreshing a little earlier, once, under a row lock spares them all. Whether a
token needs a refresh is decided in one place, :func:`refresh_due`.
"""

from __future__ import annotations

import logging
from datetime import datetime, timedelta

from django.db import OperationalError, transaction
from django.utils import timezone

from .. import zoho
from ..conf import app_settings
from ..db import lock_row
from ..models import REFRESH_STATE_FIELDS, TokenState, ZohoToken
from ..sdk import store_error
from ..signals import reauthorization_needed, token_refreshed

logger = logging.getLogger("zoho_tokens.refresh")


def refresh_due(token: TokenState, now: datetime | None = None) -> bool:
    """Whether the store should refresh ``token`` now: the one refresh policy.

    Yes when the store refreshes at all, the access token expires within
    ``ZOHO_TOKENS_REFRESH_MARGIN``, the token holds what a refresh needs, and no
    earlier attempt asked to wait (re-authorisation, rate-limit back-off).
    """
    if not app_settings.REFRESH or token.needs_reauthorization_at is not None:
        return False
    if token.refresh_retry_at is not None and token.refresh_retry_at > (now or timezone.now()):
        return False
    if not token.expires_within(app_settings.REFRESH_MARGIN):
        return False
    return bool(token.refresh_token and token.client_id and token.client_secret)


def refresh_or_refuse(found: TokenState | None, *, using: str, new_consent: bool) -> TokenState | None:
    """``found`` as the SDK may use it: refreshed first when due, or refused with a reason.

    ``new_consent`` means the SDK holds a new grant token: a token needing
    re-authorisation is then not found, so that the SDK exchanges the grant.
    """
    if found is None:
        return None
    now = timezone.now()
    if refresh_due(found, now):
        token_url = zoho.token_endpoint(found.api_domain)
        if token_url is not None:
            try:
                current = refresh_if_due(found.pk, using=using, token_url=token_url)
            except (zoho.ZohoUnreachable, OperationalError) as exc:
                # The token in hand is still good for the SDK to try; nothing was changed.
                logger.warning("Could not refresh token %s, keeping the current one: %s", found.token_id, exc)
            else:
                if current is None:
                    return None  # deleted or revoked meanwhile
                found = current
    if found.needs_reauthorization_at is not None:
        if new_consent:
            return None
        raise store_error(
            f"Token {found.token_id} needs re-authorisation: Zoho rejected its refresh token "
            f"({found.refresh_error}). Send the user through Zoho's consent screen again."
        )
    retry_at = found.refresh_retry_at
    if retry_at is not None and retry_at > now and found.expires_within(0):
        raise store_error(
            f"Zoho rate-limited the refresh of token {found.token_id}; "
            f"the store retries after {retry_at.isoformat(timespec='seconds')}."
        )
    return found


def refresh_if_due(pk: int, *, using: str, token_url: str) -> ZohoToken | None:
    """Lock the row, and refresh it at Zoho if it is still due; returns the current row.

    A worker that waited for another's refresh finds the new token under the lock and
    makes no request. Zoho's answer is applied in the same transaction, writing only
    what changed; a network error raises ``zoho.ZohoUnreachable`` and changes nothing.
    ``None`` when the row was deleted meanwhile.
    """
    with transaction.atomic(using=using):
        row = lock_row(ZohoToken.objects.using(using).active(), pk, app_settings.LOCK_TIMEOUT)
        if row is None or not refresh_due(row):
            return row
        assert row.refresh_token and row.client_id and row.client_secret  # refresh_due checked them
        answer = zoho.refresh_access_token(
            token_url,
            refresh_token=row.refresh_token,
            client_id=row.client_id,
            client_secret=row.client_secret,
            timeout=app_settings.REFRESH_TIMEOUT,
        )
        changed = apply_refresh_answer(row, answer)
        row.save(using=using, update_fields=[*changed, "updated_at"])
        _log(row, answer)
        transaction.on_commit(lambda: _signal(row, answer), using=using)
    return row


def apply_refresh_answer(row: ZohoToken, answer: zoho.RefreshAnswer) -> list[str]:
    """Set Zoho's answer on the row (not saved); returns the names of the fields set."""
    now = timezone.now()
    if answer.outcome is zoho.Outcome.REFRESHED:
        row.access_token = answer.access_token
        row.expiry_time = answer.expiry_time
        row.last_refreshed_at = now
        row.clear_refresh_state()
        changed = ["access_token", "expiry_time", "last_refreshed_at", *REFRESH_STATE_FIELDS]
        if answer.api_domain:
            row.api_domain = answer.api_domain
            changed.append("api_domain")
        return changed
    row.refresh_error = answer.error
    if answer.outcome is zoho.Outcome.REJECTED:
        row.needs_reauthorization_at = now
        return ["needs_reauthorization_at", "refresh_error"]
    if answer.outcome is zoho.Outcome.RATE_LIMITED:
        row.refresh_retry_at = now + timedelta(seconds=app_settings.RATE_LIMIT_BACKOFF)
        return ["refresh_retry_at", "refresh_error"]
    return ["refresh_error"]


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
