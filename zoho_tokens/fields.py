"""Model fields that keep secrets encrypted at rest, bound to their row, and still findable.

``EncryptedTextField`` stores AES-256-GCM ciphertext (see ``crypto``) whose associated
data names its table, its column and its row's ``token_id``: a value copied into
another row or column fails to decrypt instead of reading as someone else's secret.
Django hands ``from_db_value`` and ``get_prep_value`` no row, so the field works at
the two places that see one:

* reading: the column's text arrives as a :class:`Ciphertext`, and the model attribute
  (:class:`SecretAttribute`) opens it with the instance's ``token_id`` on first access;
* writing: ``save()``, ``bulk_create()``, ``bulk_update()``, ``QuerySet.update()`` and
  ``loaddata`` encrypt for each row (:class:`Sealed`). A plain string that reaches the
  database without its row is refused, and so are ``values()``/``values_list()`` of an
  encrypted field, which never see a row.

Ciphertext is randomised, so the database cannot compare it; an encrypted field that
names a ``digest_field`` answers ``exact`` and ``in`` lookups through that sibling
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
from functools import cached_property
from typing import Any

from django.core.exceptions import EmptyResultSet, FieldError, ImproperlyConfigured
from django.db import models, transaction
from django.db.models import Case, F, Lookup, Value, When
from django.db.models.constants import LOOKUP_SEP
from django.db.models.expressions import Col
from django.db.models.query_utils import DeferredAttribute
from django.db.models.signals import post_save, pre_save

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


def current_digester(purpose: bytes) -> crypto.Digester:
    try:
        return crypto.digester_for(_key_list(HMAC_KEYS_SETTING, app_settings.HMAC_KEYS), purpose)
    except crypto.InvalidKeyError as exc:
        raise ImproperlyConfigured(f"{HMAC_KEYS_SETTING}: {exc}. Run `manage.py check`.") from None


class Ciphertext:
    """A stored value not opened yet: it opens only for the row and column it was written for."""

    __slots__ = ("text",)

    def __init__(self, text: str) -> None:
        self.text = text

    def __repr__(self) -> str:
        return "<Ciphertext>"


class Sealed(str):
    """A ciphertext made for one row and column, written to the database as it is.

    Written to any other row or column, it does not open there: the store then names that
    row. It is text, not an expression: Django 6 reads a saved expression back with
    ``RETURNING`` (or, where it cannot, defers the field, so the next read is a query).
    """

    __slots__ = ()

    def __repr__(self) -> str:
        return "<Sealed ciphertext>"


class SecretAttribute(DeferredAttribute):
    """The model attribute of an encrypted field: opens a :class:`Ciphertext` with the
    instance's row id on first access, and keeps the plaintext on the instance."""

    field: EncryptedTextField

    def __get__(self, instance: Any, cls: Any = None) -> Any:
        if instance is None:
            return self
        value = super().__get__(instance, cls)
        if isinstance(value, Ciphertext):
            value = self.field.decrypt(value.text, self.field.row_id_of(instance))
            instance.__dict__[self.field.attname] = value
        return value

    def __set__(self, instance: Any, value: Any) -> None:
        # A data descriptor, so that reads always come through __get__.
        instance.__dict__[self.field.attname] = value


