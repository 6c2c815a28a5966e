"""The store's coordinated refresh across processes, and what happens when things die.

An expired token seen by many workers at once is refreshed once, under a row lock;
a worker killed mid-refresh leaves nothing locked and nothing half-written; a
database connection dropped during a save is a clear error and changes nothing;
and sustained find/save load from several processes never loses the newest token.

Worker processes are started with "spawn" (tests/helpers/refresh_workers.py), kept for
the module's tests (starting one costs a second of CPU) and use the parent's test
database; they reach the fake Zoho only over HTTP. Run with ``-s`` to see the
measured latency of the refresh path.
"""

from __future__ import annotations

import copy
import logging
import multiprocessing
import os
import shutil
import signal
import socket
import sqlite3
import statistics
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import timedelta
from io import StringIO
from pathlib import Path
from typing import Any

import pytest
from django.core.management import call_command
from django.db import DatabaseError, connection, connections
from django.db.backends.base.base import BaseDatabaseWrapper
from django.db.models.signals import post_save
from django.db.utils import load_backend
from django.utils import timezone
from zohocrmsdk.src.com.zoho.api.authenticator.oauth_token import OAuthToken
from zohocrmsdk.src.com.zoho.crm.api.exception import SDKException
from zohocrmsdk.src.com.zoho.crm.api.user_signature import UserSignature

from tests.helpers import (
    CLIENT_ID,
    CLIENT_SECRET,
    expire,
    log_in,
    now_ms,
    org_zgid,
    raw_row,
    refresh_workers,
    signed_token,
)
from zoho_tokens.models import ZohoToken
from zoho_tokens.testing.fake_zoho import FakeZoho
from zoho_tokens.testing.pytest_plugin import reset_zoho_sdk

TABLE = ZohoToken._meta.db_table
SPAWN = multiprocessing.get_context("spawn")
WAIT = refresh_workers.WAIT


def logged_in_row(sdk, fake_zoho: FakeZoho, email: str, zgid: str) -> ZohoToken:
    """A real grant-token login through the SDK; returns the stored row."""
    log_in(sdk, fake_zoho, (email, zgid))
    return ZohoToken.objects.get(user_name=f"{email}:{zgid}")


def authorizations(fake_zoho: FakeZoho, endpoint: str = "org") -> list[str]:
    """The access token each call to ``endpoint`` carried, as the fake received it."""
    prefix = "Zoho-oauthtoken "
    return [call["Authorization"].removeprefix(prefix) for call in fake_zoho.received(endpoint)]


@contextmanager
def started(processes: list[Any]) -> Iterator[None]:
    """Start the processes; on the way out, join them and kill any left hanging."""
    for process in processes:
        process.start()
    try:
        yield
    finally:
        for process in processes:
            process.join(timeout=WAIT)
            if process.is_alive():
                process.kill()
                process.join(timeout=10)


class WorkerPool:
    """Long-lived spawned workers (``refresh_workers.serve``) on the test database.

    ``run`` sends one task to each of the first workers, waits until all their
    threads wait for ``go``, calls ``before_go``, sets ``go`` and returns each
    worker's ``(reports, errors)``. A pool that failed a run is discarded: the
    fixture starts a new one for the next test.
    """

    def __init__(self, database_name: str, size: int) -> None:
        self.size = size
        self.go = SPAWN.Event()
        self.messages = SPAWN.Queue()
        self.tasks = [SPAWN.Queue() for _ in range(size)]
        self.processes = [
            SPAWN.Process(
                target=refresh_workers.serve,
                args=(database_name, self.tasks[worker], self.messages, self.go, worker),
                daemon=True,
            )
            for worker in range(size)
        ]
        for process in self.processes:
            process.start()
        self.broken = False
        try:
            self.collect("up", size)
        except BaseException:
            self.broken = True
            self.close()
            raise

    def collect(self, kind: str, count: int) -> dict[int, Any]:
        """``count`` messages of ``kind``; a worker's early "done" is an error report."""
        received: dict[int, Any] = {}
        seen = 0
        deadline = time.monotonic() + 3 * WAIT
        while seen < count:
            message_kind, worker, payload = self.messages.get(timeout=max(0.1, deadline - time.monotonic()))
            if message_kind == "done" and kind != "done":
                self.broken = True
                raise AssertionError(f"worker {worker} stopped early: {payload}")
            assert message_kind == kind, (message_kind, worker, payload)
            received[worker] = payload
            seen += 1
        return received

    def run(
        self, task: str, per_worker: list[dict[str, Any]], threads: int, before_go: Callable[[], None]
    ) -> list[tuple[list[Any], list[str]]]:
        assert len(per_worker) <= self.size
        self.broken = True  # until the run completes
        self.go.clear()
        for worker, kwargs in enumerate(per_worker):
            self.tasks[worker].put((task, kwargs))
        try:
            self.collect("ready", threads * len(per_worker))
            before_go()
        finally:
            self.go.set()  # release the threads even if the parent failed: they report
        done = self.collect("done", len(per_worker))
        self.broken = False
        return [done[worker] for worker in range(len(per_worker))]

    def close(self) -> None:
        for tasks in self.tasks:
            tasks.put(None)
        for process in self.processes:
            process.join(timeout=0 if self.broken else 10)
            if process.is_alive():
                process.kill()
                process.join(timeout=10)


