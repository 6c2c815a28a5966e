"""The store's own refresh: when a token needs one, and doing it once across every worker.

The SDK refreshes only when less than 5 s remain, and every worker does it on its own,
with no deadline; Zoho allows about ten refreshes per refresh token per ten minutes.
So the store refreshes a little earlier, once:

1. a worker claims the refresh with one conditional ``UPDATE`` (who, and until when),
   which commits at once: no transaction or lock is held while Zoho is asked;
2. it calls Zoho within ``ZOHO_TOKENS_REFRESH_TIMEOUT`` seconds in all;
3. it applies the answer with a second ``UPDATE``, only while it still holds its claim.

A worker that finds a live claim does not call Zoho: it uses the current token while
the SDK would not refresh it itself, else polls until the winner is done. A claim
left by a killed worker expires, and the next worker proceeds. After any failure
every worker backs off (growing, with jitter, capped). Whether a token needs a refresh
is decided in one place, :func:`refresh_due`.
"""

from __future__ import annotations

import logging
import os
import random
import secrets
import socket
import time
from datetime import datetime, timedelta
from typing import Any

from django.db import transaction
from django.db.models import Q
from django.utils import timezone
from django.views.decorators.debug import sensitive_variables

from .. import zoho
from ..conf import app_settings
from ..fields import sealed_for_row
from ..finder import StoredValues, ValueFinder
from ..models import TokenState, ZohoToken
from ..sdk import store_error
from ..signals import reauthorization_needed, refresh_finished, token_refreshed

logger = logging.getLogger("zoho_tokens.refresh")

# The SDK refreshes a token by itself, uncoordinated, when less than 5 s remain: the
# store never hands it one that close to expiry when it could not refresh it.
SDK_REFRESH_SECONDS = 6.0
# A claim outlives the call to Zoho by this much, for applying the answer.
CLAIM_SLACK_SECONDS = 2.0
POLL_FIRST, POLL_LONGEST = 0.05, 0.5
_WORKER = f"{socket.gethostname()[:60]}:{os.getpid()}"


def refresh_due(token: TokenState, now: datetime | None = None, *, margin: float | None = None) -> bool:
    """Whether the store should refresh ``token`` now: the one refresh policy.

    Yes when the store refreshes at all, the access token expires within ``margin``
    seconds (``ZOHO_TOKENS_REFRESH_MARGIN``; a proactive refresh looks further ahead),
    the token holds what a refresh needs, and no earlier attempt asked to wait
    (re-authorisation, back-off after a failure).
    """
    if not app_settings.REFRESH or token.needs_reauthorization_at is not None:
        return False
    if token.refresh_retry_at is not None and token.refresh_retry_at > (now or timezone.now()):
        return False
    if not token.expires_within(app_settings.REFRESH_MARGIN if margin is None else margin):
        return False
    return bool(token.refresh_token and token.client_id and token.client_secret)


def backoff_seconds(failures: int) -> float:
    """How long every worker leaves a token alone after its ``failures``-th failure in a row."""
    grown = app_settings.REFRESH_BACKOFF * 2 ** max(0, failures - 1)
    # Jitter only lengthens, so the first back-off is never shorter than configured.
    return min(app_settings.REFRESH_BACKOFF_MAX, grown * random.uniform(1.0, 1.25))


def refresh_or_refuse(found: StoredValues | None, *, using: str, new_consent: bool) -> StoredValues | None:
    """``found`` as the SDK may use it: refreshed first when due, or refused with a reason.

    ``new_consent`` means the SDK holds a new grant token: a token needing
    re-authorisation is then not found, so that the SDK exchanges the grant.
    """
    if found is None:
        return None
    token_url = zoho.token_endpoint(found.api_domain) if refresh_due(found) else None
    if token_url is not None:
        found = refresh_once(found, using=using, token_url=token_url)
        if found is None:
            return None  # deleted or revoked meanwhile
    if found.needs_reauthorization_at is not None:
        if new_consent:
            return None
        raise store_error(
            f"Token {found.token_id} needs re-authorisation: Zoho rejected its refresh token "
            f"({found.refresh_error}). Send the user through Zoho's consent screen again."
        )
    # Without a known token endpoint the store cannot refresh, and the SDK may.
    if _sdk_would_refresh(found) and zoho.token_endpoint(found.api_domain) is not None:
        raise store_error(_why_not_refreshed(found))
    return found


