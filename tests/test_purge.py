"""zoho_purge_tokens, as cron runs it: what it deletes and never deletes, exact output and exit
status, batches, the lease that keeps two runs apart, the index behind each criterion."""

import itertools
import json
import logging
import math
import multiprocessing
import time
import tracemalloc
from datetime import timedelta

import pytest
from django.db import OperationalError, connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from tests.helpers import command, manage, now_ms, purge_workers, raw_rows
from tests.helpers.bulk import bulk_tokens
from zoho_tokens import services
from zoho_tokens.models import Lease, ZohoToken
from zoho_tokens.services.purge import CATEGORIES, LEASE_NAME, PurgeCutoffs, purge_criteria

DAY_MS = 86_400_000


def purge(*args: str) -> tuple[int, str, str]:
    return command("zoho_purge_tokens", *args)


def days_ago(days: float):
    return timezone.now() - timedelta(days=days)


def remaining() -> set[str]:
    return set(ZohoToken.objects.values_list("token_id", flat=True))


def table_state() -> list[dict]:
    return raw_rows()


@pytest.fixture
def aged_rows(token_factory):
    return {
        "active": token_factory(),
        "idle_for_months": token_factory(expiry_time=now_ms() - 90 * DAY_MS),  # refreshable: kept
        "revoked_long_ago": token_factory(revoked_at=days_ago(40)),
        "revoked_recently": token_factory(revoked_at=days_ago(2)),
        "reauth_long_ago": token_factory(needs_reauthorization_at=days_ago(31)),
        "reauth_recently": token_factory(needs_reauthorization_at=days_ago(1)),
        "no_refresh_expired_long_ago": token_factory(refresh_token=None, expiry_time=now_ms() - 2 * DAY_MS),
        "no_refresh_expired_recently": token_factory(refresh_token=None, expiry_time=now_ms() - 3_600_000),
        "old_grant": token_factory(grant_only=True, written_days_ago=2),
        "new_grant": token_factory(grant_only=True),
    }


KEPT_BY_DEFAULT = {
    "active",
    "idle_for_months",
    "revoked_recently",
    "reauth_recently",
    "no_refresh_expired_recently",
    "new_grant",
}
DEFAULT_SUMMARY = (
    "1 revoked, 1 needing re-authorisation, 1 expired without a refresh token, 1 with only a grant token"
)


# --- what is deleted --------------------------------------------------------------------


def test_purge_deletes_what_can_never_be_used_again(aged_rows):
    assert purge() == (0, f"Deleted 4 tokens ({DEFAULT_SUMMARY}).\n", "")
    assert remaining() == {aged_rows[name].token_id for name in KEPT_BY_DEFAULT}


def test_purge_dry_run_counts_the_same_and_changes_nothing(aged_rows):
    before = table_state()

    assert purge("--dry-run") == (0, f"Would delete 4 tokens ({DEFAULT_SUMMARY}).\n", "")
    assert table_state() == before
    assert not Lease.objects.exists()  # a dry run takes no lease either


def test_the_cutoffs_are_options(aged_rows):
    status, out, _ = purge("--revoked-days", "0", "--reauthorization-days", "100", "--expired-days", "0")

    assert (status, out) == (
        0,
        "Deleted 5 tokens (2 revoked, 0 needing re-authorisation, 2 expired without a refresh token, "
        "1 with only a grant token).\n",
    )
    assert aged_rows["reauth_long_ago"].token_id in remaining()
    assert aged_rows["no_refresh_expired_recently"].token_id not in remaining()


def test_nothing_to_delete_has_its_own_exit_status(token_factory):
    token_factory()

    assert purge() == (3, "Nothing to delete.\n", "")
    assert purge("--dry-run") == (3, "Nothing to delete.\n", "")
    assert ZohoToken.objects.count() == 1


def test_singular_and_quiet(token_factory):
    token_factory(revoked_at=days_ago(90))

    assert purge("--dry-run") == (
        0,
        "Would delete 1 token (1 revoked, 0 needing re-authorisation, 0 expired without a refresh "
        "token, 0 with only a grant token).\n",
        "",
    )
    assert purge("--verbosity", "0") == (0, "", "")
    assert ZohoToken.objects.count() == 0
    assert purge("--verbosity", "0") == (3, "", "")


