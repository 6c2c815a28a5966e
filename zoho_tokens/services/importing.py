"""Importing the tokens of the SDK's own stores, so that their users need not consent again.

Each row of the source ends one of four ways:

* imported: a new token, under the source's id (the id the application may keep);
* already imported: a stored token has its id, user and refresh token (a second run
  changes nothing, whatever happened to the stored token since);
* malformed: it cannot become a usable token (no id, no refresh token, no client id or
  secret, an expiry that is not epoch milliseconds, a value too long);
* conflicting: its id, user or a token is stored for another token, or an earlier row
  of the same source has it.

Reasons name rows, ids and users, never a secret. Rows are read and written in chunks,
each chunk one transaction, so any source size takes the same memory.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from itertools import islice
from typing import cast

from django.db import IntegrityError, transaction
from django.db.models import Q

from ..fields import DigestField
from ..models import ZohoToken
from ..sdk_stores import SourceRow
from .status import token_alias

IMPORTED = "imported"
ALREADY_IMPORTED = "already_imported"
MALFORMED = "malformed"
CONFLICTING = "conflicting"
OUTCOMES = (IMPORTED, ALREADY_IMPORTED, MALFORMED, CONFLICTING)

CHUNK = 500
REQUIRED = (("id", "no id"), ("refresh_token", "no refresh token"), ("client_id", "no client id"))
LIMITS = (("id", "token id"), ("client_id", "client id"), ("api_domain", "API domain"))
SECRETS = ("refresh_token", "access_token", "grant_token")


@dataclass
class ImportReport:
    dry_run: bool = False
    counts: dict[str, int] = field(default_factory=lambda: dict.fromkeys(OUTCOMES, 0))
    skipped: list[tuple[str, str, str]] = field(default_factory=list)  # (where, outcome, reason)
    imported_ids: list[str] = field(default_factory=list)

    def add(self, outcome: str, row: SourceRow | None = None, reason: str = "") -> None:
        self.counts[outcome] += 1
        if row is not None and outcome in (MALFORMED, CONFLICTING):
            self.skipped.append((describe(row), outcome, reason))


def describe(row: SourceRow) -> str:
    """``"line 3 (token id 7, alice@example.com:1)"``: where the row is, and whose it is."""
    token_id, user_name = row.values.get("id"), row.values.get("user_name")
    named = ", ".join(name for name in (token_id and f"token id {token_id}", user_name) if name)
    return f"{row.where} ({named})" if named else row.where


def problem_of(values: dict[str, str | None]) -> str | None:
    """Why the row cannot become a usable token, or ``None``."""
    if "_malformed" in values:
        return values["_malformed"]
    for name, reason in REQUIRED:
        if not values.get(name):
            return reason
    if not values.get("client_secret"):
        return "no client secret"
    for name, label in LIMITS:
        if len(values.get(name) or "") > 255:
            return f"{label} longer than 255 characters"
    expiry = values.get("expiry_time")
    if expiry is not None and not (expiry.isascii() and expiry.isdigit()):
        return "expiry_time is not epoch milliseconds"
    return None


def import_tokens(
    rows: Iterable[SourceRow], *, dry_run: bool = False, using: str | None = None
) -> ImportReport:
    """Import every row of a source (see the module's docstring); ``dry_run`` writes nothing."""
    report = ImportReport(dry_run=dry_run)
    seen = _Seen()
    alias = token_alias(using)
    for chunk in _chunks(rows):
        with transaction.atomic(using=alias):
            _import_chunk(chunk, report, seen, alias, dry_run)
    return report


def _chunks(rows: Iterable[SourceRow]) -> Iterator[list[SourceRow]]:
    iterator = iter(rows)
    while chunk := list(islice(iterator, CHUNK)):
        yield chunk


@dataclass
class _Seen:
    """What earlier rows of the source named: ids, users, token digests (never a token)."""

    ids: dict[str, str] = field(default_factory=dict)
    users: dict[str, str] = field(default_factory=dict)
    tokens: dict[str, str] = field(default_factory=dict)

    def clash(self, values: dict[str, str | None]) -> str | None:
        for kind, key, mapping in self.keys(values):
            if key in mapping:
                return f"{mapping[key]} has the same {kind}"
        return None

    def remember(self, values: dict[str, str | None], where: str) -> None:
        for _, key, mapping in self.keys(values):
            mapping.setdefault(key, where)

    def keys(self, values: dict[str, str | None]) -> Iterator[tuple[str, str, dict[str, str]]]:
        yield "token id", cast(str, values["id"]), self.ids
        if values.get("user_name"):
            yield "user", cast(str, values["user_name"]), self.users
        for name in SECRETS:
            if values.get(name):
                digest = hashlib.sha256(cast(str, values[name]).encode()).hexdigest()
                yield name.replace("_", " "), digest, self.tokens


def _import_chunk(
    chunk: list[SourceRow], report: ImportReport, seen: _Seen, alias: str, dry_run: bool
) -> None:
    problems = [problem_of(row.values) for row in chunk]
    stored = _Stored(alias, [row for row, problem in zip(chunk, problems, strict=True) if problem is None])
    new: list[tuple[SourceRow, ZohoToken]] = []
    for row, problem in zip(chunk, problems, strict=True):
        if problem is not None:
            report.add(MALFORMED, row, problem)
            continue
        values = row.values
        clash = seen.clash(values)
        seen.remember(values, row.where)
        same = stored.by_id.get(cast(str, values["id"]))
        if same is not None and clash is None and _same_token(same, values):
            report.add(ALREADY_IMPORTED)
            continue
        conflict = clash or stored.conflict(values)
        if conflict is not None:
            report.add(CONFLICTING, row, conflict)
            continue
        new.append((row, _new_row(values)))
    if dry_run:
        for _ in new:
            report.add(IMPORTED)
        return
    _insert(new, report, alias)


def _same_token(stored: ZohoToken, values: dict[str, str | None]) -> bool:
    user_name = values.get("user_name")
    return stored.refresh_token == values["refresh_token"] and user_name in (None, stored.user_name)


class _Stored:
    """The stored tokens a chunk's rows may collide with, found in one query."""

    def __init__(self, alias: str, rows: list[SourceRow]) -> None:
        ids = [row.values["id"] for row in rows]
        user_digest = cast(DigestField, ZohoToken._meta.get_field("user_name_digest"))
        names = [row.values["user_name"] for row in rows if row.values.get("user_name")]
        users = [user_digest.digest_of(name) for name in names]
        condition = Q(token_id__in=ids) | Q(user_name_digest__in=users)
        for name in SECRETS:
            values = [row.values[name] for row in rows if row.values.get(name)]
            if values:
                condition |= Q(**{f"{name}__in": values})
        found = list(ZohoToken.objects.using(alias).filter(condition)) if rows else []
        self.by_id = {token.token_id: token for token in found}
        self.by_user = {token.user_name: token for token in found if token.user_name}
        self.by_secret = {
            (name, getattr(token, name)): token for token in found for name in SECRETS if getattr(token, name)
        }

    def conflict(self, values: dict[str, str | None]) -> str | None:
        token_id, user_name = values["id"], values.get("user_name")
        if token_id in self.by_id:
            return f"token id {token_id} is already stored for another token"
        if user_name and user_name in self.by_user:
            other_id = self.by_user[user_name].token_id
            return f"user {user_name} already has a stored token (token id {other_id})"
        for name in SECRETS:
            other = self.by_secret.get((name, values.get(name)))
            if other is not None:
                return f"its {name.replace('_', ' ')} is already stored under token id {other.token_id}"
        return None


def _new_row(values: dict[str, str | None]) -> ZohoToken:
    expiry = values.get("expiry_time")
    return ZohoToken(
        token_id=cast(str, values["id"]),
        user_name=values.get("user_name"),
        client_id=values["client_id"],
        client_secret=values["client_secret"],
        refresh_token=values["refresh_token"],
        access_token=values.get("access_token"),
        grant_token=values.get("grant_token"),
        expiry_time=int(expiry) if expiry else None,
        redirect_url=values.get("redirect_url"),
        api_domain=values.get("api_domain"),
    )


def _insert(new: list[tuple[SourceRow, ZohoToken]], report: ImportReport, alias: str) -> None:
    """All at once; one by one if a concurrent save took one of their values meanwhile."""
    rows = ZohoToken.objects.using(alias)
    try:
        with transaction.atomic(using=alias):
            rows.bulk_create([token for _, token in new])
    except IntegrityError:
        for row, token in new:
            try:
                with transaction.atomic(using=alias):
                    token.save(using=alias, force_insert=True)
            except IntegrityError:
                report.add(CONFLICTING, row, "a token with its id, user or a secret was stored meanwhile")
                continue
            report.add(IMPORTED)
            report.imported_ids.append(token.token_id)
        return
    for _, token in new:
        report.add(IMPORTED)
        report.imported_ids.append(token.token_id)
