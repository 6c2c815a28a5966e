"""zoho_import_tokens: stores filled by the SDK's own FileStore and DBStore, and by the sample
store's schema, imported, then used by the real SDK against the fake Zoho."""

import csv
import os
import sqlite3
import sys

import pytest
from django.conf import settings as django_settings
from django.core.management import call_command
from django.core.management.base import CommandError
from zohocrmsdk.src.com.zoho.api.authenticator.oauth_token import OAuthToken
from zohocrmsdk.src.com.zoho.api.authenticator.store.db_store import DBStore
from zohocrmsdk.src.com.zoho.api.authenticator.store.file_store import FileStore
from zohocrmsdk.src.com.zoho.crm.api.initializer import Initializer

from tests.helpers import (
    ALICE,
    BOB,
    CLIENT_ID,
    CLIENT_SECRET,
    REDIRECT_URL,
    command,
    expire,
    grant_token_login,
    now_ms,
    org_zgid,
    raw_rows,
)
from zoho_tokens.models import ZohoToken
from zoho_tokens.testing.pytest_plugin import reset_zoho_sdk

ALICE_NAME, BOB_NAME = "alice@example.com:10001", "bob@example.com:20002"
HEADER = ",".join(
    [
        "id",
        "user_name",
        "client_id",
        "client_secret",
        "refresh_token",
        "access_token",
        "grant_token",
        "expiry_time",
        "redirect_uri",  # FileStore's name for DBStore's redirect_url
        "api_domain",
    ]
)
# The sample store's table, as Zoho's article creates it.
SAMPLE_DDL = (
    "CREATE TABLE  oauthtoken (id varchar(10) NOT NULL,user_name varchar(255), client_id varchar(255), "
    "client_secret varchar(255), refresh_token varchar(255), access_token varchar(255), grant_token "
    "varchar(255), expiry_time varchar(20), redirect_url varchar(255), api_domain varchar(255), "
    "primary key (id))"
)
# DBStore's table, as the SDK's README creates it.
DBSTORE_DDL = (
    "CREATE TABLE oauthtoken (id varchar(10) NOT NULL, user_name varchar(255), client_id varchar(255), "
    "client_secret varchar(255), refresh_token varchar(255), access_token varchar(255), "
    "grant_token varchar(255), expiry_time varchar(20), redirect_url varchar(255), "
    "api_domain varchar(255), primary key (id))"
)


def import_tokens(*args: str) -> tuple[int, str, str]:
    return command("zoho_import_tokens", *args)


def log_in_through(store, fake_zoho, resource_path, user) -> OAuthToken:
    """A first login with the SDK's own ``store``: the SDK saves the token there."""
    token = grant_token_login(fake_zoho.issue_grant_token(*user))
    Initializer.initialize(
        environment=fake_zoho.environment(), token=token, store=store, resource_path=str(resource_path)
    )
    return token


def table_state() -> list[dict]:
    return raw_rows()


def the_sdk_works_with_the_imported_token(sdk, fake_zoho, token_id: str, zgid: str) -> None:
    """The imported token, expired, through the real SDK and our store: refreshed once, then used."""
    row = ZohoToken.objects.get(token_id=token_id)
    expire(row)
    reset_zoho_sdk()
    sdk(OAuthToken(id=token_id))

    assert org_zgid() == zgid
    assert fake_zoho.refresh_count(row.refresh_token) == 1


# --- FileStore --------------------------------------------------------------------------------


@pytest.fixture
def file_store(fake_zoho, zoho_sdk_reset, tmp_path):
    """A FileStore the SDK filled: Alice and Bob logged in (ids 1 and 2), and a grant token
    saved but never exchanged (id 3)."""
    path = tmp_path / "tokens.csv"
    store = FileStore(str(path))
    log_in_through(store, fake_zoho, tmp_path, ALICE)
    log_in_through(store, fake_zoho, tmp_path, BOB)
    store.save_token(
        OAuthToken(
            client_id=CLIENT_ID,
            client_secret=CLIENT_SECRET,
            grant_token="1000.never-exchanged.g",
            redirect_url=REDIRECT_URL,
        )
    )
    reset_zoho_sdk()
    return path