def _sdk_would_refresh(token: TokenState) -> bool:
    """An expired (or nearly) token the store was meant to refresh but could not."""
    return bool(
        app_settings.REFRESH
        and token.refresh_token
        and token.client_id
        and token.client_secret
        and token.expires_within(SDK_REFRESH_SECONDS)
    )


def _why_not_refreshed(token: TokenState) -> str:
    retry_at = token.refresh_retry_at
    if retry_at is not None and retry_at > timezone.now():
        return (
            f"The access token of token {token.token_id} has expired and Zoho could not refresh it "
            f"({token.refresh_error or 'no reason given'}); the store retries after "
            f"{retry_at.isoformat(timespec='seconds')}."
        )
    return (
        f"The access token of token {token.token_id} has expired and another worker's refresh "
        "did not finish in time; try again shortly."
    )


def refresh_once(
    found: StoredValues, *, using: str, token_url: str, margin: float | None = None
) -> StoredValues | None:
    """Refresh ``found`` at Zoho at most once across every worker; returns the current token.

    Claims the refresh, or waits (bounded by the claim's deadline) for the worker that
    holds the claim, using the current token meanwhile while the SDK would not refresh
    it. ``None`` when the row was deleted or revoked meanwhile.
    """
    current: StoredValues | None = found
    give_up = time.monotonic() + app_settings.REFRESH_TIMEOUT + CLAIM_SLACK_SECONDS
    pause = POLL_FIRST
    while current is not None and refresh_due(current, margin=margin):
        # A live claim seen in the row just read: no claim to attempt, only to wait, if at all.
        if not _claimed_elsewhere(current):
            claim = claim_refresh(current, using=using, margin=margin)
            if claim is not None:
                return refresh_with_claim(current, claim, using=using, token_url=token_url)
        elif not current.expires_within(SDK_REFRESH_SECONDS):
            break  # the token in hand still serves
        current = ValueFinder(using).one("token_id", current.token_id)
        if current is None or not refresh_due(current, margin=margin):
            break  # refreshed by the winner, backing off, or gone
        if not current.expires_within(SDK_REFRESH_SECONDS) or time.monotonic() >= give_up:
            break  # the token in hand still serves; or the refusal says why
        time.sleep(pause)  # the winner is still waiting for Zoho
        pause = min(pause * 1.5, POLL_LONGEST)
    return current


def _claimed_elsewhere(token: StoredValues) -> bool:
    claimed_until = token.refresh_claimed_until
    return claimed_until is not None and claimed_until > timezone.now()


def claim_refresh(token: TokenState, *, using: str, margin: float | None = None) -> str | None:
    """Claim the refresh of ``token`` with one conditional UPDATE; the claim, or ``None``
    when another worker holds one, or the row no longer needs a refresh."""
    now = timezone.now()
    claim = f"{_WORKER}:{secrets.token_hex(4)}"
    ahead = app_settings.REFRESH_MARGIN if margin is None else margin
    due_before_ms = int(now.timestamp() * 1000 + ahead * 1000)
    claimed = (
        ZohoToken.objects.using(using)
        .filter(
            Q(refresh_retry_at__isnull=True) | Q(refresh_retry_at__lte=now),
            Q(refresh_claimed_until__isnull=True) | Q(refresh_claimed_until__lte=now),
            Q(expiry_time__isnull=True)
            | Q(expiry_time__lt=due_before_ms)
            | Q(access_token_digest__isnull=True),
            pk=token.pk,
            refresh_token=token.refresh_token,  # the one this worker will send
            revoked_at__isnull=True,
            needs_reauthorization_at__isnull=True,
        )
        .update(
            refresh_claimed_by=claim,
            refresh_claimed_until=now + timedelta(seconds=app_settings.REFRESH_TIMEOUT + CLAIM_SLACK_SECONDS),
        )
    )
    return claim if claimed else None


