"""Model fields that keep secrets encrypted at rest and still findable.

``EncryptedTextField`` stores AES-256-GCM ciphertext (see ``crypto``). Ciphertext is
randomised, so the database cannot compare it; an encrypted field that names a
``digest_field`` answers ``exact`` and ``in`` lookups through that sibling
``DigestField`` (a keyed HMAC of the plaintext), and refuses every other lookup with
``FieldError`` rather than silently matching nothing. ``CombinedDigestField`` digests
several fields at once, so that one comparison proves none of them changed.

Keys are read from settings at run time and never appear in ``deconstruct()``,
so they never reach a migration.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Sequence
from typing import Any

from django.core.exceptions import EmptyResultSet, FieldError, ImproperlyConfigured
from django.db import models
from django.db.models import Lookup

from . import crypto
from .conf import ENCRYPTION_KEYS_SETTING, HMAC_KEYS_SETTING, app_settings


def _key_list(setting: str, value: Any) -> Sequence[str | bytes]:
    if isinstance(value, str | bytes) or not isinstance(value, Sequence):
        raise ImproperlyConfigured(f"{setting} must be a list of keys, not {type(value).__name__}.")
    return value


def current_cipher() -> crypto.Cipher:
    try:
        keys = _key_list(ENCRYPTION_KEYS_SETTING, app_settings.ENCRYPTION_KEYS)
        return crypto.cipher_for(keys)
    except crypto.InvalidKeyError as exc:
        raise ImproperlyConfigured(f"{ENCRYPTION_KEYS_SETTING}: {exc}. Run `manage.py check`.") from None


def current_digester() -> crypto.Digester:
    try:
        return crypto.digester_for(_key_list(HMAC_KEYS_SETTING, app_settings.HMAC_KEYS))
    except crypto.InvalidKeyError as exc:
        raise ImproperlyConfigured(f"{HMAC_KEYS_SETTING}: {exc}. Run `manage.py check`.") from None


class EncryptedTextField(models.TextField):
    """Text encrypted with the first key of ``ZOHO_TOKENS_ENCRYPTION_KEYS``."""

    description = "Text encrypted with AES-256-GCM"

    def __init__(self, *args: Any, digest_field: str | None = None, **kwargs: Any) -> None:
        self.digest_field = digest_field
        super().__init__(*args, **kwargs)

    def deconstruct(self) -> Any:
        name, path, args, kwargs = super().deconstruct()
        if self.digest_field is not None:
            kwargs["digest_field"] = self.digest_field
        return name, path, args, kwargs

    def from_db_value(self, value: str | None, expression: Any, connection: Any) -> str | None:
        if value is None:
            return None
        return self.decrypt(current_cipher(), value)

    def decrypt(self, cipher: crypto.Cipher, value: str) -> str:
        """``value`` decrypted with ``cipher``; an error that names this field and the setting."""
        try:
            return cipher.decrypt(value)
        except crypto.DecryptionError:
            raise self.decryption_error() from None

    def decryption_error(self) -> crypto.DecryptionError:
        return crypto.DecryptionError(
            f"Cannot decrypt {self.model._meta.label}.{self.name}: no key in "
            f"{ENCRYPTION_KEYS_SETTING} opens it. Put the key it was written with back "
            "in the list (the first key encrypts, every key decrypts)."
        )

    def get_prep_value(self, value: Any) -> str | None:
        # Field's (lazy strings) and TextField's str(), not this field's to_python(): what
        # is saved is encrypted as it is.
        value = super().to_python(models.Field.get_prep_value(self, value))
        if value is None:
            return None
        return current_cipher().encrypt(value)

    def value_to_string(self, obj: models.Model) -> str:
        """What ``dumpdata`` and the serializers write: ciphertext, never the secret.

        (They write ``None`` themselves, without asking the field.)"""
        value = self.value_from_object(obj)
        return super().value_to_string(obj) if value is None else current_cipher().encrypt(value)

    def to_python(self, value: Any) -> str | None:
        """A deserialized (``loaddata``) ciphertext decrypted; anything else as text."""
        if isinstance(value, str) and crypto.looks_sealed(value):
            return self.decrypt(current_cipher(), value)
        return super().to_python(value)

    def get_lookup(self, lookup_name: str) -> Any:
        if lookup_name == "isnull":
            return super().get_lookup(lookup_name)
        if self.digest_field is not None and lookup_name in _DIGEST_LOOKUPS:
            return _DIGEST_LOOKUPS[lookup_name]
        raise FieldError(self._refusal(f"the '{lookup_name}' lookup"))

    def get_transform(self, lookup_name: str) -> Any:
        raise FieldError(self._refusal(f"the '{lookup_name}' transform"))

    def _refusal(self, what: str) -> str:
        supported = "'exact', 'in' and 'isnull'" if self.digest_field else "only 'isnull'"
        return (
            f"{self.model._meta.label}.{self.name} is encrypted, so the database cannot "
            f"answer {what}; it supports {supported}."
        )


class DigestField(models.CharField):
    """A hex SHA-256 digest of another field, kept in step on every save.

    ``keyed=True`` uses HMAC with ``ZOHO_TOKENS_HMAC_KEYS`` (for secrets);
    ``keyed=False`` is a plain hash (for values stored in clear, where the digest
    only gives an exact, case-sensitive, fixed-width unique index on any database).
    """

    def __init__(self, *args: Any, source: str, keyed: bool = True, **kwargs: Any) -> None:
        self.source = source
        self.keyed = keyed
        kwargs.setdefault("max_length", 64)
        kwargs.setdefault("editable", False)
        super().__init__(*args, **kwargs)

    @property
    def sources(self) -> tuple[str, ...]:
        """The fields the digest is computed from."""
        return (self.source,)

    def deconstruct(self) -> Any:
        name, path, args, kwargs = super().deconstruct()
        kwargs["source"] = self.source
        if not self.keyed:
            kwargs["keyed"] = False
        if kwargs.get("max_length") == 64:
            del kwargs["max_length"]
        kwargs.pop("editable", None)
        return name, path, args, kwargs

    def digest_of(self, value: str | None) -> str | None:
        if value is None:
            return None
        if self.keyed:
            return current_digester().digest(value)
        return hashlib.sha256(value.encode("utf-8")).hexdigest()

    def candidates(self, value: str) -> list[str]:
        """Every digest ``value`` may be stored under (all HMAC keys, for rotation)."""
        if self.keyed:
            return current_digester().candidates(value)
        return [hashlib.sha256(value.encode("utf-8")).hexdigest()]

    def digest_from(self, values: Sequence[Any]) -> str | None:
        """The digest of the source values, in the order of :attr:`sources`."""
        return self.digest_of(values[0])

    def pre_save(self, model_instance: models.Model, add: bool) -> str | None:
        digest = self.digest_from([getattr(model_instance, name) for name in self.sources])
        setattr(model_instance, self.attname, digest)
        return digest

    def is_stale(self, model_instance: models.Model) -> bool:
        """Whether the stored digest no longer matches the instance's values (or the first key)."""
        current = self.digest_from([getattr(model_instance, name) for name in self.sources])
        return bool(getattr(model_instance, self.attname) != current)