class EncryptedTextField(models.TextField):
    """Text encrypted with the first key of ``ZOHO_TOKENS_ENCRYPTION_KEYS``, for one row.

    ``row_id_field`` names the field that identifies the row in the associated data;
    it must never change once the row is saved (``ZohoToken.token_id``).
    """

    description = "Text encrypted with AES-256-GCM, bound to its table, column and row"
    descriptor_class = SecretAttribute

    def __init__(
        self, *args: Any, digest_field: str | None = None, row_id_field: str = "token_id", **kwargs: Any
    ) -> None:
        self.digest_field = digest_field
        self.row_id_field = row_id_field
        super().__init__(*args, **kwargs)

    def deconstruct(self) -> Any:
        name, path, args, kwargs = super().deconstruct()
        if self.digest_field is not None:
            kwargs["digest_field"] = self.digest_field
        if self.row_id_field != "token_id":
            kwargs["row_id_field"] = self.row_id_field
        return name, path, args, kwargs

    def contribute_to_class(self, cls: type[models.Model], name: str, private_only: bool = False) -> None:
        super().contribute_to_class(cls, name, private_only)
        uid = f"zoho_tokens.fields.raw_save.{cls.__module__}.{cls.__qualname__}"
        pre_save.connect(_seal_for_raw_save, sender=cls, dispatch_uid=uid)
        post_save.connect(_open_after_raw_save, sender=cls, dispatch_uid=uid)

    # --- the value's place ----------------------------------------------------------

    @cached_property
    def context_prefix(self) -> bytes:
        """What the associated data of every value of this column starts with: table and column."""
        return f"{self.model._meta.db_table}\x00{self.column}\x00".encode()

    def context(self, row_id: str) -> bytes:
        """The associated data of a value of this column in the row ``row_id``."""
        return self.context_prefix + row_id.encode()

    def row_id_of(self, instance: models.Model) -> str:
        row_id = getattr(instance, self.row_id_field)
        if not row_id:
            raise FieldError(f"{self.model._meta.label}.{self.row_id_field} must be set before its secrets.")
        return str(row_id)

    # --- encryption -------------------------------------------------------------------

    def encrypt(self, plaintext: str, row_id: str) -> str:
        """The ciphertext of ``plaintext`` for this column of the row ``row_id``."""
        return current_cipher().encrypt(plaintext, self.context(row_id))

    def decrypt(self, ciphertext: str, row_id: str) -> str:
        """``ciphertext`` opened for this column of the row ``row_id``; an error that names
        the field, the row and what to do."""
        try:
            return current_cipher().decrypt(ciphertext, self.context(row_id))
        except crypto.DecryptionError as exc:
            raise self.decryption_error(row_id, exc) from None

    def decryption_error(self, row_id: str, cause: crypto.DecryptionError) -> crypto.DecryptionError:
        what = f"Cannot decrypt {self.model._meta.label}.{self.name} of token {row_id}"
        if cause.reason == crypto.DecryptionError.PLACE:
            message = (
                f"{what}: the value was not written for this row and column (it was copied "
                "from another row or column, or altered in the database)."
            )
        elif cause.reason == crypto.DecryptionError.KEY:
            message = (
                f"{what}: it was written with a key that is not in {ENCRYPTION_KEYS_SETTING}. Put "
                "that key back in the list (the first key encrypts, every key decrypts)."
            )
        else:
            message = f"{what}: {cause}, so no key in {ENCRYPTION_KEYS_SETTING} can open it."
        return crypto.DecryptionError(message, cause.reason)

    def sealed(self, value: Any, row_id: str) -> Sealed | None:
        """``value`` encrypted for the row ``row_id``, ready for the database (``None`` stays NULL)."""
        if value is None:
            return None
        if hasattr(value, "resolve_expression"):
            raise FieldError(f"{self.model._meta.label}.{self.name} can only be saved with a plain value.")
        # Field's (lazy strings) and TextField's str(), as Django would prepare text.
        plaintext = super().to_python(models.Field.get_prep_value(self, value))
        return Sealed(self.encrypt(plaintext, row_id))

    # --- Django's hooks ---------------------------------------------------------------

    def from_db_value(self, value: str | None, expression: Any, connection: Any) -> Ciphertext | None:
        return None if value is None else Ciphertext(value)

    def pre_save(self, model_instance: models.Model, add: bool) -> Sealed | None:
        return self.sealed(getattr(model_instance, self.attname), self.row_id_of(model_instance))

    def get_prep_value(self, value: Any) -> str | None:
        # Every write path seals for its row (pre_save, update(), bulk_update()); a bare
        # value here has no row, and would be stored under no binding at all.
        if value is None or isinstance(value, Sealed):
            return value
        raise FieldError(
            f"{self.model._meta.label}.{self.name} is encrypted for its row: write it through "
            "save(), bulk_create(), bulk_update() or QuerySet.update(), which encrypt for each row."
        )

    def value_to_string(self, obj: models.Model) -> str:
        """What ``dumpdata`` and the serializers write: ciphertext for the row, never the secret.

        (They write ``None`` themselves, without asking the field.)"""
        value = self.value_from_object(obj)
        return super().value_to_string(obj) if value is None else self.encrypt(value, self.row_id_of(obj))

    def to_python(self, value: Any) -> Any:
        """A deserialized (``loaddata``) ciphertext, opened when its row reads it; anything else as text."""
        if isinstance(value, str) and crypto.looks_sealed(value):
            return Ciphertext(value)
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