def test_verbosity_2_shows_each_batch(token_factory):
    token_factory.create_batch(3, revoked_at=days_ago(40))
    token_factory(refresh_token=None, expiry_time=now_ms() - 5 * DAY_MS)

    status, out, _ = purge("--batch-size", "2", "-v", "2")

    assert (status, out) == (
        0,
        "Batch: deleted 2 revoked.\n"
        "Batch: deleted 1 revoked.\n"
        "Batch: deleted 1 expired without a refresh token.\n"
        "Deleted 4 tokens (3 revoked, 0 needing re-authorisation, 1 expired without a refresh token, "
        "0 with only a grant token).\n",
    )


def test_json_for_monitoring(aged_rows):
    counts = {"revoked": 1, "needing_reauthorization": 1, "expired": 1, "unexchanged_grant": 1}

    status, out, err = purge("--json", "--dry-run")
    assert (status, err) == (0, "")
    assert json.loads(out) == {"status": "ok", "dry_run": True, "total": 4, "counts": counts, "batches": 0}

    status, out, _ = purge("--json", "--verbosity", "0")
    assert status == 0
    assert json.loads(out) == {"status": "ok", "dry_run": False, "total": 4, "counts": counts, "batches": 4}

    status, out, _ = purge("--json")
    assert status == 3
    assert json.loads(out) == {
        "status": "nothing_to_delete",
        "dry_run": False,
        "total": 0,
        "counts": dict.fromkeys(counts, 0),
        "batches": 0,
    }


def test_a_row_that_changes_between_pick_and_delete_is_kept(token_factory):
    """Each batch deletes only rows that still meet the criterion when it deletes them."""
    rows = token_factory.create_batch(3, needs_reauthorization_at=days_ago(40))
    reauthorised = rows[1]
    deletes = []

    def user_consents_again_before_the_delete(execute, sql, params, many, context):
        if sql.startswith("DELETE") and not deletes:
            deletes.append(sql)
            ZohoToken.objects.filter(pk=reauthorised.pk).update(needs_reauthorization_at=None)
        return execute(sql, params, many, context)

    with connection.execute_wrapper(user_consents_again_before_the_delete):
        status, out, _ = purge("--batch-size", "10")

    assert deletes  # the batch picked the row before it changed
    assert (status, out) == (
        0,
        "Deleted 2 tokens (0 revoked, 2 needing re-authorisation, 0 expired without a refresh token, "
        "0 with only a grant token).\n",
    )
    assert remaining() == {reauthorised.token_id}


# --- never a refreshable token: every combination of states ----------------------------------

REVOKED = (None, 2, 40)  # days ago
REAUTH = (None, 2, 40)
HAS = (False, True)
EXPIRY = (None, 3_600_000, -2 * 3_600_000, -3 * DAY_MS)  # ms from now
WRITTEN = (0, 3)  # days ago


def test_no_combination_of_states_loses_a_refreshable_token(db):
    """Every combination of revocation, re-authorisation, the three tokens, expiry and age,
    purged with the default cutoffs: a row with a refresh token that is neither revoked nor
    waiting for re-authorisation always survives, and exactly the documented rows go."""
    now = now_ms()
    states = list(itertools.product(REVOKED, REAUTH, HAS, HAS, HAS, EXPIRY, WRITTEN))
    rows = [
        ZohoToken(
            token_id=f"state-{n}",
            client_id="1000.CLIENT",
            client_secret="secret",
            revoked_at=days_ago(revoked) if revoked else None,
            needs_reauthorization_at=days_ago(reauth) if reauth else None,
            refresh_token=f"1000.refresh-{n}.r" if refresh else None,
            access_token=f"1000.access-{n}.a" if access else None,
            grant_token=f"1000.grant-{n}.g" if grant else None,
            expiry_time=None if expiry is None else now + expiry,
        )
        for n, (revoked, reauth, refresh, access, grant, expiry, _) in enumerate(states)
    ]
    ZohoToken.objects.bulk_create(rows)
    for written in WRITTEN[1:]:
        aged = [f"state-{n}" for n, state in enumerate(states) if state[-1] == written]
        ZohoToken.objects.filter(token_id__in=aged).update(updated_at=days_ago(written))

    services.purge(PurgeCutoffs.days_ago(), batch_size=37)

    survivors = remaining()
    for n, (revoked, reauth, refresh, access, grant, expiry, written) in enumerate(states):
        refreshable = refresh and not revoked and not reauth
        if refreshable:
            assert f"state-{n}" in survivors, states[n]
        expected_gone = (
            revoked == 40
            or (not revoked and reauth == 40)
            or (
                not revoked
                and not reauth
                and not refresh
                and (
                    expiry == EXPIRY[-1]
                    or (expiry is None and not access and grant and written == WRITTEN[-1])
                )
            )
        )
        assert (f"state-{n}" not in survivors) == expected_gone, states[n]


