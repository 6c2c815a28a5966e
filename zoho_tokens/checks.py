"""System checks for the key settings, with stable ids and hints that say how to fix them."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any
from urllib.parse import urlsplit

from django.conf import settings
from django.core.checks import CheckMessage, Error, Tags, Warning, register
from django.db import router

from .conf import ENCRYPTION_KEYS_SETTING, HMAC_KEYS_SETTING, app_settings
from .crypto import MIN_HMAC_KEY_LENGTH, InvalidKeyError, decode_encryption_key

FERNET_HINT = (
    'Generate one with: python -c "from cryptography.fernet import Fernet; '
    'print(Fernet.generate_key().decode())"'
)
HMAC_HINT = 'Generate one with: python -c "import secrets; print(secrets.token_urlsafe(48))"'

E001 = "zoho_tokens.E001"  # encryption keys missing
E002 = "zoho_tokens.E002"  # encryption keys not a list
E003 = "zoho_tokens.E003"  # an encryption key malformed
E004 = "zoho_tokens.E004"  # HMAC keys missing
E005 = "zoho_tokens.E005"  # HMAC keys not a list
E006 = "zoho_tokens.E006"  # an HMAC key too short
E007 = "zoho_tokens.E007"  # one key used for both purposes
E008 = "zoho_tokens.E008"  # a key equal to SECRET_KEY
W001 = "zoho_tokens.W001"  # a key listed twice
W002 = "zoho_tokens.W002"  # SQLite without "transaction_mode": "IMMEDIATE"
# W003 is taken (issue #13).
W004 = "zoho_tokens.W004"  # an OAuth client id without its secret, or the other way round
W005 = "zoho_tokens.W005"  # a trusted accounts server the client secret would reach in clear

CHECK_IDS = (E001, E002, E003, E004, E005, E006, E007, E008, W001, W002, W004, W005)


def _as_text(key: Any) -> str:
    return key.decode() if isinstance(key, bytes) else str(key)


def _key_list(
    setting: str, value: Any, missing_id: str, type_id: str, hint: str
) -> list[CheckMessage] | None:
    if not value:
        return [Error(f"{setting} is not set: no token can be stored or read.", hint=hint, id=missing_id)]
    if isinstance(value, str | bytes) or not isinstance(value, Sequence):
        return [
            Error(
                f"{setting} must be a list of keys, not {type(value).__name__}.",
                hint=f'Write {setting} = ["<key>"] (newest first). {hint}',
                id=type_id,
            )
        ]
    return None


def _fernet_errors(keys: Sequence[Any]) -> list[CheckMessage]:
    errors: list[CheckMessage] = []
    for position, key in enumerate(keys, start=1):
        try:
            decode_encryption_key(key)
        except InvalidKeyError:
            errors.append(
                Error(
                    f"Key {position} of {ENCRYPTION_KEYS_SETTING} is not in the key format "
                    "of Fernet.generate_key() (32 url-safe base64-encoded bytes).",
                    hint=FERNET_HINT,
                    id=E003,
                )
            )
    return errors


def _hmac_errors(keys: Sequence[Any]) -> list[CheckMessage]:
    return [
        Error(
            f"Key {position} of {HMAC_KEYS_SETTING} is shorter than {MIN_HMAC_KEY_LENGTH} characters.",
            hint=HMAC_HINT,
            id=E006,
        )
        for position, key in enumerate(keys, start=1)
        if len(_as_text(key)) < MIN_HMAC_KEY_LENGTH
    ]


def _duplicates(setting: str, keys: Sequence[Any]) -> list[CheckMessage]:
    texts = [_as_text(key) for key in keys]
    if len(set(texts)) == len(texts):
        return []
    return [Warning(f"{setting} lists the same key more than once.", hint="Remove the repeats.", id=W001)]


@register(Tags.security)
def check_keys(app_configs: Any = None, **kwargs: Any) -> list[CheckMessage]:
    encryption_keys = app_settings.ENCRYPTION_KEYS
    hmac_keys = app_settings.HMAC_KEYS
    problems = _key_list(ENCRYPTION_KEYS_SETTING, encryption_keys, E001, E002, FERNET_HINT)
    errors = problems or _fernet_errors(encryption_keys) + _duplicates(
        ENCRYPTION_KEYS_SETTING, encryption_keys
    )
    hmac_problems = _key_list(HMAC_KEYS_SETTING, hmac_keys, E004, E005, HMAC_HINT)
    errors += hmac_problems or _hmac_errors(hmac_keys) + _duplicates(HMAC_KEYS_SETTING, hmac_keys)
    if problems or hmac_problems:
        return errors

    encryption_texts = {_as_text(key) for key in encryption_keys}
    hmac_texts = {_as_text(key) for key in hmac_keys}
    if encryption_texts & hmac_texts:
        errors.append(
            Error(
                f"The same key is in {ENCRYPTION_KEYS_SETTING} and {HMAC_KEYS_SETTING}.",
                hint=f"Each purpose needs its own key. {HMAC_HINT}",
                id=E007,
            )
        )
    secret_key = getattr(settings, "SECRET_KEY", None)
    if secret_key and secret_key in encryption_texts | hmac_texts:
        errors.append(
            Error(
                "SECRET_KEY is used as a token key.",
                hint="Token keys must be independent of SECRET_KEY (which signs sessions and is "
                "often shared). Generate separate keys.",
                id=E008,
            )
        )
    return errors


@register()
def check_sqlite_transaction_mode(app_configs: Any = None, **kwargs: Any) -> list[CheckMessage]:
    """Concurrent writers on SQLite need each transaction to take the write lock at BEGIN.

    A transaction that reads first and writes later cannot wait for the lock: SQLite
    answers "database is locked" at once, and a token save or refresh fails.
    """
    from .models import ZohoToken

    alias = app_settings.DATABASE or router.db_for_write(ZohoToken)
    database = settings.DATABASES.get(alias, {})
    if "sqlite" not in database.get("ENGINE", ""):
        return []
    mode = str(database.get("OPTIONS", {}).get("transaction_mode") or "").upper()
    if mode in ("IMMEDIATE", "EXCLUSIVE"):
        return []
    return [
        Warning(
            f'The database "{alias}" that stores Zoho tokens is SQLite without '
            '"transaction_mode": "IMMEDIATE": concurrent saves and refreshes will fail with '
            '"database is locked".',
            hint=f'Add "transaction_mode": "IMMEDIATE" to DATABASES["{alias}"]["OPTIONS"].',
            id=W002,
        )
    ]


@register(Tags.security)
def check_oauth_client(app_configs: Any = None, **kwargs: Any) -> list[CheckMessage]:
    """The connect views and ``zoho_connect`` need the client's id and secret together, and
    post the secret only over HTTPS, save to a server on this machine (a test server)."""
    problems: list[CheckMessage] = []
    if bool(app_settings.CLIENT_ID) != bool(app_settings.CLIENT_SECRET):
        missing = "ZOHO_TOKENS_CLIENT_SECRET" if app_settings.CLIENT_ID else "ZOHO_TOKENS_CLIENT_ID"
        problems.append(
            Warning(
                f"{missing} is not set: Zoho accounts cannot be connected.",
                hint="Set both, from the client in Zoho's API console (api-console.zoho.com).",
                id=W004,
            )
        )
    for server in app_settings.TRUSTED_ACCOUNTS_SERVERS:
        parts = urlsplit(str(server))
        if parts.scheme != "https" and parts.hostname not in ("127.0.0.1", "localhost", "::1"):
            problems.append(
                Warning(
                    f"ZOHO_TOKENS_TRUSTED_ACCOUNTS_SERVERS names {str(server)[:100]!r}: the client secret "
                    "and every code would reach it unencrypted.",
                    hint="Use https, or a server on this machine (tests only).",
                    id=W005,
                )
            )
    return problems
