"""One database, one table size: ``DjangoTokenStore`` against raw driver queries (and, on
MariaDB, the SDK's ``DBStore``), interleaved round by round. Writes JSON to ``--out``.

    python -m benchmarks.run_store --db sqlite --rows 1000 --out /tmp/r.json

Django is configured here with ``settings.configure()`` for this one database, so every
backend gets its own process (``python -m benchmarks`` runs them all).
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import os
import pickle
import shutil
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from typing import Any

from . import common
from .common import API_DOMAIN, CLIENT_ID, CLIENT_SECRET, REDIRECT_URL, Case, Result, Row

DBS = ("sqlite", "postgresql", "mysql")


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


# --- databases -----------------------------------------------------------------------


def create_server_database(db: str) -> None:
    """A fresh, dedicated benchmark database (never the shared ``test`` database)."""
    name = common.BENCH_DB_NAME
    if db == "postgresql":
        import psycopg

        with psycopg.connect(dbname="postgres", autocommit=True, **common.PG) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
            conn.execute(f'CREATE DATABASE "{name}"')
    elif db == "mysql":
        import MySQLdb

        conn = MySQLdb.connect(**_mysqldb_args())
        try:
            cur = conn.cursor()
            cur.execute(f"DROP DATABASE IF EXISTS `{name}`")
            cur.execute(f"CREATE DATABASE `{name}` CHARACTER SET utf8mb4 COLLATE utf8mb4_unicode_ci")
        finally:
            conn.close()


def drop_server_database(db: str) -> None:
    name = common.BENCH_DB_NAME
    if db == "postgresql":
        import psycopg

        with psycopg.connect(dbname="postgres", autocommit=True, **common.PG) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    elif db == "mysql":
        import MySQLdb

        conn = MySQLdb.connect(**_mysqldb_args())
        try:
            conn.cursor().execute(f"DROP DATABASE IF EXISTS `{name}`")
        finally:
            conn.close()


def _mysqldb_args(database: str | None = None) -> dict[str, Any]:
    args: dict[str, Any] = {
        "host": common.MYSQL["host"],
        "port": common.MYSQL["port"],
        "user": common.MYSQL["user"],
        "password": common.MYSQL["password"],
        "charset": "utf8mb4",
    }
    if database:
        args["database"] = database
    return args


def django_databases(db: str, sqlite_path: str) -> dict[str, Any]:
    if db == "sqlite":
        # Django's defaults (rollback journal, journal_mode=DELETE; synchronous=FULL) plus
        # what the README requires of a token database on SQLite: every transaction takes
        # the write lock at BEGIN, and waits up to 20 s for it (Django 5.1+).
        import django

        default: dict[str, Any] = {"ENGINE": "django.db.backends.sqlite3", "NAME": sqlite_path}
        if django.VERSION >= (5, 1):
            default["OPTIONS"] = {"transaction_mode": "IMMEDIATE", "timeout": 20}
        return {"default": default}
    if db == "postgresql":
        default = {
            "ENGINE": "django.db.backends.postgresql",
            "NAME": common.BENCH_DB_NAME,
            "USER": common.PG["user"],
            "PASSWORD": common.PG["password"],
            "HOST": common.PG["host"],
            "PORT": str(common.PG["port"]),
            # The README's recommended setting (psycopg's own default, which Django turns
            # off): the store's lookups then run as prepared statements, like the raw floor.
            "OPTIONS": {"prepare_threshold": 5},
        }
        # "prepared" (used by benchmarks.profiling only): Django's opt-in server-side binding
        # with psycopg's automatic prepared statements, which Django turns off by default.
        prepared = {**default, "OPTIONS": {"server_side_binding": True, "prepare_threshold": 5}}
        return {"default": default, "prepared": prepared}
    return {
        "default": {
            "ENGINE": "django.db.backends.mysql",
            "NAME": common.BENCH_DB_NAME,
            "USER": common.MYSQL["user"],
            "PASSWORD": common.MYSQL["password"],
            "HOST": common.MYSQL["host"],
            "PORT": str(common.MYSQL["port"]),
            "OPTIONS": {"charset": "utf8mb4"},
        }
    }


def configure_django(db: str, sqlite_path: str, extra: dict[str, Any] | None = None) -> None:
    """``settings.configure()`` for ``db``; ``extra`` adds settings or replaces these."""
    import django
    from cryptography.fernet import Fernet
    from django.conf import settings

    values: dict[str, Any] = {
        "DEBUG": False,  # no query log
        "SECRET_KEY": "benchmark-only-secret-key",
        "USE_TZ": True,
        # The token model's owner is a foreign key to the user model.
        "INSTALLED_APPS": ["django.contrib.contenttypes", "django.contrib.auth", "zoho_tokens"],
        "DATABASES": django_databases(db, sqlite_path),
        "DEFAULT_AUTO_FIELD": "django.db.models.BigAutoField",
        # The driver passes one key pair to every process, so they can share encrypted rows.
        "ZOHO_TOKENS_ENCRYPTION_KEYS": [
            os.environ.get("ZOHO_BENCH_ENCRYPTION_KEY") or Fernet.generate_key().decode()
        ],
        "ZOHO_TOKENS_HMAC_KEYS": [os.environ.get("ZOHO_BENCH_HMAC_KEY") or os.urandom(32).hex()],
        "LOGGING": {
            "version": 1,
            "disable_existing_loggers": False,
            "loggers": {"SDKLogger": {"handlers": [], "propagate": False}},
        },
    }
    settings.configure(**{**values, **(extra or {})})
    django.setup()


# --- loading ---------------------------------------------------------------------------


def token_id_of(row: Row) -> str:
    return hashlib.blake2b(str(row.number).encode(), digest_size=16).hexdigest()


def encrypted_values(rows: Sequence[Row], cache_dir: str | None) -> list[dict[str, str]]:
    """Ciphertexts and digests of every row, made by the model's own fields.

    The expensive part of loading (four encryptions and five digests a row), so it is
    computed once per table size and key pair and shared by the three databases' processes.
    """
    from django.conf import settings

    from zoho_tokens import crypto
    from zoho_tokens.fields import DigestField
    from zoho_tokens.models import ZohoToken

    path = None
    if cache_dir:
        tag = hashlib.sha256(
            f"{settings.ZOHO_TOKENS_ENCRYPTION_KEYS}{settings.ZOHO_TOKENS_HMAC_KEYS}{crypto.FORMAT_VERSION!r}".encode()
        ).hexdigest()[:12]
        path = os.path.join(cache_dir, f"rows-{len(rows)}-{tag}.pickle")
        if os.path.exists(path):
            with open(path, "rb") as handle:
                return pickle.load(handle)  # type: ignore[no-any-return]
    meta = ZohoToken._meta
    field = meta.get_field
    encrypted = {name: field(name).encrypt for name in ENCRYPTED}  # type: ignore[union-attr]
    digests = {f.attname: f for f in meta.concrete_fields if isinstance(f, DigestField)}
    values = []
    for row in rows:
        plain = plain_values(row)
        item = {
            name: None if plain[name] is None else encrypt(plain[name], plain["token_id"])
            for name, encrypt in encrypted.items()
        }
        for name, digest_field in digests.items():
            item[name] = digest_field.digest_from([plain[source] for source in digest_field.sources])
        values.append(item)
    if path is not None:
        with open(path + ".tmp", "wb") as handle:
            pickle.dump(values, handle, protocol=pickle.HIGHEST_PROTOCOL)
        os.replace(path + ".tmp", path)
    return values


ENCRYPTED = ("client_secret", "refresh_token", "access_token", "grant_token")


def plain_values(row: Row) -> dict[str, Any]:
    return {
        "token_id": token_id_of(row),
        "user_name": row.user_name,
        "client_id": CLIENT_ID,
        "client_secret": CLIENT_SECRET,
        "refresh_token": row.refresh_token,
        "access_token": row.access_token,
        "grant_token": row.grant_token,
        "expiry_time": row.expiry_time,
        "redirect_url": REDIRECT_URL,
        "api_domain": API_DOMAIN,
    }


def load_rows(rows: Sequence[Row], cache_dir: str | None) -> tuple[float, float]:
    """Inserts ``rows`` with one multi-row ``executemany`` per batch; values come from the real
    fields (``encrypted_values``; every other column through ``get_db_prep_save``, defaults
    included). Returns (seconds encrypting, seconds inserting)."""
    from django.db import connection, transaction
    from django.utils import timezone

    from zoho_tokens.models import ZohoToken

    start = time.perf_counter()
    secrets = encrypted_values(rows, cache_dir)
    encrypting = time.perf_counter() - start
    start = time.perf_counter()
    fields = [f for f in ZohoToken._meta.concrete_fields if not f.primary_key]
    now = timezone.now()
    sql = "INSERT INTO {} ({}) VALUES ({})".format(
        connection.ops.quote_name(ZohoToken._meta.db_table),
        ", ".join(connection.ops.quote_name(f.column) for f in fields),
        ", ".join(["%s"] * len(fields)),
    )
    prepared_defaults: dict[str, Any] = {}
    for f in fields:
        if f.attname in ("created_at", "updated_at"):
            prepared_defaults[f.attname] = f.get_db_prep_save(now, connection)
        elif f.has_default():
            prepared_defaults[f.attname] = f.get_db_prep_save(f.get_default(), connection)
        else:
            prepared_defaults[f.attname] = None
    batch = 2000
    with transaction.atomic(), connection.cursor() as cursor:
        for offset in range(0, len(rows), batch):
            params = []
            for row, secret in zip(
                rows[offset : offset + batch], secrets[offset : offset + batch], strict=True
            ):
                plain = plain_values(row)
                params.append(
                    [
                        secret[f.attname]
                        if f.attname in secret
                        else plain[f.attname]
                        if f.attname in plain
                        else prepared_defaults[f.attname]
                        for f in fields
                    ]
                )
            cursor.executemany(sql, params)
    settle(connection, ZohoToken._meta.db_table)
    return encrypting, time.perf_counter() - start


def settle(connection: Any, table: str) -> None:
    """Statistics and visibility settled before timing: without this, PostgreSQL's autovacuum
    and first-read hint-bit writes on the freshly loaded table run during the measurements."""
    with connection.cursor() as cursor:
        if connection.vendor == "postgresql":
            cursor.execute(f"VACUUM ANALYZE {connection.ops.quote_name(table)}")
        elif connection.vendor == "mysql":
            cursor.execute(f"ANALYZE TABLE {connection.ops.quote_name(table)}")
            cursor.fetchall()
        else:
            cursor.execute("ANALYZE")


# --- raw driver connections -------------------------------------------------------------


class Raw:
    """The floor: parameterised queries on persistent driver connections, no ORM, no crypto."""

    def __init__(self, db: str, sqlite_path: str) -> None:
        from zoho_tokens.models import ZohoToken

        self.db = db
        meta = ZohoToken._meta
        self.table = meta.db_table
        self.columns = ", ".join(f.column for f in meta.concrete_fields)
        p = "?" if db == "sqlite" else "%s"
        self.p = p
        if db == "sqlite":
            import sqlite3

            # Reads in autocommit; writes in Python's default transaction handling
            # (implicit BEGIN before the UPDATE, durable COMMIT with synchronous=FULL).
            self.read = sqlite3.connect(sqlite_path, isolation_level=None)
            self.write = sqlite3.connect(sqlite_path)
            self.driver = f"sqlite3 {sqlite3.sqlite_version}"
        elif db == "postgresql":
            import psycopg

            self.read = psycopg.connect(dbname=common.BENCH_DB_NAME, autocommit=True, **common.PG)
            self.write = psycopg.connect(dbname=common.BENCH_DB_NAME, autocommit=False, **common.PG)
            self.driver = f"psycopg {psycopg.__version__} (server-side binding, auto-prepare)"
        else:
            import MySQLdb

            self.read = MySQLdb.connect(**_mysqldb_args(common.BENCH_DB_NAME))
            self.read.autocommit(True)
            self.write = MySQLdb.connect(**_mysqldb_args(common.BENCH_DB_NAME))
            self.write.autocommit(False)
            self.driver = f"mysqlclient (MySQLdb) {'.'.join(map(str, MySQLdb.version_info[:3]))}"
        self.read_cursor = self.read.cursor()
        self.write_cursor = self.write.cursor()

    def select_by(self, column: str) -> Callable[[Any], Any]:
        sql = f"SELECT {self.columns} FROM {self.table} WHERE {column} = {self.p} AND revoked_at IS NULL"
        cur = self.read_cursor

        def call(value: Any) -> Any:
            cur.execute(sql, (value,))
            return cur.fetchone()

        return call

    def select_all(self) -> Callable[[Any], Any]:
        sql = f"SELECT {self.columns} FROM {self.table} WHERE revoked_at IS NULL ORDER BY id"
        cur = self.read_cursor

        def call(_: Any) -> Any:
            cur.execute(sql)
            return cur.fetchall()

        return call

    def update(self) -> Callable[[Any], Any]:
        p = self.p
        sql = (
            f"UPDATE {self.table} SET access_token = {p}, access_token_digest = {p}, "
            f"expiry_time = {p}, updated_at = {p} WHERE token_id = {p}"
        )
        cur, conn = self.write_cursor, self.write

        def call(params: Any) -> Any:
            cur.execute(sql, params)
            conn.commit()

        return call

    def settings(self) -> dict[str, str]:
        if self.db == "sqlite":
            cur = self.read.cursor()
            journal = cur.execute("PRAGMA journal_mode").fetchone()[0]
            sync = cur.execute("PRAGMA synchronous").fetchone()[0]
            return {"journal_mode": str(journal), "synchronous": str(sync)}
        if self.db == "postgresql":
            cur = self.read.cursor()
            cur.execute("SHOW synchronous_commit")
            sync = cur.fetchone()[0]
            cur.execute("SHOW fsync")
            return {"synchronous_commit": sync, "fsync": cur.fetchone()[0]}
        cur = self.read.cursor()
        cur.execute("SELECT @@innodb_flush_log_at_trx_commit, @@version")
        flush, version = cur.fetchone()
        return {"innodb_flush_log_at_trx_commit": str(flush), "version": version}

    def close(self) -> None:
        for conn in (self.read, self.write):
            with contextlib.suppress(Exception):
                conn.close()


def django_sqlite_pragmas() -> dict[str, str]:
    from django.db import connection

    with connection.cursor() as cur:
        cur.execute("PRAGMA journal_mode")
        journal = cur.fetchone()[0]
        cur.execute("PRAGMA synchronous")
        sync = cur.fetchone()[0]
    return {"django_journal_mode": str(journal), "django_synchronous": str(sync)}


# --- the SDK's DBStore (MariaDB only) ----------------------------------------------------

DBSTORE_TABLE = "oauthtoken"
# The table exactly as the SDK's README creates it (no index but the primary key).
DBSTORE_DDL = f"""CREATE TABLE {DBSTORE_TABLE} (
  id varchar(10) NOT NULL,
  user_name varchar(255),
  client_id varchar(255),
  client_secret varchar(255),
  refresh_token varchar(255),
  access_token varchar(255),
  grant_token varchar(255),
  expiry_time varchar(20),
  redirect_url varchar(255),
  api_domain varchar(255),
  primary key (id)
)"""


def sdk_id_of(row: Row) -> str:
    return str(row.number + 1)  # the SDK's stores number their rows 1, 2, 3...


def sdk_store_record(row: Row) -> tuple[str, ...]:
    """A row as the SDK's own stores keep it (FileStore's CSV, DBStore's table), in their column order."""
    return (
        sdk_id_of(row),
        row.user_name,
        CLIENT_ID,
        CLIENT_SECRET,
        row.refresh_token,
        row.access_token,
        row.grant_token,
        str(row.expiry_time),
        REDIRECT_URL,
        API_DOMAIN,
    )


