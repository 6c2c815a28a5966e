"""System checks for the key settings, with stable ids and hints that say how to fix them.

The keys are also checked against the stored tokens (``E009``, ``E010``), which needs the
database: like Django's own database checks, that runs with ``check --database <alias>``
and before ``migrate``, never on a plain ``check`` or ``runserver``.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any
from urllib.parse import urlsplit

from django.conf import settings
from django.core.checks import ERROR, CheckMessage, Error, Tags, Warning, register
from django.db import DatabaseError, connections, router, transaction
from django.utils.translation import ngettext

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
E009 = "zoho_tokens.E009"  # stored digests no configured HMAC key computes
E010 = "zoho_tokens.E010"  # stored tokens no configured encryption key opens
W001 = "zoho_tokens.W001"  # a key listed twice
W002 = "zoho_tokens.W002"  # SQLite without "transaction_mode": "IMMEDIATE"
W003 = "zoho_tokens.W003"  # tokens whose API domain maps to no accounts server
W004 = "zoho_tokens.W004"  # an OAuth client id without its secret, or the other way round
W005 = "zoho_tokens.W005"  # an accounts server the client secret would reach in clear
W006 = "zoho_tokens.W006"  # the store's database wraps every request in a transaction

# Every id above, read back rather than listed again (a new one cannot be left out).
CHECK_IDS = tuple(value for name, value in globals().items() if re.fullmatch(r"[EW]\d{3}", name))

# Rows compared with the keys at each end of the table (the oldest and the newest).
CHECKED_ROWS = 25


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


@register()
def check_atomic_requests(app_configs: Any = None, **kwargs: Any) -> list[CheckMessage]:
    """A refresh claims its token in a short transaction of its own, so that no lock or
    transaction is held while Zoho answers. Inside a request's transaction the claim is
    not committed: other workers wait on the row for as long as Zoho takes."""
    from .models import ZohoToken

    alias = app_settings.DATABASE or router.db_for_write(ZohoToken)
    if not settings.DATABASES.get(alias, {}).get("ATOMIC_REQUESTS"):
        return []
    return [
        Warning(
            f'The database "{alias}" that stores Zoho tokens has ATOMIC_REQUESTS: a refresh '
            "during a request holds the token's row locked until the request ends, Zoho's "
            "answer included, and other workers wait for it.",
            hint="Add an alias for the same database without ATOMIC_REQUESTS (and with "
            '"TEST": {"MIRROR": ...}), and name it in ZOHO_TOKENS_DATABASE.',
            id=W006,
        )
    ]


@register(Tags.database)
def check_accounts_servers(
    app_configs: Any = None, databases: Any = None, **kwargs: Any
) -> list[CheckMessage]:
    """Tokens whose API domain maps to no accounts server can be neither refreshed nor
    revoked. A database check: ``check --database ALIAS`` and ``migrate`` run it."""
    from .models import ZohoToken
    from .services.status import without_accounts_server

    messages: list[CheckMessage] = []
    for alias in databases or ():
        if not router.allow_migrate_model(alias, ZohoToken):
            continue
        if ZohoToken._meta.db_table not in connections[alias].introspection.table_names():
            continue  # not migrated yet
        unmapped = without_accounts_server(alias)
        if not unmapped:
            continue
        count = sum(unmapped.values())
        listed = ", ".join(f"{domain or 'no API domain'}: {n}" for domain, n in unmapped.items())
        messages.append(
            Warning(
                ngettext(
                    '%(count)d active Zoho token in database "%(alias)s" has an API domain that maps '
                    "to no accounts server (%(listed)s): the store can neither refresh nor revoke it.",
                    '%(count)d active Zoho tokens in database "%(alias)s" have an API domain that maps '
                    "to no accounts server (%(listed)s): the store can neither refresh nor revoke them.",
                    count,
                )
                % {"count": count, "alias": alias, "listed": listed},
                hint="Map each such domain to its accounts server in ZOHO_TOKENS_ACCOUNTS_SERVERS, e.g. "
                '{"https://crm.example.test": "https://accounts.example.test"}. Zoho\'s data centres '
                "(US, EU, IN, AU, JP, CN, CA, SA, UK) need no entry.",
                id=W003,
            )
        )
    return messages


@register(Tags.database, Tags.security)
def check_stored_tokens(
    app_configs: Any = None, databases: Sequence[str] | None = None, **kwargs: Any
) -> list[CheckMessage]:
    """The keys against the stored tokens: up to ``CHECKED_ROWS`` rows at each end of the
    table are decrypted and their digests recomputed under every configured HMAC key."""
    from . import services
    from .models import ZohoToken

    alias = app_settings.DATABASE or router.db_for_write(ZohoToken)
    if not databases or alias not in databases:
        return []
    if any(message.level >= ERROR for message in check_keys()):
        return []  # the keys themselves are reported
    try:
        with transaction.atomic(using=alias):
            result = services.check_stored_digests(alias, newest=CHECKED_ROWS, oldest=CHECKED_ROWS)
    except DatabaseError:
        return []  # not migrated yet: migrate runs the checks before it creates the table
    errors: list[CheckMessage] = []
    if result.foreign:
        errors.append(
            Error(
                f"{result.foreign} of {result.checked} stored tokens checked in the database "
                f'"{alias}": {services.keys.FOREIGN_DIGESTS}',
                hint=services.keys.FOREIGN_DIGESTS_FIX,
                id=E009,
            )
        )
    if result.unreadable:
        errors.append(
            Error(
                f"{result.unreadable} of {result.checked + result.unreadable} stored tokens checked "
                f'in the database "{alias}" do not decrypt: a key that wrote them is missing from '
                f"{ENCRYPTION_KEYS_SETTING}, or values were copied between rows or columns.",
                hint=f"Put the key they were written with back in {ENCRYPTION_KEYS_SETTING} (the first "
                "key encrypts, every key decrypts). The store names each row it cannot open.",
                id=E010,
            )
        )
    return errors


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
    for server in dict(app_settings.ACCOUNTS_SERVERS).values():
        parts = urlsplit(str(server))
        if parts.scheme != "https" and parts.hostname not in ("127.0.0.1", "localhost", "::1"):
            problems.append(
                Warning(
                    f"ZOHO_TOKENS_ACCOUNTS_SERVERS names {str(server)[:100]!r}: the client secret, "
                    "every refresh token and every code would reach it unencrypted.",
                    hint="Use https, or a server on this machine (tests only).",
                    id=W005,
                )
            )
    return problems
