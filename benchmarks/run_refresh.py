"""One database: the refresh path, the store's coordinated refresh against the SDK refreshing
alone, with a fake Zoho answering after 0, 0.2 and 3 s. Writes JSON to ``--out``.

    python -m benchmarks.run_refresh --db sqlite --out /tmp/r.json

Real threads, each with its own database connection (kept across rounds, warmed up before
any timing, closed at the end), the real store and the real SDK, the fake Zoho of
``zoho_tokens.testing`` on 127.0.0.1 in this process. Every round runs each scenario once,
in this order, on its own row:

- ``plain``: ``find_token_by_id`` of a token valid for an hour (no refresh), 30 calls; the
  round's figure is their median: the reference for a lookup.
- ``claimed``: the same, for a token valid 30 s more whose refresh another worker has claimed
  (no thread at Zoho): what a worker arriving during a refresh does, alone: one claim attempt
  that fails, one more read.
- ``winner`` and ``waiter_expired``: the token expired a second ago. One thread looks it up
  and refreshes it; a second looks the same token up as soon as the winner's call has
  reached Zoho (the fake counts a call when it arrives, before its delay) and waits for the
  winner's answer. ``waiter_added`` is how much later than the winner it got its token.
- ``waiter_valid``: the same, with a token that expires in 30 s (inside the store's 60 s
  margin, outside the SDK's 5 s): the second thread is handed the current token at once.
- ``store_n`` and ``sdk_n``: N threads at once (a barrier) call
  ``Initializer.switch_user(OAuthToken(user_signature=...))`` for one expired token, which
  asks the store (``find_token``); the store refreshes once, or, with
  ``ZOHO_TOKENS_REFRESH = False`` (``sdk_n``), the SDK refreshes in every thread and saves.
  Figures are each thread's latency.

Zoho calls are the fake's count of refresh calls during the scenario.
"""

from __future__ import annotations

import argparse
import os
import queue
import secrets
import statistics
import sys
import threading
import time
import traceback
from collections.abc import Callable, Sequence
from datetime import timedelta
from typing import Any

from .common import CLIENT_ID, CLIENT_SECRET, REDIRECT_URL, emit
from .run_store import DBS, configure_django, environment

DELAYS = (0.0, 0.2, 3.0)
PLAIN_CALLS = 30
WAIT = 30.0  # seconds any thread waits for another before the run fails
EXPIRED_MS = -1000  # the access token expired a second ago
VALID_IN_MARGIN_MS = 30_000  # inside the store's 60 s margin, outside the SDK's 5 s
VALID_MS = 3_600_000


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def now_ms() -> int:
    return int(time.time() * 1000)


# --- threads with their own connections ------------------------------------------------------


class Pool:
    """Long-lived threads, each with its own database connection (Django's are per thread).

    ``run(tasks)`` gives task i to thread i and returns their results in order; a task that
    raised fails the run with its traceback.
    """

    def __init__(self, size: int) -> None:
        self.inboxes: list[queue.Queue[Callable[[], Any] | None]] = [queue.Queue() for _ in range(size)]
        self.outbox: queue.Queue[tuple[int, bool, Any]] = queue.Queue()
        self.threads = [
            threading.Thread(target=self._serve, args=(i,), name=f"bench-{i}", daemon=True)
            for i in range(size)
        ]
        for thread in self.threads:
            thread.start()

    def _serve(self, index: int) -> None:
        from django.db import connections

        try:
            for task in iter(self.inboxes[index].get, None):
                try:
                    self.outbox.put((index, True, task()))
                except BaseException as exc:
                    self.outbox.put((index, False, f"{type(exc).__name__}: {exc}\n{traceback.format_exc()}"))
        finally:
            connections.close_all()  # this thread's connections

    def run(self, tasks: Sequence[Callable[[], Any]]) -> list[Any]:
        # Put in reverse order: a task that waits for another is queued first.
        for index in reversed(range(len(tasks))):
            self.inboxes[index].put(tasks[index])
        results: dict[int, Any] = {}
        errors: list[str] = []
        for _ in tasks:
            index, ok, value = self.outbox.get(timeout=3 * WAIT)
            if ok:
                results[index] = value
            else:
                errors.append(f"thread {index}: {value}")
        if errors:
            raise RuntimeError("\n".join(errors))
        return [results[index] for index in range(len(tasks))]

    def close(self) -> None:
        for inbox in self.inboxes:
            inbox.put(None)
        for thread in self.threads:
            thread.join(timeout=WAIT)


