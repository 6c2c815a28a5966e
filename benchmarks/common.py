"""Pieces shared by the benchmark workers: the timing harness, the data set, database addresses."""

from __future__ import annotations

import gc
import json
import os
import random
import statistics
import time
import tracemalloc
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

BENCH_DB_NAME = os.environ.get("ZOHO_BENCH_DB_NAME", "zoho_tokens_bench")
PG = {
    "host": os.environ.get("PGHOST", "127.0.0.1"),
    "port": int(os.environ.get("PGPORT", "5432")),
    "user": os.environ.get("PGUSER", "postgres"),
    "password": os.environ.get("PGPASSWORD", ""),
}
MYSQL = {
    "host": os.environ.get("MYSQL_HOST", "127.0.0.1"),
    "port": int(os.environ.get("MYSQL_PORT", "3306")),
    "user": os.environ.get("MYSQL_USER", "root"),
    "password": os.environ.get("MYSQL_PASSWORD", ""),
}

# Every lookup a store is measured on, in table order.
OPERATIONS = (
    "find_token(user name)",
    "find_token(refresh token)",
    "find_token(access token)",
    "find_token_by_id",
    "save_token(update)",
    "get_tokens",
)
# The store again with ZOHO_TOKENS_DJANGO_CURSOR on: what routing the lookups through
# Django's cursor wrapper (seen by APM agents) costs.
DJANGO_CURSOR_STORE = "DjangoTokenStore, Django cursor"
DJANGO_CURSOR_OPERATIONS = ("find_token(user name)", "find_token_by_id", "get_tokens")
CLIENT_ID = "1000.BENCHCLIENTID0000000000000000000"
CLIENT_SECRET = "0123456789abcdef0123456789abcdef0123456789"
REDIRECT_URL = "https://app.example.com/zoho/callback"
API_DOMAIN = "https://www.zohoapis.com"


# --- the data set ---------------------------------------------------------------


@dataclass(frozen=True)
class Row:
    """One token in clear, shaped like what the SDK saves after its first login."""

    number: int
    user_name: str
    refresh_token: str
    access_token: str
    grant_token: str
    expiry_time: int


def _secret(rng: random.Random, prefix: str) -> str:
    # Zoho's tokens look like "1000.<32 hex>.<32 hex>" (70 characters).
    return f"{prefix}.{rng.getrandbits(128):032x}.{rng.getrandbits(128):032x}"


def make_rows(count: int, seed: int = 20240601) -> list[Row]:
    rng = random.Random(seed)
    expiry = int(time.time() * 1000) + 3_600_000
    return [
        Row(
            number=i,
            user_name=f"user{i}@example.com:{700000000 + i}",
            refresh_token=_secret(rng, "1000"),
            access_token=_secret(rng, "1000"),
            grant_token=_secret(rng, "1000"),
            expiry_time=expiry,
        )
        for i in range(count)
    ]


def sample(rows: Sequence[Row], size: int, seed: int = 7) -> list[Row]:
    """The rows the lookups ask for: random, spread over the whole table."""
    rng = random.Random(seed)
    return rng.sample(list(rows), min(size, len(rows)))


class Counter:
    """Strictly increasing expiries and unique access tokens for the update benchmark."""

    def __init__(self) -> None:
        self.value = int(time.time() * 1000) + 7_200_000
        self.rng = random.Random(99)

    def next_expiry(self) -> str:
        self.value += 1
        return str(self.value)

    def next_access_token(self) -> str:
        return _secret(self.rng, "1000")


# --- the timing harness ------------------------------------------------------------


@dataclass
class Settings:
    repeats: int = 5
    duration: float = 0.25  # seconds per repeat of one operation
    min_calls: int = 3
    max_calls: int = 50_000


