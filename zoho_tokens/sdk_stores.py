"""Reading the token stores of the SDK's own: ``FileStore``'s CSV file, ``DBStore``'s MySQL
table, and the SQLite table of Zoho's published sample store (the same ten columns).

Each reader yields every row as plain values, in the SDK's column names, with empty
strings as ``None`` (the SDK's stores write ``None`` as an empty field). Errors that stop
the reading raise :class:`SourceError`, whose message names the source, never a password.
"""

from __future__ import annotations

import contextlib
import csv
import functools
import os
import re
import sqlite3
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import unquote, urlsplit

# The columns of FileStore's header and of DBStore's table, in the SDK's order.
COLUMNS = (
    "id",
    "user_name",
    "client_id",
    "client_secret",
    "refresh_token",
    "access_token",
    "grant_token",
    "expiry_time",
    "redirect_url",
    "api_domain",
)
# FileStore's header says "redirect_uri" where DBStore's column says "redirect_url".
FILE_STORE_HEADER = tuple("redirect_uri" if name == "redirect_url" else name for name in COLUMNS)
DEFAULT_TABLE = "oauthtoken"  # DBStore's default, and the sample store's
PASSWORD_VARIABLE = "ZOHO_TOKENS_IMPORT_PASSWORD"
_TABLE_NAME = re.compile(r"^[A-Za-z0-9_]+$")  # DBStore's own rule
FETCH = 500
NOT_A_URL = "--db-store: not a URL like mysql://user:password@host:3306/database."


class SourceError(Exception):
    """The source cannot be read."""


@dataclass(frozen=True)
class SourceRow:
    where: str  # "line 3", "row 2": how a person finds the row in the source
    values: dict[str, str | None]


def _text(value: Any) -> str | None:
    if value is None:
        return None
    text = value.decode() if isinstance(value, bytes) else str(value)
    return text or None


def _values(names: Sequence[str], record: Sequence[Any]) -> dict[str, str | None]:
    return {name: _text(value) for name, value in zip(names, record, strict=True)}


def read_file_store(path: str) -> Iterator[SourceRow]:
    """``FileStore``'s CSV: the SDK's header, then one line per token (files written
    before the SDK added ``api_domain`` have nine columns)."""
    try:
        handle = open(path, newline="", encoding="utf-8")  # noqa: SIM115 (closed below, also on errors)
    except OSError as exc:
        raise SourceError(f"Cannot read {path}: {exc.strerror or exc}.") from None
    with handle:
        reader = csv.reader(handle)
        try:
            header = next(reader, None)
            if header is None or tuple(header) not in (FILE_STORE_HEADER, FILE_STORE_HEADER[:9]):
                raise SourceError(f"{path} is not a FileStore file: its first line is not the SDK's header.")
            width = len(header)
            names = COLUMNS[:width]
            for record in reader:
                where = f"line {reader.line_num}"
                if not record:
                    continue
                if len(record) != width:
                    known = _values(names[: len(record)], record[:width])
                    yield SourceRow(where, {**known, "_malformed": f"{len(record)} values, not {width}"})
                    continue
                yield SourceRow(where, _values(names, record))
        except (csv.Error, UnicodeDecodeError) as exc:
            raise SourceError(f"Cannot read {path} (line {reader.line_num}): {exc}.") from None


def _select(table: str) -> str:
    if not _TABLE_NAME.match(table):
        raise SourceError(f"--table: {table!r} is not a table name (letters, digits and _ only).")
    return f"SELECT {', '.join(COLUMNS)} FROM {table} ORDER BY id"


def _rows(cursor: Any) -> Iterator[SourceRow]:
    number = 0
    while batch := cursor.fetchmany(FETCH):
        for record in batch:
            number += 1
            yield SourceRow(f"row {number}", _values(COLUMNS, record))


def read_sqlite_store(path: str, table: str = DEFAULT_TABLE) -> Iterator[SourceRow]:
    """The sample store's SQLite file (``zohooauth.db``), opened read-only."""
    query = _select(table)
    if not os.path.isfile(path):
        raise SourceError(f"Cannot read {path}: no such file.")
    try:
        connection = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    except sqlite3.Error as exc:
        raise SourceError(f"Cannot open {path}: {exc}.") from None
    try:
        cursor = connection.execute(query)
        yield from _rows(cursor)
    except sqlite3.Error as exc:
        raise SourceError(f"Cannot read table {table} of {path}: {exc}.") from None
    finally:
        connection.close()


@dataclass(frozen=True)
class DatabaseURL:
    host: str
    port: int
    user: str
    password: str = ""
    database: str = ""

    @classmethod
    def parse(cls, url: str) -> DatabaseURL:
        """``mysql://user:password@host:3306/database`` (``mariadb://`` too). Without a
        password in the URL, ``ZOHO_TOKENS_IMPORT_PASSWORD`` gives it: no password in the
        process list or the shell's history."""
        try:
            parts = urlsplit(url)
            port = parts.port or 3306
        except ValueError:
            raise SourceError(
                "--db-store: not a URL like mysql://user:password@host:3306/database."
            ) from None
        database = unquote(parts.path.lstrip("/"))
        if parts.scheme not in ("mysql", "mariadb") or not parts.hostname or not database:
            raise SourceError("--db-store: not a URL like mysql://user:password@host:3306/database.")
        password = (
            unquote(parts.password) if parts.password is not None else os.environ.get(PASSWORD_VARIABLE, "")
        )
        return cls(parts.hostname, port, unquote(parts.username or ""), password, database)

    def __str__(self) -> str:
        """The URL without its password, for messages."""
        return f"mysql://{self.user}@{self.host}:{self.port}/{self.database}"


def read_db_store(url: str, table: str = DEFAULT_TABLE) -> Iterator[SourceRow]:
    """``DBStore``'s table, read with mysql-connector (which DBStore itself needs) or
    mysqlclient (which Django's MySQL backend needs)."""
    target = DatabaseURL.parse(url)
    query = _select(table)
    connection, error = _connect_mysql(target)
    try:
        cursor = connection.cursor()
        cursor.execute(query)
        yield from _rows(cursor)
    except error as exc:
        raise SourceError(f"Cannot read table {table} at {target}: {exc}.") from None
    finally:
        with contextlib.suppress(error):  # a connection left with unread rows is closed all the same
            connection.close()


def _connect_mysql(target: DatabaseURL) -> tuple[Any, type[Exception]]:
    """A connection that reads rows as they arrive, and the driver's error class."""
    settings = {
        "host": target.host,
        "port": target.port,
        "user": target.user,
        "password": target.password,
        "database": target.database,
    }
    connect: Callable[[], Any]
    try:
        import mysql.connector as connector

        error: type[Exception] = connector.Error
        connect = functools.partial(connector.connect, **settings, connection_timeout=10)
    except ImportError:
        try:
            import MySQLdb
            import MySQLdb.cursors
        except ImportError:
            raise SourceError(
                "--db-store needs mysql-connector-python (as the SDK's DBStore does) or mysqlclient."
            ) from None
        error = MySQLdb.Error
        connect = functools.partial(
            MySQLdb.connect, **settings, connect_timeout=10, cursorclass=MySQLdb.cursors.SSCursor
        )
    try:
        return connect(), error
    except error as exc:
        raise SourceError(f"Cannot connect to {target}: {exc}.") from None