def load_dbstore(rows: Sequence[Row]) -> float:
    import MySQLdb

    start = time.perf_counter()
    conn = MySQLdb.connect(**_mysqldb_args(common.BENCH_DB_NAME))
    try:
        cur = conn.cursor()
        cur.execute(DBSTORE_DDL)
        sql = f"INSERT INTO {DBSTORE_TABLE} VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s)"
        for offset in range(0, len(rows), 5000):
            cur.executemany(
                sql,
                [sdk_store_record(r) for r in rows[offset : offset + 5000]],
            )
        conn.commit()
        cur.execute(f"ANALYZE TABLE {DBSTORE_TABLE}")
        cur.fetchall()
    finally:
        conn.close()
    return time.perf_counter() - start


def make_dbstore() -> Any:
    from zohocrmsdk.src.com.zoho.api.authenticator.store.db_store import DBStore

    return DBStore(
        host=common.MYSQL["host"],
        database_name=common.BENCH_DB_NAME,
        user_name=common.MYSQL["user"],
        password=common.MYSQL["password"],
        port_number=str(common.MYSQL["port"]),
        table_name=DBSTORE_TABLE,
    )


# --- the cases ----------------------------------------------------------------------------


def cycle(items: Sequence[Any], n: int) -> Iterator[Any]:
    for i in range(n):
        yield items[i % len(items)]


