"""Child processes for tests/test_refresh_concurrency.py, started with the "spawn" method.

Like ``workers``, nothing here touches Django at import time: a child
configures Django itself (``setup_django``) and points the default database at the
parent's test database. Children reach the fake Zoho only over HTTP: they get its
base and token URLs as strings and never call a ``FakeZoho`` method.

Starting a process that imports Django and the SDK costs about a second of CPU,
so the tests keep a pool of long-lived workers (``serve``) and send them tasks.
Protocol, on one queue shared by all workers, each message ``(kind, worker, payload)``:

- ``("up", w, None)`` once Django is set up; ``("ready", w, None)`` from each of a
  task's threads once it waits for the ``go`` event (the parent then changes the
  database and sets ``go``, so every thread starts at the same moment);
- ``("done", w, (reports, errors))`` when the task ends. Errors are text, never raised,
  so the parent's assertion shows them.
"""

from __future__ import annotations

import os
import random
import threading
import time
import traceback
from collections.abc import Callable
from typing import Any

from tests.helpers.workers import setup_django

WAIT = 60  # seconds a child waits for the parent


def describe(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}\n{traceback.format_exc()}"


def serve(database_name: str, tasks: Any, messages: Any, go: Any, worker: int) -> None:
    """Run tasks ``(name, kwargs)`` from ``tasks`` until ``None`` arrives."""
    try:
        setup_django(database_name)
        # Import the heavy modules now, not while the parent waits for a task.
        from zohocrmsdk.src.com.zoho.crm.api.org import OrgOperations  # noqa: F401

        import zoho_tokens.store  # noqa: F401
    except BaseException as exc:
        messages.put(("done", worker, ([], [f"setup: {describe(exc)}"])))
        return
    messages.put(("up", worker, None))
    for name, kwargs in iter(tasks.get, None):
        try:
            outcome = TASKS[name](worker=worker, go=go, messages=messages, **kwargs)
        except BaseException as exc:
            outcome = ([], [describe(exc)])
        messages.put(("done", worker, outcome))
    # Nothing is left to clean up (each task closed its connections): skip the
    # interpreter's slow teardown of the many modules Django and the SDK loaded.
    messages.close()
    messages.join_thread()
    os._exit(0)


# --- tasks ----------------------------------------------------------------------------------

Outcome = tuple[list[Any], list[str]]


def in_threads(count: int, work: Callable[[int], Any], worker: int, go: Any, messages: Any) -> Outcome:
    """``work(i)`` in ``count`` threads started together on ``go``; their results and errors."""
    from django.db import connection

    reports: list[Any] = []
    errors: list[str] = []
    lock = threading.Lock()

    def run(i: int) -> None:
        try:
            messages.put(("ready", worker, None))
            if not go.wait(timeout=WAIT):
                raise TimeoutError("the parent never said go")
            report = work(i)
            with lock:
                reports.append(report)
        except BaseException as exc:
            with lock:
                errors.append(f"thread {i}: {describe(exc)}")
        finally:
            connection.close()

    threads = [threading.Thread(target=run, args=(i,)) for i in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=3 * WAIT)
    if any(thread.is_alive() for thread in threads):
        errors.append("a thread did not finish")
    return reports, errors


def sdk_environment(base_url: str, token_url: str) -> Any:
    from zohocrmsdk.src.com.zoho.crm.api.dc.data_center import DataCenter

    return DataCenter.Environment(base_url, token_url, base_url)


def initialize_sdk(base_url: str, token_url: str, resource_path: str, user_name: str) -> None:
    """``Initializer.initialize`` with the real SDK, our store and the fake Zoho."""
    from django.db import connection
    from zohocrmsdk.src.com.zoho.api.authenticator.oauth_token import OAuthToken
    from zohocrmsdk.src.com.zoho.crm.api.initializer import Initializer
    from zohocrmsdk.src.com.zoho.crm.api.user_signature import UserSignature

    from zoho_tokens.store import DjangoTokenStore

    try:
        Initializer.initialize(
            environment=sdk_environment(base_url, token_url),
            token=OAuthToken(user_signature=UserSignature(user_name)),
            store=DjangoTokenStore(),
            resource_path=resource_path,
        )
    finally:
        connection.close()


def call_org_as(user_name: str) -> dict[str, Any]:
    """Switch this thread to ``user_name``, make one real API call, say what happened."""
    from zohocrmsdk.src.com.zoho.api.authenticator.oauth_token import OAuthToken
    from zohocrmsdk.src.com.zoho.crm.api.initializer import Initializer
    from zohocrmsdk.src.com.zoho.crm.api.org import OrgOperations, ResponseWrapper
    from zohocrmsdk.src.com.zoho.crm.api.user_signature import UserSignature

    started = time.time()
    token = OAuthToken(user_signature=UserSignature(user_name))
    Initializer.switch_user(token=token)  # get_token(): the store's find_token
    found = time.time()
    response = OrgOperations().get_organization()
    wrapper = response.get_object()
    zgid = wrapper.get_org()[0].get_zgid() if isinstance(wrapper, ResponseWrapper) else repr(wrapper)
    return {
        "user": user_name,
        "status": response.get_status_code(),
        "zgid": zgid,
        "access_token": token.get_access_token(),
        "started": started,
        "found": found,
    }


def call_org(
    *,
    base_url: str,
    token_url: str,
    resource_path: str,
    user_names: list[str],
    worker: int,
    go: Any,
    messages: Any,
) -> Outcome:
    """One thread per entry of ``user_names``, each making one CRM API call as that user.

    The SDK is initialised once for the process while the stored tokens are still
    valid (no HTTP); the parent expires them before it says go, so every thread
    then asks the store for an expired token at the same moment.
    """
    initialize_sdk(base_url, token_url, resource_path, user_names[0])
    return in_threads(len(user_names), lambda i: call_org_as(user_names[i]), worker, go, messages)


