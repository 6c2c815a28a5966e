"""Keeping the table healthy: rotating keys (purging is :mod:`.purge`)."""

from __future__ import annotations

from django.db import router, transaction

from ..models import SECRET_FIELDS, ZohoToken


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