def secrets_of(path) -> list[str]:
    with open(path, newline="") as handle:
        rows = list(csv.DictReader(handle))
    return [
        row[name] for row in rows for name in ("client_secret", "refresh_token", "access_token") if row[name]
    ]


def test_a_file_store_is_imported_under_its_ids_and_the_sdk_uses_it(file_store, sdk, fake_zoho, db):
    status, out, err = import_tokens("--file-store", str(file_store))

    assert status == 1
    assert out == "Imported 2 tokens; 0 already imported, 1 malformed and 0 conflicting rows skipped.\n"
    assert err == (
        "Skipped line 4 (token id 3), malformed: no refresh token.\n"
        "CommandError: 1 row was skipped (listed above).\n"
    )
    alice = ZohoToken.objects.get(token_id="1")
    with open(file_store, newline="") as handle:
        first = next(csv.DictReader(handle))
    assert (alice.user_name, alice.refresh_token, alice.access_token, alice.client_secret) == (
        ALICE_NAME,
        first["refresh_token"],
        first["access_token"],
        CLIENT_SECRET,
    )
    assert (alice.expiry_time, alice.api_domain, alice.redirect_url) == (
        int(first["expiry_time"]),
        fake_zoho.base_url,
        REDIRECT_URL,
    )
    assert ZohoToken.objects.get(token_id="2").user_name == BOB_NAME
    assert all(secret not in out + err for secret in secrets_of(file_store))

    the_sdk_works_with_the_imported_token(sdk, fake_zoho, "1", "10001")


def test_a_second_import_changes_nothing(file_store, db):
    import_tokens("--file-store", str(file_store))
    before = table_state()

    status, out, _ = import_tokens("--file-store", str(file_store))

    assert (status, out) == (
        1,
        "Imported 0 tokens; 2 already imported, 1 malformed and 0 conflicting rows skipped.\n",
    )
    assert table_state() == before


def test_a_dry_run_counts_the_same_and_stores_nothing(file_store, db):
    status, out, err = import_tokens("--file-store", str(file_store), "--dry-run")

    assert (status, out) == (
        1,
        "Would import 2 tokens; 0 already imported, 1 malformed and 0 conflicting rows skipped.\n",
    )
    assert "Skipped line 4 (token id 3), malformed: no refresh token." in err
    assert ZohoToken.objects.count() == 0


def test_a_user_already_in_the_store_is_a_conflict(file_store, sdk, fake_zoho, db):
    """Bob logged in through this store before the import: his row stays as it is."""
    sdk(grant_token_login(fake_zoho.issue_grant_token(*BOB)))
    bob = ZohoToken.objects.get()
    reset_zoho_sdk()

    status, out, err = import_tokens("--file-store", str(file_store), "-v", "2")

    assert (status, out) == (
        1,
        "Imported token 1.\n"
        "Imported 1 token; 0 already imported, 1 malformed and 1 conflicting rows skipped.\n",
    )
    assert err == (
        f"Skipped line 3 (token id 2, {BOB_NAME}), conflicting: user {BOB_NAME} already has a stored "
        f"token (token id {bob.token_id}).\n"
        "Skipped line 4 (token id 3), malformed: no refresh token.\n"
        "CommandError: 2 rows were skipped (listed above).\n"
    )
    assert ZohoToken.objects.get(pk=bob.pk).refresh_token == bob.refresh_token


def write_csv(path, *lines: str, header: str = HEADER) -> str:
    path.write_text("\n".join([header, *lines]) + "\n")
    return str(path)


