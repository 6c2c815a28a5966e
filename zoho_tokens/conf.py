"""Every setting of the app, with its type and default, read from ``django.conf.settings``.

Values are remembered after the first read, because every SDK call reads several
settings and the lazy settings object answers a name that is not set by raising and
catching ``AttributeError`` (about a fifth of a lookup on SQLite). The memory is
cleared on Django's ``setting_changed`` signal, which ``override_settings`` and
pytest-django's ``settings`` fixture send, so tests see their changes at once.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from typing import Any

from django.conf import settings as django_settings
from django.core.signals import setting_changed
from django.dispatch import receiver

PREFIX = "ZOHO_TOKENS_"
ENCRYPTION_KEYS_SETTING = "ZOHO_TOKENS_ENCRYPTION_KEYS"
HMAC_KEYS_SETTING = "ZOHO_TOKENS_HMAC_KEYS"

_MISSING = object()


class Settings:
    """Typed accessors over the ``ZOHO_TOKENS_*`` settings."""

    def __init__(self) -> None:
        self._values: dict[str, Any] = {}
        self._lock = threading.Lock()

    def _get(self, name: str, default: Any) -> Any:
        value = self._values.get(name, _MISSING)
        if value is _MISSING:
            value = getattr(django_settings, name, default)
            with self._lock:
                self._values[name] = value
        return value

    def forget(self) -> None:
        """Read every setting afresh on its next use."""
        with self._lock:
            self._values.clear()

    @property
    def ENCRYPTION_KEYS(self) -> Sequence[str]:
        """Encryption keys: the first encrypts, every one decrypts (rotation)."""
        return self._get(ENCRYPTION_KEYS_SETTING, ())

    @property
    def HMAC_KEYS(self) -> Sequence[str]:
        """Keys for the lookup digests: the first writes, every one is tried on lookup."""
        return self._get(HMAC_KEYS_SETTING, ())

    @property
    def rotating_keys(self) -> bool:
        """Whether an older key is still listed: every save then moves a row onto the first keys."""
        return len(self.ENCRYPTION_KEYS) > 1 or len(self.HMAC_KEYS) > 1

    @property
    def DATABASE(self) -> str | None:
        """Database alias the store uses; ``None`` lets Django's routers decide."""
        return self._get("ZOHO_TOKENS_DATABASE", None)

    @property
    def DJANGO_CURSOR(self) -> bool:
        """Run the store's lookups through Django's cursor wrapper instead of the driver's
        cursor, so that tools patching ``CursorWrapper`` (APM agents, error trackers) see them."""
        return bool(self._get("ZOHO_TOKENS_DJANGO_CURSOR", False))

    @property
    def SAVE_ATTEMPTS(self) -> int:
        """How often a write is tried when the database reports a transient lock error."""
        return int(self._get("ZOHO_TOKENS_SAVE_ATTEMPTS", 5))

    @property
    def TOKEN_URL(self) -> str | None:
        """Zoho's token endpoint for tokens whose API domain is neither one of Zoho's data
        centres nor in ``ACCOUNTS_SERVERS`` (or that have none)."""
        return self._get("ZOHO_TOKENS_TOKEN_URL", None)

    @property
    def ACCOUNTS_SERVERS(self) -> dict[str, str]:
        """API domain -> accounts server, for domains that are not Zoho's data centres
        (a test server) or that should go elsewhere. These servers, and Zoho's own, are the
        only places the client secret is ever sent: for refreshes, revocations, and the
        connect flow's code exchange."""
        return self._get("ZOHO_TOKENS_ACCOUNTS_SERVERS", {}) or {}

    @property
    def REFRESH(self) -> bool:
        """Whether the store refreshes tokens itself, once, under a row lock."""
        return bool(self._get("ZOHO_TOKENS_REFRESH", True))

    @property
    def REFRESH_MARGIN(self) -> float:
        """Seconds before expiry at which the store refreshes (the SDK waits until 5 s)."""
        return float(self._get("ZOHO_TOKENS_REFRESH_MARGIN", 60))

    @property
    def REFRESH_TIMEOUT(self) -> float:
        """Deadline in seconds for a whole call to Zoho Accounts: connect, send, every read."""
        return float(self._get("ZOHO_TOKENS_REFRESH_TIMEOUT", 10))

    @property
    def REFRESH_BACKOFF(self) -> float:
        """Seconds no worker refreshes a token after its first failed refresh; doubles with
        each further failure (plus up to a quarter of jitter), up to ``REFRESH_BACKOFF_MAX``."""
        return float(self._get("ZOHO_TOKENS_REFRESH_BACKOFF", 30))

    @property
    def REFRESH_BACKOFF_MAX(self) -> float:
        """The longest back-off after failed refreshes, in seconds."""
        return float(self._get("ZOHO_TOKENS_REFRESH_BACKOFF_MAX", 600))

    @property
    def RATE_LIMIT_BACKOFF(self) -> float:
        """Seconds every worker waits at least before refreshing again after Zoho's "too many requests"."""
        return float(self._get("ZOHO_TOKENS_RATE_LIMIT_BACKOFF", 60))

    @property
    def REVOKE_CONCURRENCY(self) -> int:
        """How many revocations at Zoho run at once (admin action, ``zoho_revoke_tokens``)."""
        return int(self._get("ZOHO_TOKENS_REVOKE_CONCURRENCY", 8))

    @property
    def REVOKE_DEADLINE(self) -> float:
        """Seconds a bulk revocation may take in all; rows Zoho did not answer for by then stay active."""
        return float(self._get("ZOHO_TOKENS_REVOKE_DEADLINE", 20))

    # --- connecting Zoho accounts (the OAuth views, zoho_connect) -------------------

    @property
    def CLIENT_ID(self) -> str | None:
        """The OAuth client's id, from Zoho's API console."""
        return self._get("ZOHO_TOKENS_CLIENT_ID", None) or None

    @property
    def CLIENT_SECRET(self) -> str | None:
        """The OAuth client's secret; only ever posted to a trusted accounts server."""
        return self._get("ZOHO_TOKENS_CLIENT_SECRET", None) or None

    @property
    def SCOPES(self) -> Sequence[str]:
        """The scopes the consent screen asks for. The SDK names a token after the CRM
        user and org, which needs ``ZohoCRM.users.READ`` and ``ZohoCRM.org.READ``."""
        return tuple(self._get("ZOHO_TOKENS_SCOPES", DEFAULT_SCOPES))

    @property
    def REDIRECT_URL(self) -> str | None:
        """The callback URL registered at Zoho; ``None`` builds it from the request."""
        return self._get("ZOHO_TOKENS_REDIRECT_URL", None) or None

    @property
    def AUTHORIZATION_URL(self) -> str:
        """Where consent starts: ``accounts.zoho.com`` for every data centre but China's."""
        return str(self._get("ZOHO_TOKENS_AUTHORIZATION_URL", DEFAULT_AUTHORIZATION_URL))

    @property
    def CONNECT_STATE_TTL(self) -> float:
        """Seconds a consent started by the connect view may take before its callback is refused."""
        return float(self._get("ZOHO_TOKENS_CONNECT_STATE_TTL", 600))

    @property
    def CONNECTED_URL(self) -> str:
        """Where the callback sends the user after connecting, when the connect link named no ``next``."""
        return str(self._get("ZOHO_TOKENS_CONNECTED_URL", "/"))

    @property
    def REVOKE_WITH_OWNER(self) -> bool:
        """Revoke a user's tokens, at Zoho and locally, when the user is deactivated or deleted."""
        return bool(self._get("ZOHO_TOKENS_REVOKE_WITH_OWNER", False))

    @property
    def SDK_RESOURCE_PATH(self) -> str | None:
        """The directory the SDK keeps its field metadata in (``use_zoho_as``); ``None``: a
        ``zoho_tokens_sdk`` directory in the system's temporary directory."""
        return self._get("ZOHO_TOKENS_SDK_RESOURCE_PATH", None) or None


DEFAULT_SCOPES = ("ZohoCRM.modules.ALL", "ZohoCRM.users.READ", "ZohoCRM.org.READ")
DEFAULT_AUTHORIZATION_URL = "https://accounts.zoho.com/oauth/v2/auth"

app_settings = Settings()


@receiver(setting_changed)
def _forget_settings(*, setting: str, **kwargs: Any) -> None:
    if setting.startswith(PREFIX) or setting == "DATABASES":
        app_settings.forget()