# --- options that cannot be met: one line naming the option, exit status 1, nothing changed ---

BAD_OPTIONS = [
    (
        ["--revoked-days", "99999999999"],
        "--revoked-days: must be a whole number of days from 0 to 36500, not '99999999999'.",
    ),
    (
        ["--reauthorization-days", "1000000"],
        "--reauthorization-days: must be a whole number of days from 0 to 36500, not '1000000'.",
    ),
    (["--expired-days", "-1"], "--expired-days: must be a whole number of days from 0 to 36500, not '-1'."),
    (["--revoked-days", "1.5"], "--revoked-days: must be a whole number of days from 0 to 36500, not '1.5'."),
    (["--revoked-days", "٣"], "--revoked-days: must be a whole number of days from 0 to 36500, not '٣'."),
    (["--batch-size", "0"], "--batch-size: must be a whole number of rows from 1 to 10000, not '0'."),
    (["--batch-size", "many"], "--batch-size: must be a whole number of rows from 1 to 10000, not 'many'."),
    (["--database", "nosuch"], "--database: no database 'nosuch' in DATABASES."),
]


@pytest.mark.parametrize(("argv", "message"), BAD_OPTIONS, ids=str)
def test_an_impossible_option_is_one_line_naming_it(aged_rows, argv, message):
    before = table_state()

    assert purge(*argv) == (1, "", f"CommandError: {message}\n")
    assert table_state() == before


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize(("argv", "message"), [*BAD_OPTIONS[:3], BAD_OPTIONS[-1]], ids=str)
def test_an_impossible_option_on_the_command_line(token_factory, argv, message):
    """As cron runs it: stderr has exactly one line, the exit status is 1."""
    token_factory(revoked_at=days_ago(40))

    assert manage("zoho_purge_tokens", *argv) == (1, "", f"CommandError: {message}\n")
    assert ZohoToken.objects.count() == 1


@pytest.mark.django_db(transaction=True)
def test_exit_statuses_on_the_command_line(token_factory):
    token_factory(revoked_at=days_ago(40))

    assert manage("zoho_purge_tokens", "-v", "0") == (0, "", "")
    assert manage("zoho_purge_tokens", "-v", "0") == (3, "", "")
    status, _, err = manage("zoho_purge_tokens", "--no-such-option")
    assert status == 2
    assert "unrecognized arguments: --no-such-option" in err


# --- failures ---------------------------------------------------------------------------------


def fail_deletes_after(count: int):
    seen = []

    def wrapper(execute, sql, params, many, context):
        if sql.startswith("DELETE") and ZohoToken._meta.db_table in sql:
            seen.append(sql)
            if len(seen) > count:
                raise OperationalError("the disk is full\nDETAIL: no space left")
        return execute(sql, params, many, context)

    return wrapper


def test_a_database_failure_keeps_the_finished_batches_and_says_so(token_factory):
    token_factory.create_batch(3, revoked_at=days_ago(40))

    with connection.execute_wrapper(fail_deletes_after(1)):
        status, out, err = purge("--batch-size", "2")

    assert (status, out) == (1, "")
    assert err == (
        "CommandError: Deleted 2 tokens before the database failed (OperationalError: the disk is full "
        "DETAIL: no space left); run the command again to delete the rest.\n"
    )
    assert ZohoToken.objects.count() == 1
    assert not Lease.objects.exists()  # released: the next run need not wait


def test_a_failure_before_any_delete_and_json(token_factory):
    token_factory(revoked_at=days_ago(40))

    with connection.execute_wrapper(fail_deletes_after(0)):
        status, out, err = purge("--json")

    message = (
        "Nothing was deleted: the database failed (OperationalError: the disk is full DETAIL: no space left)."
    )
    assert (status, err) == (1, f"CommandError: {message}\n")
    assert json.loads(out) == {
        "status": "failed",
        "dry_run": False,
        "total": 0,
        "counts": dict.fromkeys(CATEGORIES, 0),
        "batches": 0,
        "error": message,
    }
    assert ZohoToken.objects.count() == 1


# --- one run at a time ------------------------------------------------------------------------