def test_malformed_and_conflicting_rows_each_with_their_reason(tmp_path, token_factory):
    stored = token_factory(token_id="40", refresh_token="1000.stored.r")
    future = str(now_ms() + 3_600_000)
    path = write_csv(
        tmp_path / "tokens.csv",
        f"10,a@example.com:1,{CLIENT_ID},{CLIENT_SECRET},1000.r10.r,1000.a10.a,,{future},,",
        f"11,b@example.com:1,{CLIENT_ID},,1000.r11.r,,,,,",
        f"12,c@example.com:1,{CLIENT_ID},{CLIENT_SECRET},1000.r12.r,,,soon,,",
        f",d@example.com:1,{CLIENT_ID},{CLIENT_SECRET},1000.r13.r,,,,,",
        f"14,e@example.com:1,,{CLIENT_SECRET},1000.r14.r,,,,,",
        "15,too,few",
        f"16,a@example.com:1,{CLIENT_ID},{CLIENT_SECRET},1000.r16.r,,,,,",
        f"17,f@example.com:1,{CLIENT_ID},{CLIENT_SECRET},1000.r10.r,,,,,",
        f"40,g@example.com:1,{CLIENT_ID},{CLIENT_SECRET},1000.r40.r,,,,,",
        f"41,h@example.com:1,{CLIENT_ID},{CLIENT_SECRET},1000.stored.r,,,,,",
        f"{'9' * 256},i@example.com:1,{CLIENT_ID},{CLIENT_SECRET},1000.r42.r,,,,,",
    )

    status, out, err = import_tokens("--file-store", path)

    assert (status, out) == (
        1,
        "Imported 1 token; 0 already imported, 6 malformed and 4 conflicting rows skipped.\n",
    )
    assert err.splitlines() == [
        "Skipped line 3 (token id 11, b@example.com:1), malformed: no client secret.",
        "Skipped line 4 (token id 12, c@example.com:1), malformed: expiry_time is not epoch milliseconds.",
        "Skipped line 5 (d@example.com:1), malformed: no id.",
        "Skipped line 6 (token id 14, e@example.com:1), malformed: no client id.",
        "Skipped line 7 (token id 15, too), malformed: 3 values, not 10.",
        "Skipped line 8 (token id 16, a@example.com:1), conflicting: line 2 has the same user.",
        "Skipped line 9 (token id 17, f@example.com:1), conflicting: line 2 has the same refresh token.",
        "Skipped line 10 (token id 40, g@example.com:1), conflicting: token id 40 is already stored for "
        "another token.",
        "Skipped line 11 (token id 41, h@example.com:1), conflicting: its refresh token is already stored "
        "under token id 40.",
        f"Skipped line 12 (token id {'9' * 256}, i@example.com:1), malformed: token id longer than 255 "
        "characters.",
        "CommandError: 10 rows were skipped (listed above).",
    ]
    assert sorted(ZohoToken.objects.values_list("token_id", flat=True)) == ["10", "40"]
    assert ZohoToken.objects.get(token_id="40").refresh_token == stored.refresh_token
    assert "1000.r1" not in out + err


def test_a_file_from_before_the_api_domain_column(tmp_path, db):
    header = HEADER.rsplit(",", 1)[0]
    path = write_csv(
        tmp_path / "old.csv", f"1,a@example.com:1,{CLIENT_ID},{CLIENT_SECRET},1000.r1.r,,,,", header=header
    )

    assert import_tokens("--file-store", path) == (
        0,
        "Imported 1 token; 0 already imported, 0 malformed and 0 conflicting rows skipped.\n",
        "",
    )
    assert ZohoToken.objects.get().api_domain is None


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--file-store", "/no/such/file.csv"], "Cannot read /no/such/file.csv: No such file or directory."),
        (["--sqlite", "/no/such/zohooauth.db"], "Cannot read /no/such/zohooauth.db: no such file."),
        (
            ["--db-store", "postgres://u@h/db"],
            "--db-store: not a URL like mysql://user:password@host:3306/database.",
        ),
        (
            ["--db-store", "mysql://u@h:port/db"],
            "--db-store: not a URL like mysql://user:password@host:3306/database.",
        ),
        (
            ["--db-store", "mysql://u@h", "--table", "x"],
            "--db-store: not a URL like mysql://user:password@host:3306/database.",
        ),
        (
            ["--sqlite", __file__, "--table", "t; DROP"],
            "--table: 't; DROP' is not a table name (letters, digits and _ only).",
        ),
    ],
    ids=str,
)
def test_sources_that_cannot_be_read(db, argv, message):
    status, out, err = import_tokens(*argv)

    assert (status, out) == (1, "")
    assert err == f"CommandError: {message} Nothing more was imported.\n"