POOL_SIZE = 8


@pytest.fixture(scope="module")
def _pool_holder(django_db_setup, django_db_blocker) -> Iterator[list[WorkerPool]]:
    holder: list[WorkerPool] = []
    yield holder
    for pool in holder:
        pool.close()


@pytest.fixture
def worker_pool(_pool_holder: list[WorkerPool]) -> Iterator[WorkerPool]:
    """Eight spawned workers shared by this module's tests, started on first use."""
    if _pool_holder and _pool_holder[0].broken:
        _pool_holder.pop().close()
    if not _pool_holder:
        _pool_holder.append(WorkerPool(connection.settings_dict["NAME"], POOL_SIZE))
    yield _pool_holder[0]


def run_api_callers(
    worker_pool: WorkerPool,
    fake_zoho: FakeZoho,
    tmp_path,
    processes_count: int,
    user_names: list[str],
    before_go: Callable[[], None],
) -> list[dict[str, Any]]:
    """``processes_count`` processes, each with one thread per entry of ``user_names``.

    Every thread makes one API call as its user, all released at once after the
    parent ran ``before_go`` (which expires the tokens). Returns the threads'
    reports after checking that every process and thread succeeded.
    """
    kwargs = {
        "base_url": fake_zoho.base_url,
        "token_url": fake_zoho.token_url,
        "resource_path": str(tmp_path),
        "user_names": user_names,
    }
    outcomes = worker_pool.run("call_org", [kwargs] * processes_count, len(user_names), before_go)

    assert [errors for _, errors in outcomes] == [[]] * processes_count
    reports = [report for worker_reports, _ in outcomes for report in worker_reports]
    assert len(reports) == processes_count * len(user_names)
    return reports


def threads_in_flight_during_first_refresh(reports: list[dict[str, Any]]) -> int:
    """How many threads had asked the store before the first one got its token back."""
    first_found = min(report["found"] for report in reports)
    return sum(report["started"] < first_found for report in reports)


# --- 1. a stampede on one user's expired token ---------------------------------


@pytest.mark.slow
@pytest.mark.django_db(transaction=True)
def test_one_expired_token_seen_by_24_workers_in_8_processes_is_refreshed_once(
    worker_pool, sdk, fake_zoho, tmp_path
):
    row = logged_in_row(sdk, fake_zoho, "stampede@example.com", "50001")
    old_access_token = row.access_token
    fake_zoho.set_delay(0.3, "refresh_token")  # the winner's refresh overlaps everyone else's find
    org_calls_before: list[int] = []

    def expire_now() -> None:
        assert fake_zoho.count("refresh_token") == 0  # the children's initialize made no refresh
        org_calls_before.append(fake_zoho.count("org"))
        expire(row)

    reports = run_api_callers(worker_pool, fake_zoho, tmp_path, 8, [row.user_name] * 3, expire_now)

    assert fake_zoho.count("refresh_token") == 1
    assert fake_zoho.refresh_count(row.refresh_token) == 1
    assert threads_in_flight_during_first_refresh(reports) >= 2, reports
    assert {(r["status"], r["zgid"]) for r in reports} == {(200, "50001")}
    row.refresh_from_db()
    assert ZohoToken.objects.count() == 1
    assert row.access_token != old_access_token
    assert fake_zoho.is_access_token_valid(row.access_token)
    assert row.expiry_time > now_ms() + 3_000_000
    # Every worker used the winner's token, on the wire as well.
    assert {r["access_token"] for r in reports} == {row.access_token}
    assert authorizations(fake_zoho)[org_calls_before[0] :] == [row.access_token] * 24


# --- 2. several users at once -------------------------------------------------------


