"""Keeping the table healthy: purging tokens that can never be used again, rotating keys."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from django.db import router, transaction
from django.db.models import QuerySet

from ..models import SECRET_FIELDS, ZohoToken


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
            rows.bulk_update(batch, SECRET_FIELDS)
        rewritten += len(batch)
        last_pk = batch[-1].pk