class CombinedDigestField(DigestField):
    """A keyed digest of several fields at once, ``None`` included, never ``NULL`` itself
    while it is current.

    One equality on it tells whether all those fields still hold given values, without
    reading (or decrypting) them. ``QuerySet.update()`` with only some of the sources
    cannot compute it and sets it to ``NULL``, which matches nothing, until the next save.
    """

    def __init__(self, *args: Any, sources: Sequence[str], **kwargs: Any) -> None:
        self._sources = tuple(sources)
        super().__init__(*args, source=self._sources[0], **kwargs)

    @property
    def sources(self) -> tuple[str, ...]:
        return self._sources

    def deconstruct(self) -> Any:
        name, path, args, kwargs = super().deconstruct()
        del kwargs["source"]
        kwargs["sources"] = list(self._sources)
        return name, path, args, kwargs

    def digest_from(self, values: Sequence[Any]) -> str | None:
        # JSON keeps None apart from "None" and every value apart from its neighbours.
        return current_digester().digest(json.dumps(list(values), separators=(",", ":")))


class _DigestLookup(Lookup):
    """Compare the digest column instead of the (randomised) ciphertext."""

    prepare_rhs = False

    def get_prep_lookup(self) -> Any:
        if hasattr(self.rhs, "resolve_expression"):
            raise FieldError("Encrypted fields can only be compared with plain values.")
        return self.rhs

    def plain_values(self) -> Iterable[Any]:
        return [self.rhs]

    def as_sql(self, compiler: Any, connection: Any) -> Any:
        field = self.lhs.target
        digest_field = field.model._meta.get_field(field.digest_field)
        sql, params = compiler.compile(digest_field.get_col(self.lhs.alias))
        digests = [
            digest
            for value in self.plain_values()
            if value is not None
            for digest in digest_field.candidates(str(value))
        ]
        if not digests:
            raise EmptyResultSet
        placeholders = ", ".join(["%s"] * len(digests))
        return f"{sql} IN ({placeholders})", [*params, *digests]