def test_a_file_that_is_not_a_file_store(tmp_path, db):
    path = write_csv(tmp_path / "other.csv", "1,2,3", header="a,b,c")

    assert import_tokens("--file-store", path) == (
        1,
        "",
        f"CommandError: {path} is not a FileStore file: its first line is not the SDK's header. "
        "Nothing more was imported.\n",
    )


def test_an_unknown_database_alias(db, tmp_path):
    assert import_tokens("--file-store", write_csv(tmp_path / "t.csv"), "--database", "nosuch") == (
        1,
        "",
        "CommandError: --database: no database 'nosuch' in DATABASES.\n",
    )


def test_one_source_is_required(db):
    with pytest.raises(
        CommandError, match="one of the arguments --file-store --db-store --sqlite is required"
    ):
        call_command("zoho_import_tokens")


# --- Zoho's sample SQLite store ----------------------------------------------------------------


def test_the_sample_sqlite_store_is_imported(tmp_path, sdk, fake_zoho, db):
    path = tmp_path / "zohooauth.db"
    refresh_token = fake_zoho.issue_refresh_token(*ALICE)
    with sqlite3.connect(path) as connection:
        connection.execute(SAMPLE_DDL)
        connection.execute(
            "insert into oauthtoken (id,user_name,client_id,client_secret,refresh_token,access_token,"
            "grant_token,expiry_time,redirect_url,api_domain) values (?,?,?,?,?,?,?,?,?,?);",
            (
                "1",
                ALICE_NAME,
                CLIENT_ID,
                CLIENT_SECRET,
                refresh_token,
                "1000.old.a",
                None,
                str(now_ms() - 1000),
                REDIRECT_URL,
                fake_zoho.base_url,
            ),
        )
        connection.execute("insert into oauthtoken (id) values ('2')")
    connection.close()

    status, out, err = import_tokens("--sqlite", str(path))

    assert (status, out) == (
        1,
        "Imported 1 token; 0 already imported, 1 malformed and 0 conflicting rows skipped.\n",
    )
    assert err.splitlines()[0] == "Skipped row 2 (token id 2), malformed: no refresh token."
    assert refresh_token not in out + err
    the_sdk_works_with_the_imported_token(sdk, fake_zoho, "1", "10001")


# --- DBStore (MariaDB/MySQL) ---------------------------------------------------------------------

MYSQL = {
    "host": os.environ.get("MYSQL_HOST", "127.0.0.1"),
    "port": int(os.environ.get("MYSQL_PORT", "3306")),
    "user": os.environ.get("MYSQL_USER", "root"),
    "password": os.environ.get("MYSQL_PASSWORD", ""),
}