def wait_until(condition: Callable[[], bool], what: str) -> None:
    give_up = time.perf_counter() + WAIT
    while not condition():
        if time.perf_counter() > give_up:
            raise TimeoutError(f"waited {WAIT:.0f} s for {what}")
        time.sleep(0.0002)


# --- rows -----------------------------------------------------------------------------------


class Rows:
    """One row per scenario, its refresh token issued by the fake Zoho; created through the ORM."""

    def __init__(self, fake: Any) -> None:
        from zoho_tokens.models import ZohoToken

        self.by_name: dict[str, Any] = {}
        names = ("plain", "claimed", "pair_expired", "pair_valid", "store_n", "sdk_n")
        for number, name in enumerate(names, start=1):
            email, zgid = f"{name}@example.com", str(90000 + number)
            self.by_name[name] = ZohoToken.objects.create(
                user_name=f"{email}:{zgid}",
                client_id=CLIENT_ID,
                client_secret=CLIENT_SECRET,
                refresh_token=fake.issue_refresh_token(email, zgid),
                access_token=f"1000.{secrets.token_hex(16)}.{secrets.token_hex(16)}",
                expiry_time=now_ms() + VALID_MS,
                redirect_url=REDIRECT_URL,
                api_domain=fake.base_url,
            )

    def __getitem__(self, name: str) -> Any:
        return self.by_name[name]

    def expire_in(self, name: str, ms: int) -> str:
        """Sets the row's expiry ``ms`` from now, as time passing would; returns its access token."""
        from zoho_tokens.models import ZohoToken

        row = self.by_name[name]
        ZohoToken.objects.filter(pk=row.pk).update(expiry_time=now_ms() + ms)
        return ZohoToken.objects.get(pk=row.pk).access_token  # type: ignore[no-any-return]


# --- scenarios --------------------------------------------------------------------------------