class _DigestExact(_DigestLookup):
    lookup_name = "exact"


class _DigestIn(_DigestLookup):
    lookup_name = "in"

    def plain_values(self) -> Iterable[Any]:
        return list(self.rhs)


_DIGEST_LOOKUPS = {"exact": _DigestExact, "in": _DigestIn}


def digest_fields(model: type[models.Model]) -> list[DigestField]:
    return [f for f in model._meta.concrete_fields if isinstance(f, DigestField)]


class DigestSyncQuerySet(models.QuerySet[Any]):
    """Keeps ``DigestField`` columns in step through ``update()`` and ``bulk_update()``.

    Without this, ``update(refresh_token=...)`` would store the new ciphertext beside
    the old digest and lookups would find the wrong row.
    """

    def update(self, **kwargs: Any) -> int:
        for field in digest_fields(self.model):
            named = [name for name in field.sources if name in kwargs]
            # bulk_update() passes the digests too, already computed.
            if not named or field.attname in kwargs:
                continue
            values = [kwargs[name] for name in named]
            if any(hasattr(value, "resolve_expression") for value in values):
                raise FieldError(
                    f"{self.model._meta.label}.{named[0]} can only be updated with a "
                    "plain value: its digest is computed in Python."
                )
            # A digest of fields this update does not name cannot be computed here.
            kwargs[field.attname] = field.digest_from(values) if len(named) == len(field.sources) else None
        return super().update(**kwargs)

    update.alters_data = True  # type: ignore[attr-defined]

    def bulk_update(self, objs: Iterable[Any], fields: Iterable[str], batch_size: int | None = None) -> int:
        objs = list(objs)
        names = list(fields)
        for field in digest_fields(self.model):
            if any(name in names for name in field.sources):
                for obj in objs:
                    field.pre_save(obj, add=False)
                if field.name not in names:
                    names.append(field.name)
        return super().bulk_update(objs, names, batch_size=batch_size)

    bulk_update.alters_data = True  # type: ignore[attr-defined]


def with_digest_fields(model: type[models.Model], update_fields: Iterable[str] | None) -> list[str] | None:
    """``update_fields`` plus the digests of any source field it names."""
    if update_fields is None:
        return None
    names = list(update_fields)
    for field in digest_fields(model):
        if any(name in names for name in field.sources) and field.name not in names:
            names.append(field.name)
    return names
