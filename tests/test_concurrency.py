"""Concurrent saves from threads and processes leave one row per user, never an older token."""

import multiprocessing
import threading

import pytest
from django.db import connection
from zohocrmsdk.src.com.zoho.api.authenticator.oauth_token import OAuthToken
from zohocrmsdk.src.com.zoho.crm.api.initializer import Initializer
from zohocrmsdk.src.com.zoho.crm.api.user_signature import UserSignature

from tests.helpers import CLIENT_ID, CLIENT_SECRET, expire, log_in, now_ms, org_zgid, signed_token, workers
from zoho_tokens.models import ZohoToken

RACE_USER = "race@example.com:1"
REFRESH_TOKEN = "1000.race-refresh-token.r"


def race_token(access_token: str, expires_at: int) -> OAuthToken:
    return signed_token(RACE_USER, REFRESH_TOKEN, access_token, expires_at)


@pytest.mark.django_db(transaction=True)
def test_threads_saving_one_new_user_at_once_leave_one_row_with_one_id(store):
    threads_count = 8
    base = now_ms() + 3_600_000
    tokens = [race_token(f"1000.race-access-{n}.a", base + n * 1000) for n in range(threads_count)]
    barrier = threading.Barrier(threads_count)
    errors: list[BaseException] = []

    def save(token: OAuthToken) -> None:
        try:
            barrier.wait(timeout=10)
            store.save_token(token)
        except BaseException as exc:
            errors.append(exc)
        finally:
            connection.close()

    threads = [threading.Thread(target=save, args=(token,)) for token in tokens]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)

    assert [thread.is_alive() for thread in threads] == [False] * threads_count
    assert errors == []
    row = ZohoToken.objects.get()
    assert row.user_name == RACE_USER
    assert [token.get_id() for token in tokens] == [row.token_id] * threads_count
    # The newest expiry wins whatever order the threads committed in.
    assert row.expiry_time == base + (threads_count - 1) * 1000
    assert row.access_token == f"1000.race-access-{threads_count - 1}.a"
    assert row.refresh_token == REFRESH_TOKEN


@pytest.mark.slow
@pytest.mark.django_db(transaction=True)
def test_processes_saving_one_new_user_leave_one_row_with_the_newest_expiry():
    processes_count, saves = 4, 5
    base = now_ms() + 3_600_000
    secrets = {
        "client_id": CLIENT_ID,
        "client_secret": CLIENT_SECRET,
        "refresh_token": REFRESH_TOKEN,
        "access_prefix": "1000.process-access",
    }
    context = multiprocessing.get_context("spawn")
    barrier = context.Barrier(processes_count)
    results = context.Queue()
    database_name = connection.settings_dict["NAME"]
    processes = [
        context.Process(
            target=workers.save_same_user_repeatedly,
            args=(database_name, barrier, results, n, saves, processes_count, RACE_USER, base, secrets),
        )
        for n in range(processes_count)
    ]
    for process in processes:
        process.start()
    try:
        reports = sorted(results.get(timeout=120) for _ in processes)
    finally:
        for process in processes:
            process.join(timeout=30)

    assert [process.exitcode for process in processes] == [0] * processes_count
    assert [error for _, _, error in reports] == [None] * processes_count
    row = ZohoToken.objects.get()
    assert row.user_name == RACE_USER
    assert [ids for _, ids, _ in reports] == [[row.token_id] * saves] * processes_count
    last_save, last_worker = saves - 1, processes_count - 1
    assert row.expiry_time == base + (last_save * processes_count + last_worker) * 1000
    assert row.access_token == f"1000.process-access-{last_save}-{last_worker}"


def test_an_older_expiry_never_replaces_a_newer_access_token(db, store):
    base = now_ms()
    store.save_token(race_token("1000.newer-access.a", base + 7_200_000))

    older = race_token("1000.older-access.a", base + 3_600_000)
    store.save_token(older)

    row = ZohoToken.objects.get()
    assert row.access_token == "1000.newer-access.a"
    assert row.expiry_time == base + 7_200_000
    assert older.get_id() == row.token_id
    # The older access token is not findable: its digest was never written.
    assert not ZohoToken.objects.filter(access_token="1000.older-access.a").exists()


def login_and_expire(sdk, fake_zoho, users) -> dict[str, str]:
    """Log each user in through the SDK, then expire the stored access tokens."""
    for user in users:
        log_in(sdk, fake_zoho, user)
    expire(*ZohoToken.objects.all())
    return {row.user_name: row.access_token for row in ZohoToken.objects.all()}


@pytest.mark.django_db(transaction=True)
def test_users_in_their_own_threads_each_refresh_once(sdk, fake_zoho):
    users = [(f"thread{n}@example.com", f"4000{n}") for n in range(3)]
    old_access_tokens = login_and_expire(sdk, fake_zoho, users)
    assert fake_zoho.count("refresh_token") == 0
    zgids: dict[str, str] = {}
    errors: list[BaseException] = []
    barrier = threading.Barrier(len(users))

    def work(email: str, zgid: str) -> None:
        try:
            barrier.wait(timeout=10)
            Initializer.switch_user(token=OAuthToken(user_signature=UserSignature(f"{email}:{zgid}")))
            zgids[email] = org_zgid()
        except BaseException as exc:
            errors.append(exc)
        finally:
            connection.close()

    threads = [threading.Thread(target=work, args=user) for user in users]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)

    assert errors == []
    assert zgids == dict(users)
    rows = {row.user_name: row for row in ZohoToken.objects.all()}
    assert sorted(rows) == sorted(f"{email}:{zgid}" for email, zgid in users)
    for name, row in rows.items():
        assert fake_zoho.refresh_count(row.refresh_token) == 1, name
        assert row.access_token != old_access_tokens[name]
        assert fake_zoho.is_access_token_valid(row.access_token)
        assert row.expiry_time > now_ms() + 3_000_000
    assert fake_zoho.count("refresh_token") == len(users)