@pytest.mark.slow
@pytest.mark.django_db(transaction=True)
def test_four_expired_users_touched_by_8_processes_are_refreshed_once_each(
    worker_pool, sdk, fake_zoho, tmp_path
):
    users = [(f"many{n}@example.com", f"6000{n}") for n in range(4)]
    rows = [logged_in_row(sdk, fake_zoho, email, zgid) for email, zgid in users]
    old_access_tokens = {row.user_name: row.access_token for row in rows}
    fake_zoho.set_delay(0.2, "refresh_token")
    org_calls_before: list[int] = []

    def expire_now() -> None:
        assert fake_zoho.count("refresh_token") == 0
        org_calls_before.append(fake_zoho.count("org"))
        expire(*rows)

    reports = run_api_callers(
        worker_pool, fake_zoho, tmp_path, 8, [row.user_name for row in rows], expire_now
    )

    assert ZohoToken.objects.count() == 4
    for row, (_email, zgid) in zip(rows, users, strict=True):
        assert fake_zoho.refresh_count(row.refresh_token) == 1, row.user_name
        row.refresh_from_db()
        mine = [r for r in reports if r["user"] == row.user_name]
        assert len(mine) == 8
        assert {(r["status"], r["zgid"]) for r in mine} == {(200, zgid)}
        assert {r["access_token"] for r in mine} == {row.access_token}
        assert row.access_token != old_access_tokens[row.user_name]
        assert fake_zoho.is_access_token_valid(row.access_token)
        assert row.expiry_time > now_ms() + 3_000_000
    assert fake_zoho.count("refresh_token") == 4
    assert sorted(authorizations(fake_zoho)[org_calls_before[0] :]) == sorted(
        row.access_token for row in rows for _ in range(8)
    )


# --- 3. a worker killed while it holds the row lock ----------------------------------


def fresh_connection(**options: Any) -> BaseDatabaseWrapper:
    """A new connection to the test database, outside Django's connection handler."""
    settings_dict = copy.deepcopy(connections["default"].settings_dict)
    settings_dict["OPTIONS"] = {**settings_dict.get("OPTIONS", {}), **options}
    return load_backend(settings_dict["ENGINE"]).DatabaseWrapper(settings_dict, "probe")


def row_lock_is_held(pk: int) -> bool:
    """Whether another connection holds the row's write lock (SQLite: the database's)."""
    if connection.vendor == "sqlite":
        probe = sqlite3.connect(connection.settings_dict["NAME"], timeout=0, isolation_level=None)
        try:
            probe.execute("BEGIN IMMEDIATE")
            probe.execute("ROLLBACK")
            return False
        except sqlite3.OperationalError as exc:
            assert "locked" in str(exc)
            return True
        finally:
            probe.close()
    probe_connection = fresh_connection()
    try:
        with probe_connection.cursor() as cursor:
            cursor.execute(f"SELECT id FROM {TABLE} WHERE id = %s FOR UPDATE NOWAIT", [pk])
        return False
    except DatabaseError:
        return True
    finally:
        probe_connection.close()