def test_a_second_run_exits_at_once_while_the_lease_is_held(token_factory):
    token_factory(revoked_at=days_ago(40))
    until = timezone.now() + timedelta(minutes=5)
    Lease.objects.create(name=LEASE_NAME, holder="cron-1:4242:abcd", expires_at=until)

    with CaptureQueriesContext(connection) as queries:
        result = purge()

    assert result == (
        4,
        "",
        f"Another zoho_purge_tokens run holds the lease until {until:%Y-%m-%d %H:%M:%S} UTC; "
        "nothing was deleted.\n",
    )
    # One read of the lease, no token read.
    statements = [query["sql"] for query in queries.captured_queries]
    assert len(statements) == 1
    assert Lease._meta.db_table in statements[0]
    assert ZohoToken.objects.count() == 1
    status, out, _ = purge("--json")
    assert (status, json.loads(out)["status"]) == (4, "busy")
    assert Lease.objects.get().holder == "cron-1:4242:abcd"


def test_a_lease_left_by_a_dead_run_is_taken_over_once_expired(token_factory, caplog):
    token_factory(revoked_at=days_ago(40))
    Lease.objects.create(name=LEASE_NAME, holder="cron-1:4242:abcd", expires_at=timezone.now())

    with caplog.at_level(logging.WARNING, logger="zoho_tokens.leases"):
        status, _, _ = purge()

    assert status == 0
    assert ZohoToken.objects.count() == 0
    assert not Lease.objects.exists()
    assert "Took over the expired lease of zoho_purge_tokens" in caplog.text


def test_a_run_that_loses_its_lease_stops(token_factory):
    token_factory.create_batch(3, revoked_at=days_ago(40))

    def another_run_takes_over(category, deleted):
        Lease.objects.filter(name=LEASE_NAME).update(holder="cron-2:1:ffff")

    with pytest.raises(services.PurgeFailed) as caught:
        services.purge(PurgeCutoffs.days_ago(), batch_size=1, on_batch=another_run_takes_over)

    assert str(caught.value) == (
        "LeaseLost: another run took over zoho_purge_tokens after this run's lease expired"
    )
    assert caught.value.report.counts["revoked"] == 1
    assert ZohoToken.objects.count() == 2
    assert Lease.objects.get().holder == "cron-2:1:ffff"  # the other run's lease is left alone


@pytest.mark.slow
@pytest.mark.django_db(transaction=True)
def test_two_purges_in_processes_at_once_never_both_work():
    """Both start together on a table that takes many batches: one purges, the other
    exits at once with status 4; every row is deleted exactly once, nobody crashes."""
    purgeable = 6000  # 300 batches: longer than the other process takes to start its run
    bulk_tokens(purgeable, revoked_at=days_ago(40))
    bulk_tokens(100, "keep", tokens=("refresh",))
    context = multiprocessing.get_context("spawn")
    barrier = context.Barrier(2)
    results = context.Queue()
    database_name = connection.settings_dict["NAME"]
    processes = [
        context.Process(target=purge_workers.run_purge, args=(database_name, barrier, results, n))
        for n in range(2)
    ]
    for process in processes:
        process.start()
    outcomes = [results.get(timeout=120) for _ in processes]
    for process in processes:
        process.join(timeout=30)

    assert [error for _, _, _, error in outcomes if error] == []
    statuses = sorted(status for _, status, _, _ in outcomes)
    deleted = sum(json.loads(out)["total"] for _, _, out, _ in outcomes)
    if connection.vendor == "sqlite" and statuses == [0, 3]:
        # Both read "no lease" at the same instant; the second then waited for the
        # database's one write lock, which the first took again batch after batch, and got
        # it only once the first had finished: never both at work, nothing left to delete.
        pass
    else:
        assert statuses == [0, 4]
    assert deleted == purgeable
    assert ZohoToken.objects.count() == 100
    assert not Lease.objects.exists()


# --- large tables: batches, queries, memory, indexes ---------------------------------------------


def test_bulk_rows_are_what_the_orm_would_have_stored(db):
    bulk_tokens(3, "grant", tokens=("grant", "refresh"), expiry_time=5)

    row = ZohoToken.objects.get(grant_token="1000.grant-2.g")
    assert (row.token_id, row.refresh_token, row.expiry_time) == ("grant-2", "1000.grant-2.r", 5)
    assert ZohoToken.objects.get(refresh_token="1000.grant-0.r").token_id == "grant-0"
    assert not row.fingerprint_is_stale()
    # Saved again by the ORM, nothing changes but the time of the save.
    before = raw_rows()
    for stored in ZohoToken.objects.all():
        stored.save()
    after = raw_rows()
    for old, new in zip(before, after, strict=True):
        assert {column for column in old if old[column] != new[column]} <= {
            "updated_at",
            "grant_token",  # sealed again: a new nonce
            "refresh_token",
        }


