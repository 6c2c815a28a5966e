"""Whether the configured keys fit the stored tokens.

With the right encryption keys but a wrong HMAC key, every lookup by a token misses and a
save stores the token a second time: a wrong key must not pass for "not found". The
stored rows carry the proof: their digests are recomputed from their decrypted values
under every configured HMAC key, and compared.
"""

from __future__ import annotations

from dataclasses import dataclass

from django.views.decorators.debug import sensitive_variables

from ..conf import HMAC_KEYS_SETTING
from ..crypto import DecryptionError
from ..fields import digest_fields
from ..models import ZohoToken
from ..sdk import store_error

# Rows the store compares before it takes a miss for "not found", or inserts.
STORE_SAMPLE = 3

FOREIGN_DIGESTS = (
    f"The stored tokens' lookup digests were computed with an HMAC key that is not in "
    f"{HMAC_KEYS_SETTING}: lookups by token would miss them, and a save would store a token "
    "a second time."
)
FOREIGN_DIGESTS_FIX = (
    "Run `manage.py zoho_rotate_keys`, which recomputes every digest with the first key (after "
    f"loading tokens from another environment, this is the fix), or put the key that wrote "
    f"them back in {HMAC_KEYS_SETTING}, after the current one."
)


@dataclass(frozen=True)
class DigestCheck:
    checked: int  # rows opened and compared
    foreign: int  # of those, rows with a digest no configured HMAC key computes
    unreadable: int  # rows that did not decrypt, so could not be compared


@sensitive_variables()
def check_stored_digests(using: str, *, newest: int, oldest: int = 0) -> DigestCheck:
    """Compare the digests of the ``newest`` and ``oldest`` rows with their values."""
    rows = ZohoToken.objects.using(using)
    sample = {row.pk: row for row in rows.order_by("-pk")[:newest]}
    if oldest:
        sample.update((row.pk, row) for row in rows.order_by("pk")[:oldest])
    keyed = [field for field in digest_fields(ZohoToken) if field.keyed]
    checked = foreign = unreadable = 0
    for row in sample.values():
        try:
            is_foreign = any(field.is_foreign(row) for field in keyed)
        except DecryptionError:
            unreadable += 1
            continue
        checked += 1
        foreign += is_foreign
    return DigestCheck(checked, foreign, unreadable)


def refuse_foreign_digests(using: str) -> None:
    """Raise the store's error when the newest rows were digested under an HMAC key that is
    not configured (one small read: for a miss or an insert, never for a hit)."""
    if check_stored_digests(using, newest=STORE_SAMPLE).foreign:
        raise store_error(f"{FOREIGN_DIGESTS} {FOREIGN_DIGESTS_FIX}")
