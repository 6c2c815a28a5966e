"""What the store, the admin and the management commands do to stored tokens, each once.

* :mod:`.refresh`: the one refresh policy and the coordinated refresh;
* :mod:`.save`: the SDK's ``save_token``;
* :mod:`.revocation`: revoke at Zoho, then locally;
* :mod:`.connect`: connect a Zoho account from a grant token (the OAuth views, ``zoho_connect``);
* :mod:`.refresh_ahead`: refreshing ahead of time, for cron and task queues;
* :mod:`.purge`: deleting what can never be used again, in batches;
* :mod:`.maintenance`: key rotation;
* :mod:`.keys`: whether the configured keys fit the stored tokens;
* :mod:`.status`: counts and problems, for people and monitoring.
"""

from .connect import Client, ConnectFailed, Connection, connect
from .keys import DigestCheck, check_stored_digests, refuse_foreign_digests
from .maintenance import rotate_keys
from .purge import PurgeCutoffs, PurgeFailed, PurgeReport, purge
from .refresh import backoff_seconds, refresh_due, refresh_once, refresh_or_refuse
from .revocation import RevocationReport, revoke
from .save import save_token

__all__ = [
    "Client",
    "ConnectFailed",
    "Connection",
    "DigestCheck",
    "PurgeCutoffs",
    "PurgeFailed",
    "PurgeReport",
    "RevocationReport",
    "backoff_seconds",
    "check_stored_digests",
    "connect",
    "purge",
    "refresh_due",
    "refresh_once",
    "refresh_or_refuse",
    "refuse_foreign_digests",
    "revoke",
    "rotate_keys",
    "save_token",
]