def encrypted_fields(model: type[models.Model]) -> list[EncryptedTextField]:
    found = _encrypted_fields.get(model)
    if found is None:
        found = _encrypted_fields[model] = [
            f for f in model._meta.concrete_fields if isinstance(f, EncryptedTextField)
        ]
    return found


# Remembered per model: update() and bulk_update() ask on every call.
_encrypted_fields: dict[type[models.Model], list[EncryptedTextField]] = {}
_digest_fields: dict[type[models.Model], list[DigestField]] = {}


# A fixture's row is saved "raw": Django writes each attribute as it reads it, without
# pre_save(). For that one save the attributes hold the values sealed for the row, as
# expressions, so that a failed save leaves no ciphertext where the secret was.


def _seal_for_raw_save(sender: type[models.Model], instance: models.Model, raw: bool, **kwargs: Any) -> None:
    if raw:
        for field in encrypted_fields(sender):
            # Reading opens what the fixture holds: a wrong key or a moved value fails here.
            sealed = field.pre_save(instance, add=False)
            instance.__dict__[field.attname] = None if sealed is None else Value(sealed, output_field=field)


def _open_after_raw_save(
    sender: type[models.Model], instance: models.Model, raw: bool, **kwargs: Any
) -> None:
    if raw:
        for field in encrypted_fields(sender):
            # Django 6 may have read it back already (RETURNING), or deferred it.
            value = instance.__dict__.get(field.attname)
            if isinstance(value, Value):
                instance.__dict__[field.attname] = Ciphertext(value.value)


class DigestField(models.CharField):
    """A hex SHA-256 digest of another field, kept in step on every save.

    ``keyed=True`` uses HMAC with a key derived for this column from each of
    ``ZOHO_TOKENS_HMAC_KEYS`` (for secrets); ``keyed=False`` is a plain hash (for values
    stored in clear, where the digest only gives an exact, case-sensitive, fixed-width
    unique index on any database).
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

    @cached_property
    def purpose(self) -> bytes:
        """What this column's HMAC key is derived for."""
        return f"{self.model._meta.db_table}\x00{self.column}".encode()

    def digester(self) -> crypto.Digester:
        return current_digester(self.purpose)

    def digest_of(self, value: str | None) -> str | None:
        if value is None:
            return None
        if self.keyed:
            return self.digester().digest(value)
        return hashlib.sha256(value.encode("utf-8")).hexdigest()

    def candidates(self, value: str) -> list[str]:
        """Every digest ``value`` may be stored under (all HMAC keys, for rotation)."""
        if self.keyed:
            return self.digester().candidates(value)
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

    def is_foreign(self, model_instance: models.Model) -> bool:
        """Whether the stored digest is one no configured key computes from the instance's
        values: the rows were digested under a key that is not configured."""
        stored = getattr(model_instance, self.attname)
        if stored is None or not self.keyed:
            return False
        values = [getattr(model_instance, name) for name in self.sources]
        return stored not in self._candidates_from(values)

    def _candidates_from(self, values: Sequence[Any]) -> list[str]:
        return [] if values[0] is None else self.candidates(values[0])


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
        return self.digester().digest(self._combined(values))

    def _candidates_from(self, values: Sequence[Any]) -> list[str]:
        return self.digester().candidates(self._combined(values))

    @staticmethod
    def _combined(values: Sequence[Any]) -> str:
        # JSON keeps None apart from "None" and every value apart from its neighbours.
        return json.dumps(list(values), separators=(",", ":"))


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
    found = _digest_fields.get(model)
    if found is None:
        found = _digest_fields[model] = [f for f in model._meta.concrete_fields if isinstance(f, DigestField)]
    return found