class Bench:
    def __init__(self, pool: Pool, fake: Any, rows: Rows, threads: int) -> None:
        from zoho_tokens.store import DjangoTokenStore

        self.pool = pool
        self.fake = fake
        self.rows = rows
        self.threads = threads
        self.store = DjangoTokenStore()

    def calls(self) -> int:
        return self.fake.count("refresh_token")  # type: ignore[no-any-return]

    def plain(self, name: str = "plain") -> dict[str, Any]:
        token_id = self.rows[name].token_id
        find = self.store.find_token_by_id

        def lookups() -> list[float]:
            took = []
            for _ in range(PLAIN_CALLS):
                begun = time.perf_counter()
                find(token_id)
                took.append(time.perf_counter() - begun)
            return took

        before = self.calls()
        (took,) = self.pool.run([lookups])
        return {"plain": statistics.median(took), "calls": self.calls() - before, "ok": True}

    def claimed(self) -> dict[str, Any]:
        """``plain`` for a token inside the margin whose refresh another worker holds."""
        from django.utils import timezone

        from zoho_tokens.models import ZohoToken

        ZohoToken.objects.filter(pk=self.rows["claimed"].pk).update(
            expiry_time=now_ms() + VALID_IN_MARGIN_MS,
            refresh_claimed_by="another-worker",
            refresh_claimed_until=timezone.now() + timedelta(seconds=WAIT),
        )
        return self.plain("claimed")

    def pair(self, name: str, expires_in_ms: int) -> dict[str, Any]:
        """A winner that refreshes, and a second worker arriving while its call is at Zoho."""
        old_access_token = self.rows.expire_in(name, expires_in_ms)
        token_id = self.rows[name].token_id
        before = self.calls()

        def winner() -> tuple[float, float, str]:
            begun = time.perf_counter()
            token = self.store.find_token_by_id(token_id)
            return begun, time.perf_counter(), token.get_access_token()

        def waiter() -> tuple[float, float, str]:
            wait_until(lambda: self.calls() > before, "the winner's call to Zoho")
            begun = time.perf_counter()
            token = self.store.find_token_by_id(token_id)
            return begun, time.perf_counter(), token.get_access_token()

        (w0, w1, won), (s0, s1, got) = self.pool.run([winner, waiter])
        calls = self.calls() - before
        if expires_in_ms < 0:
            ok = calls == 1 and got == won != old_access_token
        else:
            ok = calls == 1 and won != old_access_token and got in (won, old_access_token)
        return {
            "winner": w1 - w0,
            "waiter": s1 - s0,
            "added": s1 - w1,  # the waiter had its token this much after the winner
            "remaining": w1 - s0,  # the winner's time left when the waiter started
            "in_flight": s1 < w1,  # the waiter was done before the winner
            "calls": calls,
            "ok": ok,
        }

    def stampede(self, name: str, refresh_by_store: bool) -> dict[str, Any]:
        """N threads at once ask the SDK for one expired token (``Initializer.switch_user``)."""
        from django.test import override_settings
        from zohocrmsdk.src.com.zoho.api.authenticator.oauth_token import OAuthToken
        from zohocrmsdk.src.com.zoho.crm.api.initializer import Initializer
        from zohocrmsdk.src.com.zoho.crm.api.user_signature import UserSignature

        user_name = self.rows[name].user_name
        old_access_token = self.rows.expire_in(name, EXPIRED_MS)
        barrier = threading.Barrier(self.threads, timeout=WAIT)

        def switch() -> tuple[float, str]:
            token = OAuthToken(user_signature=UserSignature(user_name))
            barrier.wait()
            begun = time.perf_counter()
            Initializer.switch_user(token=token)  # get_token(): the store's find_token
            return time.perf_counter() - begun, token.get_access_token()

        before = self.calls()
        with override_settings(ZOHO_TOKENS_REFRESH=refresh_by_store):
            results = self.pool.run([switch] * self.threads)
        calls = self.calls() - before
        tokens = {access_token for _, access_token in results}
        if refresh_by_store:
            ok = calls == 1 and len(tokens) == 1 and old_access_token not in tokens
        else:
            ok = old_access_token not in tokens  # each thread refreshed, or found a faster one's token
        return {
            "latencies": [took for took, _ in results],
            "calls": calls,
            "access_tokens": len(tokens),  # distinct access tokens the threads went on with
            "ok": ok,
        }

    def warm_up(self) -> None:
        """Every thread: connection open, lookups compiled and prepared, the SDK switched once;
        one refresh of each kind, untimed."""
        from zohocrmsdk.src.com.zoho.api.authenticator.oauth_token import OAuthToken
        from zohocrmsdk.src.com.zoho.crm.api.initializer import Initializer
        from zohocrmsdk.src.com.zoho.crm.api.user_signature import UserSignature

        token_id, user_name = self.rows["plain"].token_id, self.rows["plain"].user_name

        def warm() -> None:
            for _ in range(10):
                self.store.find_token_by_id(token_id)
            Initializer.switch_user(token=OAuthToken(user_signature=UserSignature(user_name)))

        self.pool.run([warm] * self.threads)
        self.fake.set_delay(0, "refresh_token")
        self.pair("pair_expired", EXPIRED_MS)
        self.stampede("store_n", True)
        self.stampede("sdk_n", False)


def summary(samples: Sequence[float]) -> dict[str, Any]:
    """Milliseconds: median, min, max of ``samples`` (seconds)."""
    ms = [s * 1000 for s in samples]
    return {"samples_ms": ms, "median": statistics.median(ms), "min": min(ms), "max": max(ms)}


def measure(bench: Bench, delay: float, rounds: int, db: str) -> list[dict[str, Any]]:
    bench.fake.set_delay(delay, "refresh_token")
    per_round: dict[str, list[dict[str, Any]]] = {
        "plain": [],
        "claimed": [],
        "pair_expired": [],
        "pair_valid": [],
        "store_n": [],
        "sdk_n": [],
    }
    for number in range(rounds):
        per_round["plain"].append(bench.plain())
        per_round["claimed"].append(bench.claimed())
        per_round["pair_expired"].append(bench.pair("pair_expired", EXPIRED_MS))
        per_round["pair_valid"].append(bench.pair("pair_valid", VALID_IN_MARGIN_MS))
        per_round["store_n"].append(bench.stampede("store_n", True))
        per_round["sdk_n"].append(bench.stampede("sdk_n", False))
        log(f"  [{db}] Zoho {delay:g} s: round {number + 1}/{rounds} done")

    def result(
        measure: str, scenario: str, samples: list[float], lookups: int, **extra: Any
    ) -> dict[str, Any]:
        rounds_of = per_round[scenario]
        return {
            "delay": delay,
            "measure": measure,
            **summary(samples),
            "rounds": len(rounds_of),
            "calls": [r["calls"] for r in rounds_of],
            "lookups": lookups,
            "ok": [r["ok"] for r in rounds_of],
            **extra,
        }

    expired, valid = per_round["pair_expired"], per_round["pair_valid"]
    return [
        result("plain", "plain", [r["plain"] for r in per_round["plain"]], PLAIN_CALLS),
        result("winner", "pair_expired", [r["winner"] for r in expired], 2),
        result(
            "waiter_expired",
            "pair_expired",
            [r["waiter"] for r in expired],
            2,
            remaining_ms=statistics.median(r["remaining"] * 1000 for r in expired),
        ),
        result("waiter_added", "pair_expired", [r["added"] for r in expired], 2),
        result("claimed", "claimed", [r["plain"] for r in per_round["claimed"]], PLAIN_CALLS),
        result(
            "waiter_valid",
            "pair_valid",
            [r["waiter"] for r in valid],
            2,
            in_flight=sum(r["in_flight"] for r in valid),
            winner_ms=statistics.median(r["winner"] * 1000 for r in valid),
        ),
        *(
            result(
                scenario,
                scenario,
                [took for r in per_round[scenario] for took in r["latencies"]],
                bench.threads,
                access_tokens=[r["access_tokens"] for r in per_round[scenario]],
            )
            for scenario in ("store_n", "sdk_n")
        ),
    ]