@pytest.mark.slow
@pytest.mark.django_db(transaction=True)  # each batch a real transaction, as in production
def test_fifty_thousand_rows_purge_in_flat_batches(record_property):
    quarter = 12_000
    old_expiry = now_ms() - 5 * DAY_MS
    started = time.perf_counter()
    bulk_tokens(quarter, "rev", revoked_at=days_ago(40))
    bulk_tokens(quarter, "reauth", needs_reauthorization_at=days_ago(40))
    bulk_tokens(quarter, "exp", expiry_time=old_expiry)
    bulk_tokens(quarter, "grant", tokens=("grant",))
    ZohoToken.objects.filter(token_id__startswith="grant-").update(updated_at=days_ago(3))
    bulk_tokens(2000, "keep", tokens=("refresh",), expiry_time=old_expiry)
    assert ZohoToken.objects.count() == 50_000
    loaded = time.perf_counter() - started

    statements = []
    per_batch = []

    def count(execute, sql, params, many, context):
        if not sql.startswith("BEGIN"):  # SQLite's BEGIN IMMEDIATE: the transaction, not a query
            statements.append(1)
        return execute(sql, params, many, context)

    def on_batch(category, deleted):
        per_batch.append(len(statements))
        statements.clear()

    tracemalloc.start()
    started = time.perf_counter()
    with connection.execute_wrapper(count):
        report = services.purge(PurgeCutoffs.days_ago(), batch_size=500, on_batch=on_batch)
    seconds = time.perf_counter() - started
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()

    assert report.counts == dict.fromkeys(CATEGORIES, quarter)
    assert report.batches == 4 * math.ceil(quarter / 500)
    assert ZohoToken.objects.count() == 2000
    # One SELECT of the batch's ids, one DELETE, the lease's renewal; after a kind's last
    # batch, one SELECT finds no more. The first batch also took the lease.
    assert max(per_batch[1:]) <= 4
    assert per_batch[0] <= 5
    # Flat: holding the 48,000 ids at once, or a batch's 500 ids after each batch, would
    # take about 1.7 MiB. What is left are bounded caches (psycopg's prepared-statement
    # counts, CPython's attribute cache).
    assert peak < 1024 * 1024
    for name, value in (("load_s", loaded), ("purge_s", seconds), ("peak_kib", peak / 1024)):
        record_property(name, round(value, 2))
    print(f"\n50,000 rows on {connection.vendor}: purge {seconds:.2f} s, peak {peak / 1024:.0f} KiB")


def index_names(column_lists: list[list[str]]) -> list[str]:
    with connection.cursor() as cursor:
        constraints = connection.introspection.get_constraints(cursor, ZohoToken._meta.db_table)
    return [name for name, info in constraints.items() if info["index"] and info["columns"] in column_lists]


EXPECTED_INDEXES = {
    "revoked": [["revoked_at"]],
    "needing_reauthorization": [["needs_reauthorization_at"], ["revoked_at"]],
    "expired": [["refresh_token_digest", "expiry_time", "updated_at"]],
    # SQLite's planner, without statistics, may take the access token's digest instead.
    "unexchanged_grant": [["refresh_token_digest", "expiry_time", "updated_at"], ["access_token_digest"]],
}


@pytest.mark.parametrize("category", CATEGORIES)
def test_each_criterion_is_served_by_an_index(db, category):
    # A table like a real one: mostly refreshable tokens, a few of each kind to purge.
    bulk_tokens(300, "keep", tokens=("refresh",), expiry_time=now_ms())
    bulk_tokens(3, "rev", revoked_at=days_ago(40))
    bulk_tokens(3, "reauth", needs_reauthorization_at=days_ago(40))
    bulk_tokens(3, "exp", expiry_time=now_ms() - 5 * DAY_MS)
    bulk_tokens(3, "grant", tokens=("grant",))
    criterion = purge_criteria(PurgeCutoffs.days_ago())[category]
    picked = ZohoToken.objects.filter(criterion).order_by().values_list("pk", flat=True)[:500]
    names = index_names(EXPECTED_INDEXES[category])
    assert names

    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute(f"ANALYZE {ZohoToken._meta.db_table}")
            cursor.execute("SET LOCAL enable_seqscan = off")  # a table this small is read whole otherwise
        plan = picked.explain()
        assert "Seq Scan" not in plan
    elif connection.vendor == "mysql":
        plan = json.dumps(json.loads(picked.explain(format="json")))  # possible_keys lists usable indexes
    else:
        plan = picked.explain()
        assert "SEARCH" in plan
        # SQLite names the indexes behind unique constraints its own way; it shows their columns.
        names += [f"({columns[0]}=" for columns in EXPECTED_INDEXES[category]]
    assert any(name in plan for name in names), plan
