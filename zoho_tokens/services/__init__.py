"""What the store, the admin and the management commands do to stored tokens, each once.

* :mod:`.refresh`: the one refresh policy and the coordinated refresh;
* :mod:`.save`: the SDK's ``save_token``;
* :mod:`.revocation`: revoke at Zoho, then locally;
* :mod:`.connect`: connect a Zoho account from a grant token (the OAuth views, ``zoho_connect``);
* :mod:`.maintenance`: purge and key rotation.
"""

from .connect import Client, ConnectFailed, Connection, connect
from .maintenance import PurgeReport, purge, purgeable, rotate_keys
from .refresh import backoff_seconds, refresh_due, refresh_once, refresh_or_refuse
from .revocation import RevocationReport, revoke
from .save import save_token

__all__ = [
    "Client",
    "ConnectFailed",
    "Connection",
    "PurgeReport",
    "RevocationReport",
    "backoff_seconds",
    "connect",
    "purge",
    "purgeable",
    "refresh_due",
    "refresh_once",
    "refresh_or_refuse",
    "revoke",
    "rotate_keys",
    "save_token",
]