@sensitive_variables("token", "answer", "changes")
def refresh_with_claim(token: StoredValues, claim: str, *, using: str, token_url: str) -> StoredValues | None:
    """Call Zoho for the claimed ``token`` (no transaction open), then apply the answer
    while the claim holds; returns the current token."""
    assert token.refresh_token and token.client_id and token.client_secret  # refresh_due checked them
    answer = zoho.refresh_access_token(
        token_url,
        refresh_token=token.refresh_token,
        client_id=token.client_id,
        client_secret=token.client_secret,
        deadline=app_settings.REFRESH_TIMEOUT,
    )
    changes = refresh_answer_changes(token, answer)
    held = ZohoToken.objects.using(using).filter(pk=token.pk, refresh_claimed_by=claim)
    sealed = sealed_for_row(ZohoToken, token.token_id, changes)  # the new access token, for this row
    applied = bool(held.update(**sealed, refresh_claimed_by="", refresh_claimed_until=None))
    _log(token, answer, applied)
    # Immediately, or when the caller's own transaction commits.
    transaction.on_commit(lambda: _signal(token.token_id, answer, applied, using), using=using)
    if not applied:
        return ValueFinder(using).one("token_id", token.token_id)
    known = {name: value for name, value in changes.items() if name in StoredValues._fields}
    return token._replace(**known, refresh_claimed_until=None)


def refresh_answer_changes(token: TokenState, answer: zoho.RefreshAnswer) -> dict[str, Any]:
    """What Zoho's answer changes on the row: only those columns are written."""
    now = timezone.now()
    changes: dict[str, Any] = {"updated_at": now}
    if answer.outcome is zoho.Outcome.REFRESHED:
        changes.update(
            access_token=answer.access_token,
            expiry_time=answer.expiry_time,
            last_refreshed_at=now,
            needs_reauthorization_at=None,
            refresh_error="",
            refresh_retry_at=None,
            refresh_failures=0,
        )
        if answer.api_domain and answer.api_domain != token.api_domain:
            changes["api_domain"] = answer.api_domain
    elif answer.outcome is zoho.Outcome.REJECTED:
        changes.update(needs_reauthorization_at=now, refresh_error=answer.error)
    else:
        # Only the claim holder writes the count, so the one read with the claim is current.
        failures = token.refresh_failures + 1
        wait = backoff_seconds(failures)
        if answer.outcome is zoho.Outcome.RATE_LIMITED:
            wait = max(wait, app_settings.RATE_LIMIT_BACKOFF)
        changes.update(
            refresh_error=answer.error,
            refresh_retry_at=now + timedelta(seconds=wait),
            refresh_failures=failures,
        )
    return changes


def _log(token: TokenState, answer: zoho.RefreshAnswer, applied: bool) -> None:
    if not applied:
        logger.warning(
            "The refresh claim on token %s expired before Zoho answered (%s); the answer was dropped",
            token.token_id,
            answer.outcome.value,
        )
    elif answer.outcome is zoho.Outcome.REFRESHED:
        logger.info("Refreshed the access token of token %s", token.token_id)
    elif answer.outcome is zoho.Outcome.REJECTED:
        logger.warning(
            "Zoho rejected the refresh token of token %s (%s): the user must authorise again",
            token.token_id,
            answer.error,
        )
    else:
        # Nonsense or an unknown error points at the configuration; the rest passes.
        level = logging.ERROR if answer.outcome is zoho.Outcome.FAILED else logging.WARNING
        logger.log(
            level,
            "Could not refresh token %s (%s: %s); every worker backs off",
            token.token_id,
            answer.outcome.value,
            answer.error,
        )


def _signal(token_id: str, answer: zoho.RefreshAnswer, applied: bool, using: str) -> None:
    signals = [refresh_finished]
    if applied and answer.outcome is zoho.Outcome.REFRESHED:
        signals.append(token_refreshed)
    elif applied and answer.outcome is zoho.Outcome.REJECTED:
        signals.append(reauthorization_needed)
    if not any(signal.has_listeners(ZohoToken) for signal in signals):
        return  # spare the read
    row = ZohoToken.objects.using(using).filter(token_id=token_id).first()
    if row is None:
        return
    refresh_finished.send(sender=ZohoToken, token=row, outcome=answer.outcome.value)
    if token_refreshed in signals:
        token_refreshed.send(sender=ZohoToken, token=row)
    if reauthorization_needed in signals:
        reauthorization_needed.send(sender=ZohoToken, token=row, error=answer.error)
