"""Refreshing ahead of time, from cron or a task queue, through the workers' own refresh.

Each token goes through ``refresh.refresh_once``, so a proactive run never races the
workers: whoever claims a refresh first makes the only call to Zoho. A token refreshed
less than ``MIN_INTERVAL`` ago is left alone whatever it is asked, so that a run
scheduled too often still keeps well inside Zoho's limit of about ten refreshes per
token per ten minutes. A dead refresh token shows up here as "rejected", before a user
meets it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import timedelta

from django.db.models import Q
from django.utils import timezone

from .. import zoho
from ..finder import ValueFinder
from ..models import ZohoToken
from .refresh import refresh_once

MIN_INTERVAL = timedelta(minutes=5)
OUTCOMES = ("refreshed", "rejected", "failed", "skipped")


@dataclass
class RefreshAheadReport:
    """Token ids by outcome; ``reasons`` holds each failure's short reason (never a secret)."""

    refreshed: list[str] = field(default_factory=list)
    rejected: list[str] = field(default_factory=list)
    failed: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    reasons: dict[str, str] = field(default_factory=dict)

    @property
    def needs_attention(self) -> bool:
        return bool(self.rejected or self.failed)


def due_ahead(within: float, *, using: str) -> list[str]:
    """Ids of the active tokens a refresh could renew whose access token expires within
    ``within`` seconds, soonest first (not refreshed in the last ``MIN_INTERVAL``, not
    backing off, not waiting for re-authorisation)."""
    now = timezone.now()
    horizon_ms = int((now.timestamp() + within) * 1000)
    rows = (
        ZohoToken.objects.using(using)
        .active()
        .filter(
            Q(expiry_time__lt=horizon_ms) | Q(expiry_time__isnull=True),
            Q(refresh_retry_at__isnull=True) | Q(refresh_retry_at__lte=now),
            Q(last_refreshed_at__isnull=True) | Q(last_refreshed_at__lt=now - MIN_INTERVAL),
            needs_reauthorization_at__isnull=True,
            refresh_token_digest__isnull=False,
        )
        .order_by("expiry_time", "pk")
    )
    return list(rows.values_list("token_id", flat=True))


def refresh_ahead(within: float, *, using: str) -> RefreshAheadReport:
    """Refresh every token :func:`due_ahead` finds, each at most once, coordinated with
    the workers; what happened to each."""
    report = RefreshAheadReport()
    finder = ValueFinder(using)
    for token_id in due_ahead(within, using=using):
        found = finder.one("token_id", token_id)
        token_url = zoho.token_endpoint(found.api_domain) if found is not None else None
        if found is None or token_url is None:
            report.skipped.append(token_id)
            continue
        current = refresh_once(found, using=using, token_url=token_url, margin=within)
        if current is None:
            report.skipped.append(token_id)
        elif current.needs_reauthorization_at is not None:
            report.rejected.append(token_id)
            report.reasons[token_id] = current.refresh_error
        elif current.access_token != found.access_token:
            report.refreshed.append(token_id)
        elif current.refresh_failures > found.refresh_failures:
            report.failed.append(token_id)
            report.reasons[token_id] = current.refresh_error
        else:
            report.skipped.append(token_id)  # another worker held the claim
    return report