@pytest.mark.slow
@pytest.mark.django_db(transaction=True)
def test_a_worker_killed_mid_refresh_leaves_a_claim_that_expires_and_the_next_worker_refreshes(
    sdk, fake_zoho, tmp_path, settings, caplog
):
    deadline = 2.0
    settings.ZOHO_TOKENS_REFRESH_TIMEOUT = deadline
    row = logged_in_row(sdk, fake_zoho, "killed@example.com", "70001")
    old_access_token, refresh_token = row.access_token, row.refresh_token
    org_calls_before = fake_zoho.count("org")
    expire(row)
    # The fake issues the new token, then waits before answering: the child sits in the
    # store's refresh, its claim held, until it is killed.
    fake_zoho.set_delay(5, "refresh_token")
    messages = SPAWN.Queue()
    child = SPAWN.Process(
        target=refresh_workers.refresh_until_killed,
        args=(
            connection.settings_dict["NAME"],
            fake_zoho.base_url,
            fake_zoho.token_url,
            str(tmp_path),
            row.user_name,
            messages,
            {"ZOHO_TOKENS_REFRESH_TIMEOUT": deadline},
        ),
    )
    with started([child]):
        assert messages.get(timeout=WAIT) == "started"
        give_up = time.monotonic() + WAIT
        while fake_zoho.count("refresh_token") == 0 and child.is_alive() and time.monotonic() < give_up:
            time.sleep(0.01)
        assert fake_zoho.count("refresh_token") == 1
        assert child.is_alive(), messages.get(timeout=1)
        # Waiting for Zoho, the child holds a claim, and no lock or transaction.
        assert not row_lock_is_held(row.pk)
        child.kill()
        child.join(timeout=10)
    assert child.exitcode == -signal.SIGKILL
    assert messages.empty()
    claimed = ZohoToken.objects.get(pk=row.pk)
    assert claimed.refresh_claimed_by.endswith(tuple("0123456789abcdef"))
    assert claimed.refresh_claimed_until > timezone.now()
    fake_zoho.set_delay(0, "refresh_token")
    reset_zoho_sdk()
    caplog.set_level(logging.INFO, logger="zoho_tokens")

    begun = time.monotonic()
    sdk(OAuthToken(user_signature=UserSignature(row.user_name)))
    assert org_zgid() == "70001"
    recovery = time.monotonic() - begun

    # The next worker waited for the dead worker's claim to expire (the deadline plus
    # the slack for applying an answer), then refreshed itself: the SDK did not.
    assert recovery < deadline + 3, recovery
    assert timezone.now() >= claimed.refresh_claimed_until
    messages_logged = [record.getMessage() for record in caplog.records]
    assert not [m for m in messages_logged if m.startswith("Could not refresh token")], messages_logged
    assert f"Refreshed the access token of token {row.token_id}" in messages_logged
    assert fake_zoho.count("refresh_token") == 2
    assert fake_zoho.refresh_count(refresh_token) == 2
    assert ZohoToken.objects.count() == 1
    row.refresh_from_db()
    assert row.refresh_token == refresh_token
    assert row.access_token not in (None, old_access_token)
    assert fake_zoho.is_access_token_valid(row.access_token)
    assert authorizations(fake_zoho)[org_calls_before:] == [row.access_token]
    assert row.expiry_time > now_ms() + 3_000_000
    assert (row.needs_reauthorization_at, row.refresh_retry_at, row.refresh_error) == (None, None, "")
    assert (row.refresh_claimed_by, row.refresh_claimed_until) == ("", None)
    assert not row_lock_is_held(row.pk)


# --- 4. the database connection dropped during a save ---------------------------------

DROP_USER = "dropped@example.com:80001"
DROP_REFRESH_TOKEN = "1000.dropped-refresh-token.r"
DROP_ACCESS_TOKEN = "1000.dropped-access-token.a"
NEW_ACCESS_TOKEN = "1000.dropped-new-access-token.a"


def drop_token(access_token: str, expires_at: int) -> OAuthToken:
    return signed_token(DROP_USER, DROP_REFRESH_TOKEN, access_token, expires_at)


def raw_rows() -> list[tuple[Any, ...]]:
    """Every column of every row (ciphertext included), read on a fresh connection."""
    reader = fresh_connection()
    try:
        with reader.cursor() as cursor:
            cursor.execute(f"SELECT * FROM {TABLE} ORDER BY id")
            return [tuple(row) for row in cursor.fetchall()]
    finally:
        reader.close()


def drop_store_connection() -> None:
    """Lose Django's default connection the way a server restart or a network cut does."""
    connection.ensure_connection()
    if connection.vendor == "sqlite":
        connection.connection.close()  # the DB-API connection, behind Django's back
        return
    killer = fresh_connection()
    try:
        with killer.cursor() as cursor:
            if connection.vendor == "postgresql":
                # With a timeout, pg_terminate_backend waits until the backend is gone.
                cursor.execute(
                    "SELECT pg_terminate_backend(%s, 10000)", [connection.connection.info.backend_pid]
                )
            else:
                cursor.execute(f"KILL {int(connection.connection.thread_id())}")
    finally:
        killer.close()