def sdk_token_cases(
    store: Any,
    label: str,
    db: str,
    rows_count: int,
    lookup: Sequence[Row],
    update: Sequence[Row],
    id_of: Callable[[Row], str],
    counter: common.Counter,
    get_tokens_repeats: int,
) -> list[Case]:
    """The six measured operations of any ``TokenStore``, called as the SDK calls them."""
    from zohocrmsdk.src.com.zoho.api.authenticator.oauth_token import OAuthToken
    from zohocrmsdk.src.com.zoho.crm.api.user_signature import UserSignature

    def result(op: str) -> Result:
        return Result(store=label, db=db, rows=rows_count, op=op)

    def by_name(n: int) -> list[Any]:
        return [OAuthToken(user_signature=UserSignature(r.user_name)) for r in cycle(lookup, n)]

    def by_refresh(n: int) -> list[Any]:
        return [
            OAuthToken(client_id=CLIENT_ID, client_secret=CLIENT_SECRET, refresh_token=r.refresh_token)
            for r in cycle(lookup, n)
        ]

    def by_access(n: int) -> list[Any]:
        return [OAuthToken(access_token=r.access_token) for r in cycle(lookup, n)]

    def by_id(n: int) -> list[Any]:
        return [id_of(r) for r in cycle(lookup, n)]

    def refreshed(n: int) -> list[Any]:
        # What the SDK holds after a refresh: the full token, a new access token, a later expiry.
        tokens = []
        for r in cycle(update, n):
            token = OAuthToken(
                client_id=CLIENT_ID,
                client_secret=CLIENT_SECRET,
                grant_token=r.grant_token,
                refresh_token=r.refresh_token,
                redirect_url=REDIRECT_URL,
                id=id_of(r),
                access_token=counter.next_access_token(),
                user_signature=UserSignature(r.user_name),
                api_domain=API_DOMAIN,
            )
            token.set_expires_in(counter.next_expiry())
            tokens.append(token)
        return tokens

    def check_found(token: Any) -> Any:
        found = store.find_token(token)
        if found is None or found.get_refresh_token() is None or found.get_id() is None:
            raise AssertionError(f"{label}: find_token found nothing")
        return found

    get_tokens = Case(result("get_tokens"), lambda n: [None] * n, lambda _: store.get_tokens())
    get_tokens.max_repeats = get_tokens_repeats
    get_tokens.min_calls = 1
    return [
        Case(result("find_token(user name)"), by_name, store.find_token, check=check_found),
        Case(result("find_token(refresh token)"), by_refresh, store.find_token, check=check_found),
        Case(result("find_token(access token)"), by_access, store.find_token, check=check_found),
        Case(
            result("find_token_by_id"),
            by_id,
            store.find_token_by_id,
            check=lambda i: _check_by_id(store.find_token_by_id(i), label),
        ),
        Case(result("save_token(update)"), refreshed, store.save_token, duration_factor=2),
        get_tokens,
    ]


