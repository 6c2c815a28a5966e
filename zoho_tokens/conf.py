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
        """Zoho's token endpoint when neither the row's API domain nor the SDK tells
        (revocation from the admin or a command, outside any SDK call)."""
        return self._get("ZOHO_TOKENS_TOKEN_URL", None)

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


app_settings = Settings()


@receiver(setting_changed)
def _forget_settings(*, setting: str, **kwargs: Any) -> None:
    if setting.startswith(PREFIX) or setting == "DATABASES":
        app_settings.forget()