@pytest.mark.parametrize("moment", ["before_the_save", "after_the_update_before_commit"])
@pytest.mark.django_db(transaction=True)
def test_a_connection_dropped_during_a_save_is_a_token_store_error_and_changes_nothing(moment, store, caplog):
    store.save_token(drop_token(DROP_ACCESS_TOKEN, now_ms() + 3_600_000))
    before = raw_rows()
    token = drop_token(NEW_ACCESS_TOKEN, now_ms() + 7_200_000)
    caplog.set_level(logging.INFO, logger="zoho_tokens")
    updated: list[ZohoToken] = []

    def drop_after_the_update(sender: Any, instance: ZohoToken, **kwargs: Any) -> None:
        # post_save: the row is written (and locked) inside the store's transaction,
        # which has not committed yet.
        updated.append(instance)
        drop_store_connection()

    with pytest.raises(SDKException) as caught:
        if moment == "before_the_save":
            drop_store_connection()
            store.save_token(token)
        else:
            post_save.connect(drop_after_the_update, sender=ZohoToken, weak=False)
            try:
                store.save_token(token)
            finally:
                post_save.disconnect(drop_after_the_update, sender=ZohoToken)

    assert len(updated) == (moment != "before_the_save")
    exc = caught.value
    assert exc.code == "TOKEN_STORE"
    assert isinstance(exc.cause, DatabaseError)
    assert "Exception in save_token - DjangoTokenStore" in str(exc)
    logged = " ".join(record.getMessage() for record in caplog.records)
    assert "DjangoTokenStore.save_token failed" in logged
    for secret in (CLIENT_SECRET, DROP_REFRESH_TOKEN, DROP_ACCESS_TOKEN, NEW_ACCESS_TOKEN):
        assert secret not in str(exc)
        assert secret not in logged
    assert raw_rows() == before  # nothing half-written
    assert token.get_id() is None  # never the id of a write that did not commit

    # The store closed the dead connection itself: the next save reconnects.
    store.save_token(token)

    row = ZohoToken.objects.get()
    assert row.access_token == NEW_ACCESS_TOKEN
    assert row.expiry_time == int(token.get_expires_in())
    assert row.refresh_token == DROP_REFRESH_TOKEN
    assert token.get_id() == row.token_id


# --- 5. sustained find/save load ---------------------------------------------------------

LOAD_USERS = 20
LOAD_PROCESSES = 4
LOAD_CYCLES = 500


@pytest.mark.slow
@pytest.mark.django_db(transaction=True)
def test_sustained_find_and_save_load_keeps_one_row_per_user_with_the_newest_token(
    worker_pool, store, fake_zoho
):
    user_names = [f"load{n}@example.com:9000{n}" for n in range(LOAD_USERS)]
    for n, name in enumerate(user_names):
        token = OAuthToken(
            client_id=CLIENT_ID,
            client_secret=CLIENT_SECRET,
            refresh_token=f"1000.load-refresh-{n}.r",
            access_token=f"1000.load-initial-{n}.a",
            user_signature=UserSignature(name),
        )
        token.set_expires_in(str(now_ms() + 3_600_000))
        store.save_token(token)
    token_ids = dict(ZohoToken.objects.values_list("user_name", "token_id"))
    kwargs = {"user_names": user_names, "cycles": LOAD_CYCLES, "workers": LOAD_PROCESSES}

    outcomes = worker_pool.run("find_and_save", [kwargs] * LOAD_PROCESSES, 1, lambda: None)

    assert [errors for _, errors in outcomes] == [[]] * LOAD_PROCESSES
    assert [reports[1] for reports, _ in outcomes] == [LOAD_CYCLES] * LOAD_PROCESSES
    newest: dict[str, tuple[int, str]] = {}
    for (written, _), _ in outcomes:
        for name, (expiry, access_token) in written.items():
            newest[name] = max(newest.get(name, (0, "")), (expiry, access_token))
    rows = {row.user_name: row for row in ZohoToken.objects.all()}
    assert sorted(rows) == sorted(user_names)
    assert sorted(newest) == sorted(user_names)  # every user was written at least once
    for n, name in enumerate(user_names):
        row = rows[name]
        assert (row.expiry_time, row.access_token) == newest[name], name
        assert row.token_id == token_ids[name]
        assert row.refresh_token == f"1000.load-refresh-{n}.r"
    assert fake_zoho.count("refresh_token") == 0


# --- 6. what the refresh path costs -------------------------------------------------------