def _check_by_id(token: Any, label: str) -> Any:
    if token is None or token.get_access_token() is None or token.get_user_signature() is None:
        raise AssertionError(f"{label}: find_token_by_id returned an incomplete token")
    return token


def raw_cases(
    raw: Raw,
    db: str,
    rows_count: int,
    lookup: Sequence[Row],
    update: Sequence[Row],
    counter: common.Counter,
    get_tokens_repeats: int,
) -> list[Case]:
    from django.utils import timezone

    from zoho_tokens.models import ZohoToken

    meta = ZohoToken._meta
    name_digest = meta.get_field("user_name_digest").digest_of  # type: ignore[union-attr]
    refresh_digest = meta.get_field("refresh_token_digest").digest_of  # type: ignore[union-attr]
    access_digest = meta.get_field("access_token_digest").digest_of  # type: ignore[union-attr]
    encrypt = meta.get_field("access_token").encrypt  # type: ignore[union-attr]
    names = [name_digest(r.user_name) for r in lookup]
    refreshes = [refresh_digest(r.refresh_token) for r in lookup]
    accesses = [access_digest(r.access_token) for r in lookup]
    ids = [token_id_of(r) for r in lookup]
    label = f"raw {db}"

    def result(op: str) -> Result:
        return Result(store=label, db=db, rows=rows_count, op=op)

    def updates(n: int) -> list[Any]:
        now = timezone.now()
        if db == "sqlite":
            now = now.isoformat(" ")  # type: ignore[assignment]
        out = []
        for r in cycle(update, n):
            # Real ciphertexts and digests, made here, untimed: the floor is the database's cost.
            plain = counter.next_access_token()
            out.append(
                (
                    encrypt(plain, token_id_of(r)),
                    access_digest(plain),
                    int(counter.next_expiry()),
                    now,
                    token_id_of(r),
                )
            )
        return out

    def check_row(row: Any) -> Any:
        if row is None:
            raise AssertionError(f"{label}: the raw query found nothing")
        return row

    select_name, select_refresh = raw.select_by("user_name_digest"), raw.select_by("refresh_token_digest")
    select_access, select_id = raw.select_by("access_token_digest"), raw.select_by("token_id")
    get_tokens = Case(result("get_tokens"), lambda n: [None] * n, raw.select_all())
    get_tokens.max_repeats = get_tokens_repeats
    get_tokens.min_calls = 1
    return [
        Case(
            result("find_token(user name)"),
            lambda n: list(cycle(names, n)),
            select_name,
            check=lambda v: check_row(select_name(v)),
        ),
        Case(
            result("find_token(refresh token)"),
            lambda n: list(cycle(refreshes, n)),
            select_refresh,
            check=lambda v: check_row(select_refresh(v)),
        ),
        Case(
            result("find_token(access token)"),
            lambda n: list(cycle(accesses, n)),
            select_access,
            check=lambda v: check_row(select_access(v)),
        ),
        Case(
            result("find_token_by_id"),
            lambda n: list(cycle(ids, n)),
            select_id,
            check=lambda v: check_row(select_id(v)),
        ),
        Case(result("save_token(update)"), updates, raw.update(), duration_factor=2),
        get_tokens,
    ]