def find_and_save(
    *, user_names: list[str], cycles: int, workers: int, worker: int, go: Any, messages: Any
) -> Outcome:
    """``cycles`` times: find a random user's token, give it a newer access token, save it.

    Expiries are ``microseconds since the epoch * workers + worker``, taken at the
    start of the cycle: unique across workers, strictly increasing within one,
    ordered by time across all of them, and far in the future read as epoch
    milliseconds. Each find also checks that the user's stored expiry never went
    back below one this worker saw or wrote before (a stale save that a later one
    hid would not show in the final rows). The reports are
    ``[{user: (highest expiry written, its access token)}, cycles done]``; a write
    counts only once ``save_token`` returned.
    """
    from django.test import override_settings
    from zohocrmsdk.src.com.zoho.api.authenticator.oauth_token import OAuthToken
    from zohocrmsdk.src.com.zoho.crm.api.user_signature import UserSignature

    from zoho_tokens.store import DjangoTokenStore

    store = DjangoTokenStore()
    generator = random.Random(worker)

    def cycle_all(_: int) -> tuple[dict[str, tuple[int, str]], int, list[str]]:
        newest: dict[str, tuple[int, str]] = {}
        seen: dict[str, int] = {}  # the highest expiry this worker knows the row reached
        failures: list[str] = []
        failed_cycles = 0
        last_expiry = 0

        def fail(message: str) -> None:
            if len(failures) < 10:
                failures.append(message)

        for cycle in range(cycles):
            user_name = generator.choice(user_names)
            begun = time.monotonic()
            # Stamped first, saved last, like a worker that got Zoho's answer and
            # then took a moment: another worker may save a newer token meanwhile.
            expiry = max(time.time_ns() // 1000 * workers + worker, last_expiry + workers)
            last_expiry = expiry
            try:
                token = OAuthToken(user_signature=UserSignature(user_name))
                if store.find_token(token) is not token:
                    raise AssertionError(f"find_token did not find {user_name}")
                stored = int(token.get_expires_in())
                if stored < seen.get(user_name, 0):
                    fail(f"cycle {cycle}: {user_name}'s expiry went back from {seen[user_name]} to {stored}")
                seen[user_name] = max(seen.get(user_name, 0), stored)
                time.sleep(generator.uniform(0, 0.004))
                access_token = f"1000.load-{worker}-{cycle}.a"
                token.set_access_token(access_token)
                token.set_expires_in(str(expiry))
                store.save_token(token)
            except Exception as exc:
                failed_cycles += 1
                elapsed = time.monotonic() - begun
                fail(f"cycle {cycle} ({user_name}, {elapsed:.2f} s): {type(exc).__name__}: {exc}")
                continue
            seen[user_name] = max(seen[user_name], expiry)
            newest[user_name] = (expiry, access_token)
        return newest, cycles - failed_cycles, failures

    with override_settings(ZOHO_TOKENS_REFRESH=False):  # no HTTP in this test, whatever the expiry
        reports, errors = in_threads(1, cycle_all, worker, go, messages)
    if not reports:
        return [], errors
    ((newest, done, failures),) = reports
    return [newest, done], errors + failures


def timed_lookups(
    *,
    token_id: str,
    threads: int,
    overrides: dict[str, Any],
    database: dict[str, Any] | None = None,
    worker: int,
    go: Any,
    messages: Any,
) -> Outcome:
    """``threads`` threads each look the token up once with the store, released together.

    Each reports when it started and ended, and the access token it got or the
    ``SDKException`` it met (any other exception is an error). ``overrides`` are
    settings, ``database`` changes to this process's connection settings (another
    host or port, options), both for this task only.
    """
    from django.db import connections
    from django.test import override_settings
    from zohocrmsdk.src.com.zoho.crm.api.exception import SDKException

    from zoho_tokens.store import DjangoTokenStore

    store = DjangoTokenStore()
    settings_dict = connections["default"].settings_dict
    saved = {key: settings_dict.get(key) for key in (database or {})}
    connections["default"].close()
    settings_dict.update(database or {})  # shared by every thread's connection

    def look_up(_: int) -> dict[str, Any]:
        started = time.time()
        try:
            access_token, error = store.find_token_by_id(token_id).get_access_token(), None
        except SDKException as exc:
            access_token, error = None, str(exc)
        return {"started": started, "ended": time.time(), "access_token": access_token, "error": error}

    try:
        with override_settings(**overrides):
            return in_threads(threads, look_up, worker, go, messages)
    finally:
        settings_dict.update(saved)


TASKS: dict[str, Callable[..., Outcome]] = {
    "call_org": call_org,
    "find_and_save": find_and_save,
    "timed_lookups": timed_lookups,
}


# --- a process to kill ----------------------------------------------------------------------


def refresh_until_killed(
    database_name: str,
    base_url: str,
    token_url: str,
    resource_path: str,
    user_name: str,
    messages: Any,
    overrides: dict[str, Any] | None = None,
) -> None:
    """Initialise the SDK for a user whose token expired: the store starts a refresh.

    The parent makes the fake Zoho slow to answer and kills this process while the
    store waits for the answer, holding its claim on the refresh. ``overrides`` are
    settings for this process (the parent's own do not reach it).
    """
    try:
        setup_django(database_name)
        from django.test import override_settings

        override_settings(**(overrides or {})).enable()
        messages.put("started")
        initialize_sdk(base_url, token_url, resource_path, user_name)
        messages.put("finished")  # the parent was too slow to kill us
    except BaseException as exc:
        messages.put(f"error: {describe(exc)}")