@pytest.mark.django_db(transaction=True)
def test_latency_of_a_find_that_refreshes_against_a_plain_find(sdk, fake_zoho, store, record_property):
    """Not a benchmark gate: prints (with -s) and records the added latency of the refresh path."""
    row = logged_in_row(sdk, fake_zoho, "latency@example.com", "11001")
    rounds = 20

    def timed_find() -> tuple[float, str]:
        token = OAuthToken(user_signature=UserSignature(row.user_name))
        begun = time.perf_counter()
        assert store.find_token(token) is token
        return time.perf_counter() - begun, token.get_access_token()

    timed_find()  # warm up
    plain, refreshing, seen = [], [], set()
    for _ in range(rounds):
        elapsed, access_token = timed_find()
        plain.append(elapsed)
        seen.add(access_token)
        expire(row)
        elapsed, access_token = timed_find()
        refreshing.append(elapsed)
        seen.add(access_token)

    # Each expired find refreshed exactly once, and handed out the new token.
    assert fake_zoho.refresh_count(row.refresh_token) == rounds
    assert len(seen) == rounds + 1
    row.refresh_from_db()
    assert fake_zoho.is_access_token_valid(row.access_token)
    plain_ms, refreshing_ms = statistics.mean(plain) * 1000, statistics.mean(refreshing) * 1000
    record_property("plain_find_ms", round(plain_ms, 2))
    record_property("refreshing_find_ms", round(refreshing_ms, 2))
    print(
        f"\n[{connection.vendor}] find_token: plain {plain_ms:.2f} ms, refresh path {refreshing_ms:.2f} ms, "
        f"added {refreshing_ms - plain_ms:.2f} ms (mean of {rounds}; fake Zoho on 127.0.0.1, no delay)"
    )


# --- 7. a slow Zoho: nothing held while waiting, one call, a real deadline ---------------


class HeldMonitor:
    """Polls the database, from its own connection, for what the workers hold.

    ``longest`` is the longest time any other connection to the test database was
    seen inside an open transaction (PostgreSQL, MariaDB) or holding SQLite's write
    lock, in seconds; ``lock_waits`` is the longest wait on a lock (PostgreSQL).
    """

    def __init__(self) -> None:
        self.longest = 0.0
        self.lock_waits = 0.0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._database = connection.settings_dict["NAME"]
        self._vendor = connection.vendor

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=10)

    def _run(self) -> None:
        if self._vendor == "sqlite":
            self._watch_sqlite()
            return
        probe = fresh_connection()
        try:
            while not self._stop.wait(0.05):
                with probe.cursor() as cursor:
                    held, waited = self._query(cursor)
                self.longest = max(self.longest, held)
                self.lock_waits = max(self.lock_waits, waited)
        finally:
            probe.close()

    def _query(self, cursor: Any) -> tuple[float, float]:
        if self._vendor == "postgresql":
            cursor.execute(
                "SELECT COALESCE(MAX(EXTRACT(EPOCH FROM now() - xact_start)), 0),"
                " COALESCE(MAX(EXTRACT(EPOCH FROM now() - state_change))"
                " FILTER (WHERE wait_event_type = 'Lock'), 0)"
                " FROM pg_stat_activity WHERE datname = %s AND pid <> pg_backend_pid()"
                " AND xact_start IS NOT NULL AND backend_type = 'client backend'",
                [self._database],
            )
        else:
            cursor.execute(
                "SELECT COALESCE(MAX(TIMESTAMPDIFF(MICROSECOND, t.trx_started, NOW(6))) / 1e6, 0), 0"
                " FROM information_schema.innodb_trx t"
                " JOIN information_schema.processlist p ON p.id = t.trx_mysql_thread_id"
                " WHERE p.db = %s AND p.id <> CONNECTION_ID()",
                [self._database],
            )
        held, waited = cursor.fetchone()
        return float(held), float(waited)

    def _watch_sqlite(self) -> None:
        locked_since: float | None = None
        while not self._stop.wait(0.05):
            probe = sqlite3.connect(self._database, timeout=0, isolation_level=None)
            try:
                probe.execute("BEGIN IMMEDIATE")
                probe.execute("ROLLBACK")
                locked_since = None
            except sqlite3.OperationalError:
                locked_since = locked_since or time.monotonic()
                self.longest = max(self.longest, time.monotonic() - locked_since)
            finally:
                probe.close()


def lookups_by_8_processes(
    worker_pool: WorkerPool, row: ZohoToken, overrides: dict[str, Any], database: dict[str, Any] | None = None
) -> tuple[list[dict[str, Any]], HeldMonitor]:
    monitor = HeldMonitor()
    kwargs = {"token_id": row.token_id, "threads": 1, "overrides": overrides, "database": database}
    try:
        outcomes = worker_pool.run("timed_lookups", [kwargs] * 8, 1, monitor.start)
    finally:
        monitor.stop()
    assert [errors for _, errors in outcomes] == [[]] * 8
    reports = [report for worker_reports, _ in outcomes for report in worker_reports]
    for report in reports:
        report["seconds"] = report["ended"] - report["started"]
    return reports, monitor