# --- memory --------------------------------------------------------------------------------


ITER_LIMIT = 20_000


def memory(store: Any, label: str, db: str, rows_count: int, streamed: bool, listed: bool) -> dict[str, Any]:
    """tracemalloc peaks.

    ``iter_tokens()`` is walked over its first ``ITER_LIMIT`` tokens (all of them on smaller
    tables): 40 chunks is well past the steady state of a stream, and a driver that buffers
    the whole result (mysqlclient) has done so before the first token comes out. Tracing is
    about 4x slower, so ``get_tokens()`` (the SDK's list, linear by definition) is traced on
    small tables only unless asked."""
    out: dict[str, Any] = {"store": label, "db": db, "rows": rows_count}
    if streamed:
        walked = min(rows_count, ITER_LIMIT)
        out["iter_tokens"] = common.peak_memory(lambda: common.consume(store.iter_tokens(), walked))
        out["iter_tokens"]["tokens"] = walked
    if listed:
        out["get_tokens"] = common.peak_memory(store.get_tokens)
    return out


# --- main -----------------------------------------------------------------------------------


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--db", choices=DBS, required=True)
    parser.add_argument("--rows", type=int, required=True)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--duration", type=float, default=0.25, help="seconds per repeat of one operation")
    parser.add_argument("--get-tokens-repeats", type=int, default=None)
    parser.add_argument("--sample", type=int, default=1000, help="distinct tokens looked up")
    parser.add_argument("--no-dbstore", action="store_true", help="skip the SDK's DBStore (MariaDB)")
    parser.add_argument("--no-memory", action="store_true")
    parser.add_argument(
        "--list-memory-max-rows",
        type=int,
        default=10_000,
        help="trace get_tokens() (the list) only up to this many rows; iter_tokens() always",
    )
    parser.add_argument("--cache-dir", help="where encrypted rows are shared between processes")
    parser.add_argument("--out", required=True)
    return parser.parse_args(argv)


