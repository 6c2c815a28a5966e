"""Every setting of the app, with its default, read live from ``django.conf.settings``.

Nothing is cached here, so ``override_settings`` and pytest-django's ``settings``
fixture take effect at once.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, cast

from django.conf import settings as django_settings
from django.utils.functional import empty

ENCRYPTION_KEYS_SETTING = "ZOHO_TOKENS_ENCRYPTION_KEYS"
HMAC_KEYS_SETTING = "ZOHO_TOKENS_HMAC_KEYS"


class Settings:
    """Typed accessors over the ``ZOHO_TOKENS_*`` settings."""

    def _get(self, name: str, default: Any) -> Any:
        # The lazy ``django.conf.settings`` answers a name that is not set by raising
        # inside Python code, which showed in profiles of the lookup every SDK call
        # makes. The object it wraps answers the same, faster, and is still read live:
        # override_settings swaps that object.
        wrapped = cast(Any, django_settings)._wrapped
        if wrapped is empty:
            return getattr(django_settings, name, default)
        return getattr(wrapped, name, default)

    @property
    def ENCRYPTION_KEYS(self) -> Sequence[str]:
        """Fernet keys: the first encrypts, every one decrypts (rotation)."""
        return self._get(ENCRYPTION_KEYS_SETTING, ())

    @property
    def HMAC_KEYS(self) -> Sequence[str]:
        """Keys for the lookup digests: the first writes, every one is tried on lookup."""
        return self._get(HMAC_KEYS_SETTING, ())

    @property
    def DATABASE(self) -> str | None:
        """Database alias the store uses; ``None`` lets Django's routers decide."""
        return self._get("ZOHO_TOKENS_DATABASE", None)

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
        """Seconds to wait for Zoho's answer to a refresh."""
        return float(self._get("ZOHO_TOKENS_REFRESH_TIMEOUT", 10))

    @property
    def LOCK_TIMEOUT(self) -> float:
        """Seconds a worker waits for another worker's refresh before using the token it has."""
        return float(self._get("ZOHO_TOKENS_LOCK_TIMEOUT", 15))

    @property
    def RATE_LIMIT_BACKOFF(self) -> float:
        """Seconds every worker waits before refreshing again after Zoho's "too many requests"."""
        return float(self._get("ZOHO_TOKENS_RATE_LIMIT_BACKOFF", 60))


app_settings = Settings()