@dataclass
class Result:
    store: str
    db: str
    rows: int
    op: str
    samples: list[float] = field(default_factory=list)  # operations per second, one per repeat
    calls: int = 0
    note: str = ""

    def as_dict(self) -> dict[str, Any]:
        return {
            "store": self.store,
            "db": self.db,
            "rows": self.rows,
            "op": self.op,
            "samples": self.samples,
            "median": statistics.median(self.samples) if self.samples else None,
            "min": min(self.samples) if self.samples else None,
            "max": max(self.samples) if self.samples else None,
            "calls": self.calls,
            "note": self.note,
        }


@dataclass
class Case:
    """One operation of one store: ``prepare(n)`` builds the arguments of ``n`` calls outside
    the timed section (fresh ``OAuthToken`` objects, keys), ``call(arg)`` is what is timed.

    ``check(arg)`` runs the operation once, untimed, and raises if its answer is wrong (a
    lookup that silently finds nothing would look fast). ``before``/``after`` run around
    every timed repeat, untimed.
    """

    result: Result
    prepare: Callable[[int], list[Any]]
    call: Callable[[Any], Any]
    check: Callable[[Any], Any] | None = None
    calls_per_repeat: int = 0
    min_calls: int | None = None
    max_repeats: int | None = None
    duration_factor: float = 1.0  # durable writes get longer repeats: fsync latency is spiky
    before: Callable[[], Any] | None = None
    after: Callable[[], Any] | None = None

    def verify(self) -> None:
        if self.check is not None:
            for arg in self.prepare(3):
                self.check(arg)

    def calibrate(self, settings: Settings) -> None:
        min_calls = settings.min_calls if self.min_calls is None else self.min_calls
        n, elapsed = 1, 0.0
        while True:
            elapsed = self._run(n)
            if elapsed >= 0.05 or n >= settings.max_calls:
                break
            n = min(n * 4, settings.max_calls)
        duration = settings.duration * self.duration_factor
        if n == 1 and min_calls == 1 and elapsed >= duration:
            # One call already takes a whole repeat (get_tokens on a large table): keep it.
            self.result.samples.append(1 / elapsed)
            self.result.calls += 1
        rate = n / max(elapsed, 1e-9)
        self.calls_per_repeat = max(min_calls, min(settings.max_calls, int(rate * duration)))

    def _run(self, n: int) -> float:
        args = self.prepare(n)
        if self.before is not None:
            self.before()
        gc.collect()
        call = self.call
        try:
            start = time.perf_counter()
            for arg in args:
                call(arg)
            return time.perf_counter() - start
        finally:
            if self.after is not None:
                self.after()

    def repeat(self) -> None:
        if self.max_repeats is not None and len(self.result.samples) >= self.max_repeats:
            return
        n = self.calls_per_repeat
        elapsed = self._run(n)
        self.result.samples.append(n / elapsed)
        self.result.calls += n


def run_interleaved(cases: Iterable[Case], settings: Settings, log: Callable[[str], None]) -> None:
    """Every case once per round, so slow drifts of the machine's load hit every store alike."""
    cases = list(cases)
    for case in cases:
        case.calibrate(settings)
    for round_number in range(settings.repeats):
        for case in cases:
            case.repeat()
        log(f"  round {round_number + 1}/{settings.repeats} done")


def peak_memory(function: Callable[[], Any]) -> dict[str, float]:
    """Peak traced Python memory (MiB) while ``function`` runs, and its wall time (s, traced)."""
    gc.collect()
    tracemalloc.start()
    tracemalloc.reset_peak()
    start = time.perf_counter()
    try:
        function()
    finally:
        elapsed = time.perf_counter() - start
        _, peak = tracemalloc.get_traced_memory()
        tracemalloc.stop()
    return {"peak_mib": peak / 2**20, "seconds": elapsed}


def consume(iterator: Iterable[Any], limit: int | None = None) -> int:
    """Walk a stream without keeping its items (the first ``limit`` items if given)."""
    count = 0
    for _ in iterator:
        count += 1
        if limit is not None and count >= limit:
            break
    return count


def emit(path: str, payload: dict[str, Any]) -> None:
    with open(path, "w", encoding="utf-8") as handle:
        json.dump(payload, handle, indent=1)