@contextlib.contextmanager
def environment(db: str) -> Iterator[str]:
    """Creates the benchmark database (or SQLite file) and always removes it afterwards."""
    tmpdir = tempfile.mkdtemp(prefix="zoho_tokens_bench_")
    sqlite_path = os.path.join(tmpdir, "bench.sqlite3")
    create_server_database(db)
    try:
        yield sqlite_path
    finally:
        with contextlib.suppress(Exception):
            from django.db import connections

            connections.close_all()
        with contextlib.suppress(Exception):
            drop_server_database(db)
        shutil.rmtree(tmpdir, ignore_errors=True)


class DjangoCursorStore:
    """The same store with ``ZOHO_TOKENS_DJANGO_CURSOR`` on, measured beside it in one run.

    Each call sets the remembered setting and puts it back: ``override_settings`` per call
    would cost more than the difference being measured.
    """

    def __init__(self, store: Any) -> None:
        self._store = store

    def __getattr__(self, name: str) -> Any:
        from zoho_tokens.conf import app_settings

        method = getattr(self._store, name)
        remembered = app_settings._values

        def call(*args: Any, **kwargs: Any) -> Any:
            remembered["ZOHO_TOKENS_DJANGO_CURSOR"] = True
            try:
                return method(*args, **kwargs)
            finally:
                remembered["ZOHO_TOKENS_DJANGO_CURSOR"] = False

        return call