@pytest.mark.slow
@pytest.mark.django_db(transaction=True)
def test_eight_processes_and_a_zoho_taking_3_s_make_one_call_and_hold_nothing_while_waiting(
    worker_pool, tokens_zoho_knows, fake_zoho
):
    (row,) = tokens_zoho_knows("slow", expired=True)
    fake_zoho.set_delay(3, "refresh_token")
    overrides = {"ZOHO_TOKENS_TOKEN_URL": fake_zoho.token_url, "ZOHO_TOKENS_REFRESH_TIMEOUT": 10}

    reports, monitor = lookups_by_8_processes(worker_pool, row, overrides)

    print(
        f"\n[{connection.vendor}] Zoho 3 s, 8 processes: lookups {min(r['seconds'] for r in reports):.2f}-"
        f"{max(r['seconds'] for r in reports):.2f} s; longest open transaction {monitor.longest:.2f} s; "
        f"longest lock wait {monitor.lock_waits:.2f} s"
    )
    assert fake_zoho.count("refresh_token") == 1
    row.refresh_from_db()
    assert fake_zoho.is_access_token_valid(row.access_token)
    assert [(r["error"], r["access_token"]) for r in reports] == [(None, row.access_token)] * 8
    assert max(r["seconds"] for r in reports) < 5
    assert monitor.longest < 1.0
    assert monitor.lock_waits < 1.0


@pytest.mark.slow
@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("slowness", ["delay", "drip"])
def test_a_zoho_slower_than_the_deadline_is_cut_off_once_and_every_worker_backs_off(
    worker_pool, tokens_zoho_knows, fake_zoho, slowness
):
    (row,) = tokens_zoho_knows("dripping", expired=True)
    if slowness == "delay":
        fake_zoho.set_delay(4, "refresh_token")
    else:
        fake_zoho.set_drip(0.3, "refresh_token")  # never silent for a whole per-read timeout
    deadline = 1.0
    overrides = {"ZOHO_TOKENS_TOKEN_URL": fake_zoho.token_url, "ZOHO_TOKENS_REFRESH_TIMEOUT": deadline}
    before = raw_row(row.pk)

    reports, monitor = lookups_by_8_processes(worker_pool, row, overrides)
    again, _ = lookups_by_8_processes(worker_pool, row, overrides)

    print(
        f"\n[{connection.vendor}] Zoho {slowness}, deadline {deadline} s: lookups up to "
        f"{max(r['seconds'] for r in reports):.2f} s, then {max(r['seconds'] for r in again):.2f} s"
    )
    # One call, cut off at the deadline; nobody calls again within the back-off.
    assert fake_zoho.count("refresh_token") == 1
    assert max(r["seconds"] for r in reports) < deadline + 1
    for report in reports + again:
        assert report["access_token"] is None
        assert "has expired and Zoho could not refresh it" in report["error"]
        assert "the store retries after" in report["error"]
        assert row.refresh_token not in report["error"]
    after = raw_row(row.pk)  # ciphertext as stored: unchanged
    for name in ("refresh_token", "access_token", "expiry_time", "client_secret"):
        assert after[name] == before[name]
    stored = ZohoToken.objects.get(pk=row.pk)
    assert stored.refresh_failures == 1
    assert "no complete answer within 1 s" in stored.refresh_error
    assert stored.refresh_retry_at >= timezone.now() + timedelta(seconds=25)
    assert monitor.longest < 1.0


@pytest.fixture(scope="module")
def pgbouncer() -> Iterator[int]:
    """A real PgBouncer in transaction pooling mode, pool size 2, on a free port, in
    front of the test server; yields its port. Started as the ``postgres`` user when run
    as root (PgBouncer refuses root)."""
    binary = shutil.which("pgbouncer") or "/usr/sbin/pgbouncer"
    if not os.path.exists(binary):
        pytest.fail("PgBouncer is not installed (Debian: apt-get install pgbouncer); .ci/run installs it")
    settings_dict = connections["default"].settings_dict
    # Not under pytest's tmp folders, which only root may enter.
    folder = Path(tempfile.mkdtemp(prefix="zoho_tokens_pgbouncer_"))
    folder.chmod(0o755)
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    (folder / "users.txt").write_text(f'"{settings_dict["USER"]}" ""\n')
    (folder / "pgbouncer.ini").write_text(
        "[databases]\n"
        f"* = host={settings_dict['HOST'] or '127.0.0.1'} port={settings_dict['PORT'] or 5432}\n"
        "[pgbouncer]\n"
        f"listen_addr = 127.0.0.1\nlisten_port = {port}\nunix_socket_dir =\n"
        f"auth_type = trust\nauth_file = {folder / 'users.txt'}\n"
        "pool_mode = transaction\ndefault_pool_size = 2\nmin_pool_size = 0\nreserve_pool_size = 0\n"
        "max_client_conn = 200\nignore_startup_parameters = extra_float_digits,options\n"
    )
    for path in folder.iterdir():
        path.chmod(0o644)
    command = [binary, str(folder / "pgbouncer.ini")]
    if os.geteuid() == 0:
        command[1:1] = ["-u", "postgres"]
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        give_up = time.monotonic() + 15
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
                break
            except OSError:
                if process.poll() is not None or time.monotonic() > give_up:
                    log = (
                        (folder / "pgbouncer.log").read_text() if (folder / "pgbouncer.log").exists() else ""
                    )
                    output = process.stdout.read().decode() if process.stdout else ""
                    pytest.fail(f"PgBouncer did not start: {output}{log}")
                time.sleep(0.1)
        yield port
    finally:
        process.terminate()
        process.wait(timeout=10)
        shutil.rmtree(folder, ignore_errors=True)