def _is_sealed(expression: Any) -> bool:
    """Whether every value in ``expression`` was sealed for its row (what ``bulk_update()``
    builds from :class:`Sealed` attributes), and it reads no column."""
    return all(
        not isinstance(node, F | Col)
        and (not isinstance(node, Value) or isinstance(node.value, Sealed) or node.value is None)
        for node in expression.flatten()
    )


class SecretsQuerySet(models.QuerySet[Any]):
    """Encrypts for each row and keeps ``DigestField`` columns in step through
    ``update()`` and ``bulk_update()``; refuses ``values()``/``values_list()`` of an
    encrypted field, which would have no row to open it with.

    Without the digests, ``update(refresh_token=...)`` would store the new ciphertext
    beside the old digest and lookups would find the wrong row.
    """

    def values(self, *fields: Any, **expressions: Any) -> Any:
        self._refuse_ciphertext(fields, all_fields=not fields and not expressions)
        return super().values(*fields, **expressions)

    def values_list(self, *fields: Any, flat: bool = False, named: bool = False) -> Any:
        self._refuse_ciphertext(fields, all_fields=not fields)
        return super().values_list(*fields, flat=flat, named=named)

    def ciphertext_values_list(self, *fields: str) -> Any:
        """``values_list()`` with encrypted fields as :class:`Ciphertext`, for code that opens
        them itself with ``EncryptedTextField.decrypt(text, token_id)``."""
        return super().values_list(*fields)

    def _refuse_ciphertext(self, fields: Sequence[Any], *, all_fields: bool) -> None:
        secrets = {name for f in encrypted_fields(self.model) for name in (f.name, f.attname)}
        named = [name for name in fields if isinstance(name, str) and name.split(LOOKUP_SEP)[0] in secrets]
        if all_fields and secrets:
            named = sorted(secrets)
        if named:
            raise FieldError(
                f"values() and values_list() cannot decrypt {self.model._meta.label}.{named[0]}: each "
                "value opens only with its row's token_id. Load instances instead, e.g. "
                f'.only("token_id", "{named[0]}").'
            )

    def update(self, **kwargs: Any) -> int:
        secrets = {f.attname: f for f in encrypted_fields(self.model)}
        if secrets and any(f.row_id_field in kwargs for f in secrets.values()):
            raise FieldError(
                f"{self.model._meta.label}.{next(iter(secrets.values())).row_id_field} never changes: "
                "every encrypted value of the row is bound to it."
            )
        self._sync_digests(kwargs)
        plain: dict[str, str] = {}
        for name, value in kwargs.items():
            if name not in secrets or value is None or isinstance(value, Sealed):
                continue  # a Sealed value was made for its row (sealed_for_row)
            if hasattr(value, "resolve_expression"):
                # bulk_update()'s CASE of values sealed for their rows.
                if not _is_sealed(value):
                    raise FieldError(
                        f"{self.model._meta.label}.{name} can only be updated with a plain value."
                    )
            else:
                plain[name] = value
        if not plain:
            return super().update(**kwargs)
        return self._update_sealing_each_row(plain, kwargs)

    update.alters_data = True  # type: ignore[attr-defined]

    def _update_sealing_each_row(self, plain: dict[str, str], kwargs: dict[str, Any]) -> int:
        """``update()`` with values encrypted for each matching row: one locked read of the
        rows' ids, then one UPDATE of those rows."""
        locked = self.select_for_update()
        fields = [f for f in encrypted_fields(self.model) if f.attname in plain]
        with transaction.atomic(using=locked.db):
            rows = list(locked.values_list("pk", fields[0].row_id_field))
            if not rows:
                return 0
            for field in fields:
                sealed = [(pk, field.sealed(plain[field.attname], row_id)) for pk, row_id in rows]
                kwargs[field.attname] = (
                    sealed[0][1]
                    if len(sealed) == 1
                    else Case(
                        *[When(pk=pk, then=Value(value, output_field=field)) for pk, value in sealed],
                        output_field=field,
                    )
                )
            targets = self.model._base_manager.using(locked.db).filter(pk__in=[pk for pk, _ in rows])
            return targets.update(**kwargs)

    def _sync_digests(self, kwargs: dict[str, Any]) -> None:
        for field in digest_fields(self.model):
            named = [name for name in field.sources if name in kwargs]
            # bulk_update() passes the digests too, already computed.
            if not named or field.attname in kwargs:
                continue
            values = [kwargs[name] for name in named]
            if any(hasattr(value, "resolve_expression") or isinstance(value, Sealed) for value in values):
                raise FieldError(
                    f"{self.model._meta.label}.{named[0]} can only be updated with a "
                    "plain value: its digest is computed in Python."
                )
            # A digest of fields this update does not name cannot be computed here.
            kwargs[field.attname] = field.digest_from(values) if len(named) == len(field.sources) else None

    def bulk_update(self, objs: Iterable[Any], fields: Iterable[str], batch_size: int | None = None) -> int:
        objs = list(objs)
        names = list(fields)
        for field in digest_fields(self.model):
            if any(name in names for name in field.sources):
                for obj in objs:
                    field.pre_save(obj, add=False)
                if field.name not in names:
                    names.append(field.name)
        secrets = [f for f in encrypted_fields(self.model) if f.name in names or f.attname in names]
        # Django's bulk_update() reads each attribute; for this call it reads the value
        # sealed for that object's row.
        plaintexts: list[tuple[Any, str, Any]] = []
        try:
            for obj in objs:
                for secret in secrets:
                    plaintexts.append((obj, secret.attname, getattr(obj, secret.attname)))
                    obj.__dict__[secret.attname] = secret.pre_save(obj, add=False)
            return super().bulk_update(objs, names, batch_size=batch_size)
        finally:
            for obj, attname, value in plaintexts:
                obj.__dict__[attname] = value

    bulk_update.alters_data = True  # type: ignore[attr-defined]


def sealed_for_row(model: type[models.Model], row_id: str, values: dict[str, Any]) -> dict[str, Any]:
    """``values`` ready for ``update()`` of the one row ``row_id``: each secret encrypted for
    that row, and the digests of the values named computed from the plaintexts. One
    ``UPDATE``, no read; written to any other row, the secrets do not open there."""
    sealed = dict(values)
    for digest in digest_fields(model):
        named = [name for name in digest.sources if name in values]
        if named and digest.attname not in values:
            complete = len(named) == len(digest.sources)
            sealed[digest.attname] = (
                digest.digest_from([values[name] for name in named]) if complete else None
            )
    for secret in encrypted_fields(model):
        if secret.attname in values:
            sealed[secret.attname] = secret.sealed(values[secret.attname], row_id)
    return sealed


def with_digest_fields(model: type[models.Model], update_fields: Iterable[str] | None) -> list[str] | None:
    """``update_fields`` plus the digests of any source field it names."""
    if update_fields is None:
        return None
    names = list(update_fields)
    for field in digest_fields(model):
        if any(name in names for name in field.sources) and field.name not in names:
            names.append(field.name)
    return names
