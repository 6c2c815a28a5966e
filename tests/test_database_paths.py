"""How the store reaches the database: statements compiled once through public API, the
refresh path's single locked read and narrow write, the Django-cursor setting, and
settings read live."""

import pytest
from django.core import checks
from django.db import connection
from django.db.backends import utils as backend_utils
from django.test import override_settings
from django.test.utils import CaptureQueriesContext

from zoho_tokens.conf import app_settings
from zoho_tokens.db import CompiledQuery, compile_query
from zoho_tokens.models import ZohoToken


def test_compile_query_captures_the_orms_statement_without_running_it(token_factory):
    rows = [token_factory(), token_factory()]
    queryset = ZohoToken.objects.filter(token_id=rows[1].token_id).values_list("pk", "token_id")

    sql, params = compile_query(queryset)

    assert sql.lstrip().upper().startswith("SELECT")
    assert params == [rows[1].token_id]
    # Run as compiled, it answers what the ORM answers: if Django stops passing the
    # statement through execute_wrapper, or changes its shape, this fails.
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        assert list(cursor.fetchall()) == list(queryset)


def test_compile_query_never_runs_the_statement(db):
    # The database would refuse this statement: compiling it must not send it.
    queryset = ZohoToken.objects.extra(where=["zoho_tokens_no_such_function() = 1"]).values_list("pk")

    sql, _ = compile_query(queryset)

    assert "zoho_tokens_no_such_function" in sql


def test_a_compiled_query_runs_again_with_new_values(token_factory):
    rows = [token_factory() for _ in range(3)]
    marker = "\x00marker\x00"
    compiled = CompiledQuery(ZohoToken.objects.filter(token_id=marker).values_list("pk"), [marker])

    for row in rows:
        assert compiled.run([row.token_id], lambda cursor: list(cursor.fetchall())) == [(row.pk,)]
    assert compiled.run(["nosuch"], lambda cursor: list(cursor.fetchall())) == []


@pytest.fixture
def cursor_wrapper_calls(monkeypatch):
    """Statements seen by a patch of Django's CursorWrapper, as APM agents install one."""
    seen: list[str] = []
    original = backend_utils.CursorWrapper.execute

    def execute(self, sql, params=None):
        seen.append(sql)
        return original(self, sql, params)

    monkeypatch.setattr(backend_utils.CursorWrapper, "execute", execute)
    return seen


def test_lookups_bypass_djangos_cursor_wrapper_by_default(store, token_factory, cursor_wrapper_calls):
    row = token_factory()
    store.find_token_by_id(row.token_id)  # compiles, through Django's cursor, once
    cursor_wrapper_calls.clear()

    assert store.find_token_by_id(row.token_id).get_refresh_token() == row.refresh_token
    # mysqlclient's cursor gains nothing from bypassing Django's: it is used as it is.
    assert len(cursor_wrapper_calls) == (1 if connection.vendor == "mysql" else 0)


def test_the_django_cursor_setting_shows_every_lookup_to_the_cursor_wrapper(
    store, token_factory, cursor_wrapper_calls, settings
):
    row = token_factory()
    store.find_token_by_id(row.token_id)
    store.get_tokens()  # both statements compiled
    settings.ZOHO_TOKENS_DJANGO_CURSOR = True
    cursor_wrapper_calls.clear()

    assert store.find_token_by_id(row.token_id).get_refresh_token() == row.refresh_token
    assert store.get_tokens()[0].get_id() == row.token_id
    assert len(cursor_wrapper_calls) == 3  # the lookup, and two pages (the second finds the end)
    assert all(ZohoToken._meta.db_table in sql for sql in cursor_wrapper_calls)


def test_a_refresh_is_the_lookup_a_claim_and_one_write_of_what_changed(store, tokens_zoho_knows, fake_zoho):
    (row,) = tokens_zoho_knows("ann", expiring=True)
    table = ZohoToken._meta.db_table

    with CaptureQueriesContext(connection) as captured:
        token = store.find_token_by_id(row.token_id)

    statements = [query["sql"] for query in captured.captured_queries if table in query["sql"]]
    assert token.get_access_token() != row.access_token
    assert fake_zoho.count("refresh_token") == 1
    verbs = [sql.split()[0].upper() for sql in statements]
    # The lookup, the claim, the answer: no other read of the row, no lock held meanwhile.
    assert verbs == ["SELECT", "UPDATE", "UPDATE"], statements
    assert "FOR UPDATE" not in " ".join(statements).upper()
    update = statements[2]
    quote = connection.ops.quote_name
    for unchanged in ("client_secret", "refresh_token", "grant_token", "client_id", "user_name"):
        assert f"{quote(unchanged)} =" not in update
    for changed in ("access_token", "access_token_digest", "expiry_time", "last_refreshed_at"):
        assert f"{quote(changed)} =" in update


def test_settings_are_remembered_until_django_says_they_changed(settings):
    assert app_settings.REFRESH_MARGIN == 60
    settings.ZOHO_TOKENS_REFRESH_MARGIN = 5
    assert app_settings.REFRESH_MARGIN == 5
    with override_settings(ZOHO_TOKENS_REFRESH_MARGIN=7):
        assert app_settings.REFRESH_MARGIN == 7
    assert app_settings.REFRESH_MARGIN == 5


@pytest.mark.parametrize(
    ("engine", "options", "warned"),
    [
        ("django.db.backends.sqlite3", {}, True),
        ("django.db.backends.sqlite3", {"transaction_mode": "DEFERRED"}, True),
        ("django.db.backends.sqlite3", {"transaction_mode": "IMMEDIATE"}, False),
        ("django.db.backends.sqlite3", {"transaction_mode": "immediate"}, False),
        ("django.db.backends.postgresql", {}, False),
    ],
)
def test_w002_asks_sqlite_for_immediate_transactions(settings, engine, options, warned):
    databases = {**settings.DATABASES, "tokens": {"ENGINE": engine, "NAME": "x", "OPTIONS": options}}
    with pytest.warns(UserWarning, match="DATABASES"):
        settings.DATABASES = databases
    settings.ZOHO_TOKENS_DATABASE = "tokens"

    ids = [message.id for message in checks.run_checks() if message.id.startswith("zoho_tokens.")]

    assert ("zoho_tokens.W002" in ids) is warned


@pytest.mark.parametrize(("atomic_requests", "warned"), [(True, True), (False, False)])
def test_w006_warns_when_requests_wrap_the_stores_writes(settings, atomic_requests, warned):
    tokens = {**settings.DATABASES["default"], "ATOMIC_REQUESTS": atomic_requests}
    with pytest.warns(UserWarning, match="DATABASES"):
        settings.DATABASES = {**settings.DATABASES, "tokens": tokens}
    settings.ZOHO_TOKENS_DATABASE = "tokens"

    messages = [message for message in checks.run_checks() if message.id == "zoho_tokens.W006"]

    assert bool(messages) is warned
    if warned:
        assert '"tokens"' in messages[0].msg and "ZOHO_TOKENS_DATABASE" in messages[0].hint