@pytest.mark.slow
@pytest.mark.django_db(transaction=True)
def test_behind_pgbouncer_in_transaction_mode_a_slow_zoho_still_makes_one_call(
    worker_pool, tokens_zoho_knows, fake_zoho, request
):
    if connection.vendor != "postgresql":
        pytest.skip("PgBouncer stands in front of PostgreSQL only")
    port = request.getfixturevalue("pgbouncer")
    (row,) = tokens_zoho_knows("pooled", expired=True)
    fake_zoho.set_delay(3, "refresh_token")
    overrides = {"ZOHO_TOKENS_TOKEN_URL": fake_zoho.token_url, "ZOHO_TOKENS_REFRESH_TIMEOUT": 10}
    # What the README asks of a project behind PgBouncer in transaction mode.
    behind_pgbouncer = {
        "HOST": "127.0.0.1",
        "PORT": str(port),
        "OPTIONS": {"prepare_threshold": None},
        "DISABLE_SERVER_SIDE_CURSORS": True,
    }

    reports, monitor = lookups_by_8_processes(worker_pool, row, overrides, behind_pgbouncer)

    print(
        f"\n[pgbouncer, pool 2] Zoho 3 s, 8 processes: lookups {min(r['seconds'] for r in reports):.2f}-"
        f"{max(r['seconds'] for r in reports):.2f} s; longest open transaction {monitor.longest:.2f} s"
    )
    assert fake_zoho.count("refresh_token") == 1
    row.refresh_from_db()
    assert [(r["error"], r["access_token"]) for r in reports] == [(None, row.access_token)] * 8
    assert max(r["seconds"] for r in reports) < 5
    assert monitor.longest < 1.0


@pytest.mark.slow
@pytest.mark.django_db(transaction=True)
def test_a_proactive_refresh_racing_eight_workers_still_makes_one_call_per_token(
    worker_pool, tokens_zoho_knows, fake_zoho
):
    rows = tokens_zoho_knows("race1", "race2", expired=True)
    fake_zoho.set_delay(0.5, "refresh_token")
    overrides = {"ZOHO_TOKENS_TOKEN_URL": fake_zoho.token_url}
    outputs: list[str] = []

    def proactive() -> None:
        out = StringIO()
        call_command("zoho_refresh_tokens", "--expiring-within", "600", stdout=out)
        outputs.append(out.getvalue())
        connection.close()

    runner = threading.Thread(target=proactive)
    kwargs = [{"token_id": rows[n % 2].token_id, "threads": 1, "overrides": overrides} for n in range(8)]
    outcomes = worker_pool.run("timed_lookups", kwargs, 1, runner.start)
    runner.join(timeout=WAIT)

    assert [errors for _, errors in outcomes] == [[]] * 8
    assert fake_zoho.count("refresh_token") == 2
    for row in rows:
        assert fake_zoho.refresh_count(row.refresh_token) == 1
    fresh = {row.token_id: ZohoToken.objects.get(pk=row.pk).access_token for row in rows}
    reports = [
        (kwargs[n]["token_id"], report)
        for n, (worker_reports, _) in enumerate(outcomes)
        for report in worker_reports
    ]
    assert all(report["access_token"] == fresh[token_id] for token_id, report in reports)
    (output,) = outputs
    assert output.startswith("Refreshed ") and "0 rejected" in output and "0 failed" in output
