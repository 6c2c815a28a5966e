"""Deleting the tokens that can never be used again: in batches, one run at a time.

Four kinds of row, each selected through an index, none of them a token that can
still be refreshed:

* revoked before a cutoff (``revoked_at``: the audit trail is kept until then);
* waiting for re-authorisation since before a cutoff (Zoho rejected the refresh token);
* without a refresh token, whose access token expired before a cutoff;
* holding only a grant token, last written more than a day ago (grant codes live
  minutes: such a row is a login that never completed).

Each batch is one transaction that picks up to ``batch_size`` rows and deletes those
that still match, so a row that changed in between (a user re-authorised) stays.
Memory and lock time stay flat whatever the table's size, and a run that fails keeps
the batches it finished. A lease (``zoho_tokens.leases``) keeps two runs from working
at once.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from django.db import DatabaseError, transaction
from django.db.models import Q
from django.utils import timezone

from ..leases import LeaseLost, holding_lease
from ..models import ZohoToken, ZohoTokenQuerySet
from .status import token_alias

REVOKED = "revoked"
NEEDING_REAUTHORIZATION = "needing_reauthorization"
EXPIRED = "expired"  # no refresh token, access token expired before the cutoff
UNEXCHANGED_GRANT = "unexchanged_grant"
CATEGORIES = (REVOKED, NEEDING_REAUTHORIZATION, EXPIRED, UNEXCHANGED_GRANT)

GRANT_TOKEN_AGE = timedelta(days=1)
LEASE_NAME = "zoho_purge_tokens"
# Renewed after every batch, which takes well under a second: a run that died holds
# the job this long at most.
LEASE_SECONDS = 300


@dataclass(frozen=True)
class PurgeCutoffs:
    revoked_before: datetime
    reauthorization_before: datetime
    expired_before: datetime
    grant_written_before: datetime

    @classmethod
    def days_ago(
        cls,
        *,
        revoked_days: int = 30,
        reauthorization_days: int = 30,
        expired_days: int = 1,
        now: datetime | None = None,
    ) -> PurgeCutoffs:
        """The cutoffs ``zoho_purge_tokens`` uses; raises ``OverflowError`` for days beyond the calendar."""
        now = now or timezone.now()
        return cls(
            revoked_before=now - timedelta(days=revoked_days),
            reauthorization_before=now - timedelta(days=reauthorization_days),
            expired_before=now - timedelta(days=expired_days),
            grant_written_before=now - GRANT_TOKEN_AGE,
        )


def purge_criteria(cutoffs: PurgeCutoffs) -> dict[str, Q]:
    """The condition of each kind of row, in :data:`CATEGORIES` order; no row meets two."""
    unflagged = Q(revoked_at__isnull=True, needs_reauthorization_at__isnull=True)
    # The digest finds the rows through the index; the encrypted column confirms them.
    no_refresh_token = Q(refresh_token_digest__isnull=True, refresh_token__isnull=True)
    return {
        REVOKED: Q(revoked_at__lt=cutoffs.revoked_before),
        NEEDING_REAUTHORIZATION: Q(
            revoked_at__isnull=True, needs_reauthorization_at__lt=cutoffs.reauthorization_before
        ),
        EXPIRED: unflagged & no_refresh_token & Q(expiry_time__lt=_epoch_ms(cutoffs.expired_before)),
        UNEXCHANGED_GRANT: unflagged
        & no_refresh_token
        & Q(
            expiry_time__isnull=True,
            access_token_digest__isnull=True,
            access_token__isnull=True,
            grant_token_digest__isnull=False,
            updated_at__lt=cutoffs.grant_written_before,
        ),
    }


@dataclass
class PurgeReport:
    dry_run: bool = False
    counts: dict[str, int] = field(default_factory=lambda: dict.fromkeys(CATEGORIES, 0))
    batches: int = 0

    @property
    def total(self) -> int:
        return sum(self.counts.values())


class PurgeFailed(Exception):
    """The purge stopped (database error, lease lost); ``report`` counts what was deleted."""

    def __init__(self, report: PurgeReport, cause: Exception) -> None:
        self.report = report
        # One line: database errors often carry a DETAIL or LINE on lines of their own.
        super().__init__(" ".join(f"{type(cause).__name__}: {cause}".split()))


def purge(
    cutoffs: PurgeCutoffs,
    *,
    batch_size: int = 500,
    dry_run: bool = False,
    using: str | None = None,
    on_batch: Callable[[str, int], None] | None = None,
) -> PurgeReport:
    """Delete (with ``dry_run`` only count) the rows :func:`purge_criteria` selects.

    Raises ``leases.LeaseHeld`` at once when another run is purging (a dry run takes
    no lease: it writes nothing), and :class:`PurgeFailed` when a batch fails.
    ``on_batch(category, deleted)`` is called after each batch.
    """
    rows = ZohoToken.objects.using(token_alias(using))
    report = PurgeReport(dry_run=dry_run)
    if dry_run:
        for category, criterion in purge_criteria(cutoffs).items():
            report.counts[category] = rows.filter(criterion).count()
        return report
    try:
        with holding_lease(LEASE_NAME, using=rows.db, seconds=LEASE_SECONDS) as lease:
            for category, criterion in purge_criteria(cutoffs).items():
                picked = batch_size
                while picked == batch_size:
                    picked, deleted = delete_batch(rows, criterion, batch_size)
                    if not picked:
                        break
                    report.counts[category] += deleted
                    report.batches += 1
                    if on_batch is not None:
                        on_batch(category, deleted)
                    lease.renew()
    except (DatabaseError, LeaseLost) as exc:
        raise PurgeFailed(report, exc) from exc
    return report


def delete_batch(rows: ZohoTokenQuerySet, criterion: Q, batch_size: int) -> tuple[int, int]:
    """In one transaction, pick up to ``batch_size`` rows meeting ``criterion`` and delete
    those that still meet it; returns (picked, deleted)."""
    with transaction.atomic(using=rows.db):
        # No ORDER BY: the rows come straight off the criterion's index.
        pks = list(rows.filter(criterion).order_by().values_list("pk", flat=True)[:batch_size])
        if not pks:
            return 0, 0
        deleted, _ = rows.filter(criterion, pk__in=pks).delete()
    return len(pks), deleted


def _epoch_ms(moment: datetime) -> int:
    return int(moment.timestamp() * 1000)
