"""What the store, the admin and the management commands do to stored tokens, each once.

* :mod:`.refresh`: the one refresh policy and the coordinated refresh;
* :mod:`.save`: the SDK's ``save_token``;
* :mod:`.revocation`: revoke at Zoho, then locally;
* :mod:`.maintenance`: purge and key rotation;
* :mod:`.keys`: whether the configured keys fit the stored tokens.
"""

from .keys import DigestCheck, check_stored_digests, refuse_foreign_digests
from .maintenance import PurgeReport, purge, purgeable, rotate_keys
from .refresh import backoff_seconds, refresh_due, refresh_once, refresh_or_refuse
from .revocation import RevocationReport, revoke
from .save import save_token

__all__ = [
    "DigestCheck",
    "PurgeReport",
    "RevocationReport",
    "backoff_seconds",
    "check_stored_digests",
    "purge",
    "purgeable",
    "refresh_due",
    "refresh_once",
    "refresh_or_refuse",
    "refuse_foreign_digests",
    "revoke",
    "rotate_keys",
    "save_token",
]