# --- main -------------------------------------------------------------------------------------


def delays(text: str) -> list[float]:
    return [float(part) for part in text.split(",") if part.strip()]


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--db", choices=DBS, required=True)
    parser.add_argument(
        "--delays", type=delays, default=list(DELAYS), help="Zoho's delays in s, e.g. 0,0.2,3"
    )
    parser.add_argument("--rounds", type=int, default=5, help="rounds per delay under 1 s")
    parser.add_argument("--slow-rounds", type=int, default=3, help="rounds per delay of 1 s or more")
    parser.add_argument("--threads", type=int, default=4, help="threads asking for one expired token at once")
    parser.add_argument("--out", required=True)
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> None:
    args = parse_args(argv)
    if args.threads < 2:
        raise SystemExit("--threads must be at least 2 (the pair scenarios use two)")
    db = args.db
    started = time.perf_counter()
    payload: dict[str, Any] = {
        "kind": "refresh",
        "db": db,
        "threads": args.threads,
        "loadavg_start": os.getloadavg(),
    }
    from zoho_tokens.testing.fake_zoho import FakeZoho

    with FakeZoho() as fake, environment(db) as sqlite_path:
        configure_django(db, sqlite_path, {"ZOHO_TOKENS_TOKEN_URL": fake.token_url})
        from django.conf import settings
        from django.core.management import call_command
        from django.db import connection
        from zohocrmsdk.src.com.zoho.api.authenticator.oauth_token import OAuthToken
        from zohocrmsdk.src.com.zoho.crm.api.initializer import Initializer
        from zohocrmsdk.src.com.zoho.crm.api.user_signature import UserSignature

        from zoho_tokens.conf import app_settings
        from zoho_tokens.store import DjangoTokenStore

        call_command("migrate", "zoho_tokens", verbosity=0)
        rows = Rows(fake)
        # Once per process, with a token that needs no refresh: no call to Zoho.
        Initializer.initialize(
            environment=fake.environment(),
            token=OAuthToken(user_signature=UserSignature(rows["plain"].user_name)),
            store=DjangoTokenStore(),
            resource_path=os.path.dirname(sqlite_path),
        )
        connection.close()  # the main thread only writes expiries from now on; reopened on use
        payload["settings"] = {
            "ZOHO_TOKENS_REFRESH_MARGIN": app_settings.REFRESH_MARGIN,
            "ZOHO_TOKENS_REFRESH_TIMEOUT": app_settings.REFRESH_TIMEOUT,
            "OPTIONS": settings.DATABASES["default"].get("OPTIONS", {}),
        }
        pool = Pool(args.threads)
        try:
            bench = Bench(pool, fake, rows, args.threads)
            bench.warm_up()
            results: list[dict[str, Any]] = []
            for delay in args.delays:
                rounds = args.slow_rounds if delay >= 1 else args.rounds
                log(f"[{db}] Zoho answering after {delay:g} s: {rounds} rounds")
                results += measure(bench, delay, rounds, db)
            payload["results"] = results
        finally:
            pool.close()
            connection.close()
    payload["seconds"] = time.perf_counter() - started
    payload["loadavg_end"] = os.getloadavg()
    emit(args.out, payload)
    log(f"[{db}] refresh path done in {payload['seconds']:.0f}s")


if __name__ == "__main__":
    main()
