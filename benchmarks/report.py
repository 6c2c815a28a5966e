"""The table and the PASS/FAIL verdicts, from the workers' JSON."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from .common import DJANGO_CURSOR_OPERATIONS, DJANGO_CURSOR_STORE, OPERATIONS

DBS = ("sqlite", "postgresql", "mysql")
OURS = "DjangoTokenStore"
ITER = "iter_tokens (streamed)"
# Lookup targets: minimum share of the raw indexed SELECT on the same database.
LOOKUP_SHARE = {"sqlite": 1 / 5, "postgresql": 1 / 2, "mysql": 1 / 2}
SAVE_SHARE = 1 / 2
SCALING_LOSS = 0.20
FILESTORE_FACTOR = 10
# Bounded: iter_tokens' peak on the largest table at most twice its peak on the smallest, plus
# 2 MiB of slack (a chunk of 500 decrypted tokens is ~1.6 MiB; a tiny table is under one chunk).
MEMORY_GROWTH = 2.0
MEMORY_SLACK_MIB = 2.0


def fmt_rate(value: float | None) -> str:
    if value is None:
        return "-"
    if value >= 100:
        return f"{value:,.0f}"
    if value >= 10:
        return f"{value:.1f}"
    return f"{value:.2f}"


def fmt_ratio(value: float | None) -> str:
    if value is None:
        return "-"
    if value >= 10:
        return f"{value:.0f}x"
    return f"{value:.2f}x" if value >= 0.1 else f"1/{1 / value:.0f}"


class Results:
    def __init__(self, runs: Iterable[dict[str, Any]]) -> None:
        self.runs = [run for run in runs if "results" in run]
        self.failed = [run for run in runs if "results" not in run]
        self.rates: dict[tuple[str, str, int, str], dict[str, Any]] = {}
        self.memory: dict[tuple[str, str, int], dict[str, Any]] = {}
        for run in self.runs:
            for r in run["results"]:
                self.rates[(r["store"], r["db"], r["rows"], r["op"])] = r
            for m in run.get("memory", []):
                self.memory[(m["store"], m["db"], m["rows"])] = m

    def median(self, store: str, db: str, rows: int, op: str) -> float | None:
        r = self.rates.get((store, db, rows, op))
        return r["median"] if r else None

    def raw(self, db: str, rows: int, op: str) -> float | None:
        return self.median(f"raw {db}", db, rows, op)

    def sizes(self, store: str = OURS) -> list[int]:
        return sorted({rows for (s, _, rows, _) in self.rates if s == store})

    def dbs(self) -> list[str]:
        present = {db for (s, db, _, _) in self.rates if s == OURS}
        return [db for db in DBS if db in present]

    def peak(self, store: str, db: str, rows: int, what: str) -> float | None:
        m = self.memory.get((store, db, rows), {}).get(what)
        return m["peak_mib"] if m else None


def table(res: Results) -> list[str]:
    lines = [
        f"| {'rows':>7} | {'operation':<44} | {'store':<31} | {'db':<10} | {'median/s':>9} | "
        f"{'min/s':>9} | {'max/s':>9} | {'vs raw':>7} | {'peak MiB':>8} |",
        f"|{'-' * 9}|{'-' * 46}|{'-' * 33}|{'-' * 12}|{'-' * 11}|{'-' * 11}|{'-' * 11}|{'-' * 9}|{'-' * 10}|",
    ]
    all_sizes = sorted({rows for (_, _, rows, _) in res.rates})
    stores = [(f"raw {db}", db) for db in DBS] + [(OURS, db) for db in DBS]
    stores += [(DJANGO_CURSOR_STORE, db) for db in DBS]
    stores += [("SDK DBStore", "mysql"), ("SDK FileStore", "file")]
    order = {key: i for i, key in enumerate(stores)}

    def row_line(
        rows: int, op: str, store: str, db: str, r: dict[str, Any] | None, peak: float | None
    ) -> str:
        median = r["median"] if r else None
        base = res.raw(db, rows, op) if db != "file" else None
        ratio = (median / base) if (median and base and not store.startswith("raw")) else None
        vs = "floor" if store.startswith("raw") else fmt_ratio(ratio)
        return (
            f"| {rows:>7,} | {op:<44} | {store:<31} | {db:<10} | {fmt_rate(median):>9} | "
            f"{fmt_rate(r['min'] if r else None):>9} | {fmt_rate(r['max'] if r else None):>9} | "
            f"{vs:>7} | {'-' if peak is None else f'{peak:.1f}':>8} |"
        )

    for rows in all_sizes:
        for op in OPERATIONS:
            keys = sorted(
                ((s, db) for (s, db, n, o) in res.rates if n == rows and o == op),
                key=lambda k: order.get(k, 99),
            )
            for store, db in keys:
                peak = res.peak(store, db, rows, "get_tokens") if op == "get_tokens" else None
                lines.append(row_line(rows, op, store, db, res.rates[(store, db, rows, op)], peak))
            if op == "get_tokens":
                for db in DBS:
                    peak = res.peak(OURS, db, rows, "iter_tokens")
                    if peak is not None:
                        walked = res.memory[(OURS, db, rows)]["iter_tokens"].get("tokens", rows)
                        label = ITER if walked >= rows else f"{ITER}, first {walked:,}"
                        lines.append(row_line(rows, label, OURS, db, None, peak))
    return lines


class Verdicts:
    def __init__(self) -> None:
        self.lines: list[str] = []
        self.failed: list[str] = []

    def add(self, name: str, checks: list[tuple[bool | None, str]]) -> None:
        known = [ok for ok, _ in checks if ok is not None]
        if not known:
            verdict = "N/A "
        elif all(known):
            verdict = "PASS"
        else:
            verdict = "FAIL"
            self.failed.append(name)
        self.lines.append(f"{verdict}  {name}")
        for ok, detail in checks:
            mark = "ok  " if ok else ("n/a " if ok is None else "MISS")
            self.lines.append(f"        {mark} {detail}")


def targets(res: Results) -> Verdicts:
    v = Verdicts()
    sizes = res.sizes()
    for op in ("find_token_by_id", "find_token(user name)"):
        checks = []
        for db in res.dbs():
            for rows in sizes:
                ours, raw = res.median(OURS, db, rows, op), res.raw(db, rows, op)
                need = LOOKUP_SHARE[db]
                if ours is None or raw is None:
                    checks.append((None, f"{db} {rows:,}: not measured"))
                    continue
                checks.append(
                    (
                        ours / raw >= need,
                        f"{db} {rows:,}: {fmt_rate(ours)}/s = {fmt_ratio(ours / raw)} of raw "
                        f"{fmt_rate(raw)}/s, needs >= {fmt_ratio(need)}",
                    )
                )
        v.add(f"{op} (decryption included) >= 1/5 raw on SQLite, >= 1/2 on PostgreSQL/MariaDB", checks)

    checks = []
    for db in res.dbs():
        for rows in sizes:
            ours, raw = (
                res.median(OURS, db, rows, "save_token(update)"),
                res.raw(db, rows, "save_token(update)"),
            )
            if ours is None or raw is None:
                continue
            checks.append(
                (
                    ours / raw >= SAVE_SHARE,
                    f"{db} {rows:,}: {fmt_rate(ours)}/s = {fmt_ratio(ours / raw)} of raw durable "
                    f"UPDATE+COMMIT {fmt_rate(raw)}/s",
                )
            )
    v.add("save_token(update) >= 1/2 of raw durable UPDATE+COMMIT", checks)

    checks = []
    if len(sizes) >= 2:
        small, large = sizes[0], sizes[-1]
        for db in res.dbs():
            for op in OPERATIONS:
                if op == "get_tokens":
                    continue
                a, b = res.median(OURS, db, small, op), res.median(OURS, db, large, op)
                if a is None or b is None:
                    continue
                ra, rb = res.raw(db, small, op), res.raw(db, large, op)
                raw_note = f" (raw: {rb / ra - 1:+.0%})" if ra and rb else ""
                checks.append(
                    (
                        b >= (1 - SCALING_LOSS) * a,
                        f"{db} {op}: {fmt_rate(a)}/s at {small:,} -> {fmt_rate(b)}/s at {large:,} "
                        f"({b / a - 1:+.0%}){raw_note}",
                    )
                )
    v.add(f"at the largest table no operation but get_tokens slower by more than {SCALING_LOSS:.0%}", checks)

    checks = []
    if len(sizes) >= 2:
        small, large = sizes[0], sizes[-1]
        for db in res.dbs():
            a, b = res.peak(OURS, db, small, "iter_tokens"), res.peak(OURS, db, large, "iter_tokens")
            if a is None or b is None:
                continue
            checks.append(
                (
                    b <= MEMORY_GROWTH * a + MEMORY_SLACK_MIB,
                    f"{db}: iter_tokens peak {a:.1f} MiB at {small:,} rows -> {b:.1f} MiB at {large:,} "
                    f"(bounded: <= {MEMORY_GROWTH:g}x + {MEMORY_SLACK_MIB:g} MiB)",
                )
            )
    v.add("get_tokens memory bounded: iter_tokens() streams (peak independent of table size)", checks)

    checks = []
    file_rows = min(res.sizes("SDK FileStore"), default=None)
    for db in res.dbs():
        rows = sizes[0] if sizes else None
        for op in OPERATIONS:
            if op == "get_tokens" or rows is None or file_rows is None:
                continue
            ours, theirs = res.median(OURS, db, rows, op), res.median("SDK FileStore", "file", file_rows, op)
            if ours is None or theirs is None:
                continue
            # Where the raw query itself is not 10x FileStore, no store on that database can be.
            raw = res.raw(db, rows, op)
            raw_note = f"; the raw query itself: {raw / theirs:.1f}x" if raw else ""
            checks.append(
                (
                    ours >= FILESTORE_FACTOR * theirs,
                    f"{db} {op}: {fmt_rate(ours)}/s vs FileStore {fmt_rate(theirs)}/s "
                    f"= {ours / theirs:.1f}x (rows {rows:,} vs {file_rows:,}{raw_note})",
                )
            )
    v.add(f"every operation but get_tokens >= {FILESTORE_FACTOR}x the SDK's FileStore at 1,000 rows", checks)

    checks = []
    for rows in res.sizes("SDK DBStore"):
        for op in OPERATIONS:
            ours, theirs = res.median(OURS, "mysql", rows, op), res.median("SDK DBStore", "mysql", rows, op)
            if ours is None or theirs is None:
                continue
            checks.append(
                (
                    ours > theirs,
                    f"mysql {rows:,} {op}: {fmt_rate(ours)}/s vs DBStore {fmt_rate(theirs)}/s "
                    f"= {ours / theirs:.2f}x",
                )
            )
    v.add("every operation ahead of the SDK's DBStore on MariaDB", checks)

    checks = []
    for db in res.dbs():
        for rows in sizes:
            for op in DJANGO_CURSOR_OPERATIONS:
                ours, routed = res.median(OURS, db, rows, op), res.median(DJANGO_CURSOR_STORE, db, rows, op)
                if ours is None or routed is None:
                    continue
                checks.append(
                    (
                        None,
                        f"{db} {rows:,} {op}: {fmt_rate(routed)}/s = {routed / ours:.2f}x of the "
                        f"driver cursor's {fmt_rate(ours)}/s",
                    )
                )
    v.add("cost of ZOHO_TOKENS_DJANGO_CURSOR (informational)", checks)
    return v


def header(runs: list[dict[str, Any]], meta: dict[str, Any]) -> list[str]:
    lines = [f"{key}: {value}" for key, value in meta.items()]
    for run in runs:
        name = "FileStore" if run.get("db") == "file" else run.get("db")
        if "error" in run:
            lines.append(f"{name} {run.get('rows'):,}: FAILED: {run['error']}")
            continue
        extra = ""
        if run.get("db_settings"):
            extra = ", ".join(f"{k}={v}" for k, v in run["db_settings"].items())
        load = run.get("loadavg_start", [0])[0], run.get("loadavg_end", [0])[0]
        lines.append(
            f"{name} {run['rows']:,} rows: {run.get('seconds', 0):.0f}s, "
            f"load avg {load[0]:.1f}->{load[1]:.1f}"
            + (f"; {run['driver']}" if run.get("driver") else "")
            + (f"; {extra}" if extra else "")
        )
    return lines


NOTES = [
    "Notes:",
    "- ops/s of one thread; 'vs raw' = the store's median / the raw driver query's median on the same",
    "  database, table size and operation, measured interleaved in the same process.",
    "- DjangoTokenStore figures decrypt every secret on every read (the store keeps no cache).",
    "- 'DjangoTokenStore, Django cursor': ZOHO_TOKENS_DJANGO_CURSOR on, lookups through Django's",
    "  cursor wrapper (what tools patching CursorWrapper see) instead of the driver's cursor.",
    "- save_token(update) = what the SDK saves after a refresh (full token, new access token, later",
    "  expiry); raw floor = UPDATE access_token, digest, expiry, updated_at by token_id + COMMIT.",
    "- SDK DBStore: mysql-connector, a new connection per call, table as in the SDK's README",
    "  (primary key only, so user/refresh/access lookups scan the table). SDK FileStore: CSV, no",
    "  fsync; measured at 1,000 and 10,000 rows only (it reads the whole file on every call).",
    "- peak MiB: tracemalloc peak of get_tokens() (the list; traced up to 10,000 rows unless",
    "  --full-memory) and of walking iter_tokens().",
]


# --- the refresh path (benchmarks.run_refresh) --------------------------------------------

REFRESH_MEASURES = (
    ("plain", "plain lookup, token valid (reference)"),
    ("winner", "winner: the lookup that refreshes"),
    ("waiter_expired", "waiting worker, token expired"),
    ("waiter_added", "  waited beyond the winner's end"),
    ("claimed", "lookup, 30 s left, claim held, alone"),
    ("waiter_valid", "waiting worker, token valid 30 s more"),
    ("store_n", "{n} threads at once: the store"),
    ("sdk_n", "{n} threads at once: the SDK alone"),
)


def fmt_ms(value: float | None) -> str:
    if value is None:
        return "-"
    if value >= 100:
        return f"{value:,.0f}"
    if value >= 10:
        return f"{value:.1f}"
    return f"{value:.2f}"


def _spread(values: list[int]) -> str:
    low, high = min(values), max(values)
    return str(low) if low == high else f"{low}-{high}"


def _refresh_note(r: dict[str, Any]) -> str:
    measure = r["measure"]
    if measure in ("plain", "claimed"):
        return "median of 30 calls a round"
    if measure == "winner":
        return f"Zoho's delay + {r['median'] - 1000 * r['delay']:.1f} ms"
    if measure == "waiter_expired":
        return f"started {r['remaining_ms']:.0f} ms before the winner's end"
    if measure == "waiter_valid":
        return f"done during the refresh: {r['in_flight']}/{r['rounds']}"
    if measure in ("store_n", "sdk_n"):
        return f"per thread; {_spread(r['access_tokens'])} access token(s) a round"
    return ""


def refresh_table(runs: list[dict[str, Any]]) -> list[str]:
    lines = [
        f"| {'db':<10} | {'Zoho':>5} | {'measurement':<38} | {'median ms':>9} | {'min ms':>8} | "
        f"{'max ms':>8} | {'rounds':>6} | {'calls / lookups':>15} | {'note':<42} |",
        f"|{'-' * 12}|{'-' * 7}|{'-' * 40}|{'-' * 11}|{'-' * 10}|{'-' * 10}|{'-' * 8}|{'-' * 17}|{'-' * 44}|",
    ]
    order = {name: i for i, (name, _) in enumerate(REFRESH_MEASURES)}
    labels = dict(REFRESH_MEASURES)
    for run in sorted(runs, key=lambda run: DBS.index(run["db"]) if run["db"] in DBS else 99):
        results = sorted(run.get("results", []), key=lambda r: (r["delay"], order.get(r["measure"], 99)))
        for r in results:
            label = labels.get(r["measure"], r["measure"]).format(n=run.get("threads", "N"))
            calls = "" if r["measure"] == "waiter_added" else f"{_spread(r['calls'])} / {r['lookups']}"
            lines.append(
                f"| {run['db']:<10} | {r['delay']:>4g}s | {label:<38} | {fmt_ms(r['median']):>9} | "
                f"{fmt_ms(r['min']):>8} | {fmt_ms(r['max']):>8} | {r['rounds']:>6} | {calls:>15} | "
                f"{_refresh_note(r):<42} |"
            )
    return lines


def refresh_checks(runs: list[dict[str, Any]]) -> Verdicts:
    v = Verdicts()
    checks: list[tuple[bool | None, str]] = []
    informational: list[tuple[bool | None, str]] = []
    for run in runs:
        by_delay: dict[float, dict[str, dict[str, Any]]] = {}
        for r in run.get("results", []):
            by_delay.setdefault(r["delay"], {})[r["measure"]] = r
        for delay, measures in sorted(by_delay.items()):
            store = [measures[m] for m in ("winner", "waiter_valid", "store_n") if m in measures]
            rounds = sum(len(r["ok"]) for r in store)
            good = sum(sum(r["ok"]) for r in store)
            checks.append(
                (
                    good == rounds,
                    f"{run['db']} Zoho {delay:g} s: {good}/{rounds} scenario rounds with one Zoho call and "
                    f"every waiting worker on the winner's token",
                )
            )
            sdk = measures.get("sdk_n")
            if sdk:
                informational.append(
                    (None, f"{run['db']} Zoho {delay:g} s: Zoho calls per round {sdk['calls']}")
                )
    v.add("the store: one Zoho call per expiry, whoever asks, and the waiting workers get its token", checks)
    v.add("the SDK alone: one Zoho call per thread (informational)", informational)
    return v


def refresh_header(runs: list[dict[str, Any]]) -> list[str]:
    lines = []
    for run in runs:
        if "error" in run:
            lines.append(f"{run['db']} refresh path: FAILED: {run['error']}")
            continue
        options = run.get("settings", {})
        load = run.get("loadavg_start", [0])[0], run.get("loadavg_end", [0])[0]
        lines.append(
            f"{run['db']} refresh path: {run.get('seconds', 0):.0f}s, load avg {load[0]:.1f}->{load[1]:.1f}"
            + "".join(f"; {k}={v}" for k, v in options.items() if v)
        )
    return lines


REFRESH_NOTES = [
    "Notes:",
    "- milliseconds of wall time per lookup, real threads with their own database connections;",
    "  'Zoho' = the fake Zoho's delay before it answers a refresh (over HTTP on 127.0.0.1).",
    "- winner / waiting worker: find_token_by_id of one token in two threads; the second starts as",
    "  soon as the winner's call has reached Zoho. Waiting for an expired token, it polls the row",
    "  after 50 ms, then 1.5x longer each time, at most 500 ms apart: 'waited beyond the winner's",
    "  end' is the waiting worker's end minus the winner's end (negative: it read the new token",
    "  before the winner's own lookup had returned).",
    "- token valid 30 s more: inside the store's 60 s margin (it refreshes), outside the SDK's 5 s:",
    "  the waiting worker tries the claim once, reads the row again and goes on with the token.",
    "  'claim held, alone': that path in one thread, a claim left on the row and nobody at Zoho.",
    "- N threads at once: Initializer.switch_user(OAuthToken(user_signature=...)) in every thread",
    "  (a barrier starts them), the store's find_token behind it; 'the SDK alone' is the same with",
    "  ZOHO_TOKENS_REFRESH = False: every thread refreshes at Zoho and saves its own access token.",
]


def render(
    runs: list[dict[str, Any]], meta: dict[str, Any], refresh_runs: list[dict[str, Any]] | None = None
) -> tuple[str, Verdicts]:
    out = ["", *header(runs, meta)]
    verdicts = Verdicts()
    if runs:
        res = Results(runs)
        verdicts = targets(res)
        out += ["", *table(res), "", *NOTES, "", "Targets:", *verdicts.lines]
    if refresh_runs:
        checks = refresh_checks([run for run in refresh_runs if "results" in run])
        out += [
            *refresh_header(refresh_runs),
            "",
            "The refresh path: what a lookup costs when the token needs a refresh",
            "",
            *refresh_table([run for run in refresh_runs if "results" in run]),
            "",
            *REFRESH_NOTES,
            "",
            "Checks:",
            *checks.lines,
        ]
        verdicts.lines += checks.lines
        verdicts.failed += checks.failed
    return "\n".join(out), verdicts