def prepare(
    db: str, rows_count: int, sqlite_path: str, sample_size: int, cache_dir: str | None = None
) -> dict[str, Any]:
    """Django set up, table migrated and loaded; returns the pieces the cases need."""
    configure_django(db, sqlite_path)
    from django.core.management import call_command

    call_command("migrate", "zoho_tokens", verbosity=0)
    rows = common.make_rows(rows_count)
    encrypting, inserting = load_rows(rows, cache_dir)
    seconds = encrypting + inserting
    log(f"[{db} {rows_count}] rows encrypted in {encrypting:.1f}s, inserted in {inserting:.1f}s")
    picked = common.sample(rows, 2 * sample_size)
    half = max(1, len(picked) // 2)
    # Updates change access tokens: they get their own rows so lookups by access token still match.
    return {
        "rows": rows,
        "lookup": picked[:half],
        "update": picked[half:] or picked[:1],
        "load_seconds": seconds,
    }


def main(argv: Sequence[str] | None = None) -> None:
    args = parse_args(argv)
    db, rows_count = args.db, args.rows
    settings = common.Settings(repeats=args.repeats, duration=args.duration)
    get_tokens_repeats = args.get_tokens_repeats or (args.repeats if rows_count <= 10_000 else 2)
    started = time.perf_counter()
    payload: dict[str, Any] = {"db": db, "rows": rows_count, "loadavg_start": os.getloadavg()}
    with environment(db) as sqlite_path:
        data = prepare(db, rows_count, sqlite_path, args.sample, args.cache_dir)
        from zoho_tokens.store import DjangoTokenStore

        store = DjangoTokenStore()
        raw = Raw(db, sqlite_path)
        payload["driver"] = raw.driver
        payload["db_settings"] = raw.settings()
        if db == "sqlite":
            payload["db_settings"].update(django_sqlite_pragmas())
        payload["load_seconds"] = data["load_seconds"]
        counter = common.Counter()

        def store_cases(measured: Any, label: str, id_of: Callable[[Row], str]) -> list[Case]:
            return sdk_token_cases(
                measured,
                label,
                db,
                rows_count,
                data["lookup"],
                data["update"],
                id_of,
                counter,
                get_tokens_repeats,
            )

        cases = store_cases(store, "DjangoTokenStore", token_id_of)
        cases += [
            case
            for case in store_cases(DjangoCursorStore(store), common.DJANGO_CURSOR_STORE, token_id_of)
            if case.result.op in common.DJANGO_CURSOR_OPERATIONS
        ]
        cases += raw_cases(raw, db, rows_count, data["lookup"], data["update"], counter, get_tokens_repeats)
        dbstore = None
        if db == "mysql" and not args.no_dbstore:
            payload["dbstore_load_seconds"] = load_dbstore(data["rows"])
            dbstore = make_dbstore()
            cases += store_cases(dbstore, "SDK DBStore", sdk_id_of)
        for case in cases:
            case.verify()
        log(f"[{db} {rows_count}] timing {len(cases)} cases x {args.repeats} rounds")
        common.run_interleaved(cases, settings, log)
        payload["results"] = [case.result.as_dict() for case in cases]
        if not args.no_memory:
            log(f"[{db} {rows_count}] peak memory (tracemalloc)")
            listed = rows_count <= args.list_memory_max_rows
            payload["memory"] = [memory(store, "DjangoTokenStore", db, rows_count, True, listed)]
            if dbstore is not None:
                payload["memory"].append(memory(dbstore, "SDK DBStore", db, rows_count, False, listed))
        raw.close()
    payload["seconds"] = time.perf_counter() - started
    payload["loadavg_end"] = os.getloadavg()
    common.emit(args.out, payload)
    log(f"[{db} {rows_count}] done in {payload['seconds']:.0f}s")


if __name__ == "__main__":
    main()