@pytest.fixture
def dbstore_database():
    """A database of its own on the MariaDB server, with DBStore's table; skipped without
    a server, except when the suite runs on MariaDB (the server is there, or it fails)."""
    import mysql.connector

    # Suites on each database may run at once (tox run-parallel), each with its own.
    name = f"{django_settings.TEST_DB_NAME}_{django_settings.DB}_dbstore"
    try:
        server = mysql.connector.connect(**MYSQL, connection_timeout=5)
    except mysql.connector.Error as exc:
        if os.environ.get("ZOHO_TOKENS_TEST_DB") == "mysql":
            raise
        pytest.skip(f"no MariaDB/MySQL server for the SDK's DBStore: {exc}")
    cursor = server.cursor()
    cursor.execute(f"DROP DATABASE IF EXISTS {name}")
    cursor.execute(f"CREATE DATABASE {name} CHARACTER SET utf8mb4")
    cursor.execute(f"USE {name}")
    cursor.execute(DBSTORE_DDL)
    yield name
    cursor.execute(f"DROP DATABASE IF EXISTS {name}")
    server.close()


def db_store_url(name: str, password: str | None = None) -> str:
    password = MYSQL["password"] if password is None else password
    credentials = f"{MYSQL['user']}:{password}" if password else MYSQL["user"]
    return f"mysql://{credentials}@{MYSQL['host']}:{MYSQL['port']}/{name}"


@pytest.mark.parametrize("driver", ["mysql-connector", "mysqlclient"])
def test_a_db_store_is_imported_and_the_sdk_uses_it(
    dbstore_database, driver, fake_zoho, sdk, zoho_sdk_reset, tmp_path, monkeypatch, db
):
    if driver == "mysqlclient":
        pytest.importorskip("MySQLdb")
    store = DBStore(
        host=MYSQL["host"],
        database_name=dbstore_database,
        user_name=MYSQL["user"],
        password=MYSQL["password"],
        port_number=str(MYSQL["port"]),
    )
    log_in_through(store, fake_zoho, tmp_path, ALICE)
    log_in_through(store, fake_zoho, tmp_path, BOB)
    reset_zoho_sdk()
    url = db_store_url(dbstore_database)
    if driver == "mysqlclient":
        monkeypatch.setitem(sys.modules, "mysql.connector", None)  # the import reads with MySQLdb

    assert import_tokens("--db-store", url, "--dry-run")[:2] == (
        0,
        "Would import 2 tokens; 0 already imported, 0 malformed and 0 conflicting rows skipped.\n",
    )
    assert ZohoToken.objects.count() == 0
    assert import_tokens("--db-store", url) == (
        0,
        "Imported 2 tokens; 0 already imported, 0 malformed and 0 conflicting rows skipped.\n",
        "",
    )
    assert import_tokens("--db-store", url)[:2] == (
        0,
        "Imported 0 tokens; 2 already imported, 0 malformed and 0 conflicting rows skipped.\n",
    )
    assert sorted(ZohoToken.objects.values_list("token_id", "user_name")) == [
        ("1", ALICE_NAME),
        ("2", BOB_NAME),
    ]
    the_sdk_works_with_the_imported_token(sdk, fake_zoho, "2", "20002")


def test_a_db_store_that_cannot_be_reached_never_shows_the_password(dbstore_database, db, monkeypatch):
    url = db_store_url(dbstore_database, password="s3cret-password").replace(f":{MYSQL['port']}/", ":1/")

    status, out, err = import_tokens("--db-store", url)

    assert (status, out) == (1, "")
    assert err.startswith(f"CommandError: Cannot connect to mysql://{MYSQL['user']}@{MYSQL['host']}:1/")
    assert "s3cret" not in err


def test_the_password_may_come_from_the_environment(dbstore_database, db, monkeypatch):
    monkeypatch.setenv("ZOHO_TOKENS_IMPORT_PASSWORD", "wrong-password")
    url = db_store_url(dbstore_database, password="")

    status, _, err = import_tokens("--db-store", url, "--table", "no_such_table")

    assert status == 1
    if MYSQL["password"]:
        assert "Access denied" in err
    else:  # the server takes any password for root, or none: the table is what is missing
        assert "Cannot connect" in err or "no_such_table" in err
    assert "wrong-password" not in err
