"""How the stored tokens are doing, for people and for monitoring: counts per status,
the oldest unresolved refresh error, the next expiry. Nothing here returns a secret."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from django.db import router
from django.db.models import Count, Min, Q
from django.db.models.functions import Coalesce
from django.utils import timezone

from ..conf import app_settings
from ..datacentres import token_endpoint_for
from ..models import ZohoToken, ZohoTokenQuerySet


def token_alias(using: str | None = None) -> str:
    """The database alias the store uses (``ZOHO_TOKENS_DATABASE``, else the routers')."""
    return using or app_settings.DATABASE or router.db_for_write(ZohoToken)


def active_tokens(using: str | None = None) -> ZohoTokenQuerySet:
    """Tokens the store hands out and refreshes: not revoked, not waiting for re-authorisation."""
    return ZohoToken.objects.using(token_alias(using)).active().filter(needs_reauthorization_at__isnull=True)


def without_accounts_server(using: str | None = None) -> dict[str | None, int]:
    """Active tokens per API domain that maps to no accounts server (``None``: no domain).

    The store can neither refresh nor revoke them (see :mod:`zoho_tokens.datacentres`).
    """
    per_domain = active_tokens(using).order_by().values_list("api_domain").annotate(count=Count("pk"))
    unmapped = [(domain, count) for domain, count in per_domain if token_endpoint_for(domain) is None]
    return dict(sorted(unmapped, key=lambda item: (item[0] is not None, item[0] or "")))


@dataclass(frozen=True)
class RefreshError:
    """An unresolved refresh error: on which token, and since when the token has had no
    successful refresh (its last one, or its creation)."""

    token_id: str
    user_name: str | None
    error: str
    since: datetime


@dataclass(frozen=True)
class TokenStatus:
    active: int
    needing_reauthorization: int
    revoked: int
    expiring_soon: int  # active, the access token expires within ``expiring_within``
    last_refresh_failed: int  # active, ``refresh_error`` set
    backing_off: int  # active, no refresh before ``refresh_retry_at`` (Zoho's rate limit)
    without_accounts_server: int  # active, the API domain maps to no accounts server
    oldest_refresh_error: RefreshError | None
    next_expiry: datetime | None  # of an active access token, from now on
    expiring_within: timedelta

    @property
    def counts(self) -> dict[str, int]:
        return {name: getattr(self, name) for name in COUNTS}

    @property
    def healthy(self) -> bool:
        """No token needs a person: none waits for re-authorisation, none failed its last
        refresh, every active one has an accounts server."""
        return not (self.needing_reauthorization or self.last_refresh_failed or self.without_accounts_server)


COUNTS = (
    "active",
    "needing_reauthorization",
    "revoked",
    "expiring_soon",
    "last_refresh_failed",
    "backing_off",
    "without_accounts_server",
)


def token_status(*, expiring_within: timedelta, using: str | None = None) -> TokenStatus:
    """Counts in one aggregate query; the domains, and the oldest error, in one query each."""
    rows = ZohoToken.objects.using(token_alias(using))
    now = timezone.now()
    now_ms = int(now.timestamp() * 1000)
    active = Q(revoked_at__isnull=True, needs_reauthorization_at__isnull=True)
    upcoming = active & Q(expiry_time__gte=now_ms)
    counts = rows.order_by().aggregate(
        active=Count("pk", filter=active),
        needing_reauthorization=Count(
            "pk", filter=Q(revoked_at__isnull=True, needs_reauthorization_at__isnull=False)
        ),
        revoked=Count("pk", filter=Q(revoked_at__isnull=False)),
        expiring_soon=Count(
            "pk", filter=upcoming & Q(expiry_time__lt=now_ms + int(expiring_within.total_seconds() * 1000))
        ),
        last_refresh_failed=Count("pk", filter=active & ~Q(refresh_error="")),
        backing_off=Count("pk", filter=active & Q(refresh_retry_at__gt=now)),
        next_expiry=Min("expiry_time", filter=upcoming),
    )
    next_expiry = counts.pop("next_expiry")
    return TokenStatus(
        **counts,
        without_accounts_server=sum(without_accounts_server(using).values()),
        oldest_refresh_error=_oldest_refresh_error(rows),
        next_expiry=None if next_expiry is None else datetime.fromtimestamp(next_expiry / 1000, tz=UTC),
        expiring_within=expiring_within,
    )


def _oldest_refresh_error(rows: ZohoTokenQuerySet) -> RefreshError | None:
    since = Coalesce("last_refreshed_at", "created_at")
    found = (
        rows.active()
        .exclude(refresh_error="")
        .annotate(since=since)
        .order_by("since", "pk")
        .values_list("token_id", "user_name", "refresh_error", "since")
        .first()
    )
    return None if found is None else RefreshError(*found)
