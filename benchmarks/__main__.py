"""``python -m benchmarks``: every store, every database, every table size, in one run.

Each database and table size runs in its own process (``benchmarks.run_store``, which
configures Django for that one database), the SDK's FileStore in ``benchmarks.run_filestore``;
this driver collects their JSON, prints one table and the PASS/FAIL of every target.

    python -m benchmarks                 # 1,000 and 100,000 tokens; FileStore at 1,000 and 10,000
    python -m benchmarks --quick         # smoke run: 200 and 2,000 tokens, fewer and shorter repeats
    python -m benchmarks --refresh-path  # the refresh path instead, Zoho at 0, 0.2 and 3 s (~2.5 min)
    python -m benchmarks --json out.json # also keep the raw figures
    python -m benchmarks --report out.json  # print the table again from a saved run

``--refresh-path`` runs ``benchmarks.run_refresh`` once per database: the latency of the
lookup that refreshes, of a worker waiting for it, and the Zoho calls of four threads
asking at once, with the store refreshing and with the SDK refreshing alone.

Exit status: 0 when every target passes, 1 when one fails, 2 when a worker failed.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import secrets
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from typing import Any

from . import report


def sizes(text: str) -> list[int]:
    return [int(part.replace("_", "").replace(",", "")) for part in text.split(":") if part]


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help="smoke run: small tables, short repeats")
    parser.add_argument("--rows", type=sizes, help="table sizes for the databases, e.g. 1000:100000")
    parser.add_argument("--filestore-rows", type=sizes, help="table sizes for FileStore, e.g. 1000:10000")
    parser.add_argument("--dbs", default="sqlite,postgresql,mysql", help="comma-separated subset")
    parser.add_argument("--repeats", type=int, help="rounds per measurement (default 5, quick 3)")
    parser.add_argument(
        "--duration", type=float, help="seconds per repeat of one operation (0.25, quick 0.05)"
    )
    parser.add_argument("--no-dbstore", action="store_true", help="skip the SDK's DBStore")
    parser.add_argument("--no-filestore", action="store_true", help="skip the SDK's FileStore")
    parser.add_argument(
        "--full-memory", action="store_true", help="also trace get_tokens() (the list) on the largest tables"
    )
    parser.add_argument(
        "--refresh-path",
        action="store_true",
        help="run the refresh-path benchmark (benchmarks.run_refresh) instead of the store tables",
    )
    parser.add_argument(
        "--zoho-delays",
        default="0,0.2,3",
        help="with --refresh-path: the fake Zoho's delays in seconds (default 0,0.2,3)",
    )
    parser.add_argument("--json", help="write every figure to this file")
    parser.add_argument("--report", metavar="JSON", help="print the report of a saved run and exit")
    args = parser.parse_args(argv)
    if args.rows is None:
        args.rows = [200, 2000] if args.quick else [1000, 100_000]
    if args.filestore_rows is None:
        args.filestore_rows = [200] if args.quick else [1000, 10_000]
    if args.repeats is None:
        args.repeats = 3 if args.quick else 5
    if args.duration is None:
        args.duration = 0.05 if args.quick else 0.25
    return args


def run_worker(
    module: str, options: list[str], env: dict[str, str], label: str, identity: dict[str, Any]
) -> dict[str, Any]:
    """Runs one worker process; its JSON, or ``identity`` with the error when it failed."""
    fd, out = tempfile.mkstemp(prefix="zoho_tokens_bench_", suffix=".json")
    os.close(fd)
    command = [sys.executable, "-m", module, *options, "--out", out]
    print(f"--- {label}", file=sys.stderr, flush=True)
    try:
        done = subprocess.run(command, env=env, check=False)
        if done.returncode != 0:
            return {**identity, "error": f"exit {done.returncode}"}
        with open(out, encoding="utf-8") as handle:
            return json.load(handle)  # type: ignore[no-any-return]
    finally:
        os.unlink(out)


def versions() -> dict[str, str]:
    from importlib.metadata import PackageNotFoundError, version

    found = []
    for name in (
        "Django",
        "cryptography",
        "zohocrmsdk8_0",
        "psycopg",
        "mysqlclient",
        "mysql-connector-python",
    ):
        try:
            found.append(f"{name} {version(name)}")
        except PackageNotFoundError:
            found.append(f"{name} missing")
    return {"packages": ", ".join(found)}


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    if args.report:
        with open(args.report, encoding="utf-8") as handle:
            saved = json.load(handle)
        text, verdicts = report.render(saved["runs"], saved["meta"], saved.get("refresh_runs"))
        print(text)
        return 1 if verdicts.failed else 0

    from cryptography.fernet import Fernet

    env = dict(os.environ)
    env["ZOHO_BENCH_ENCRYPTION_KEY"] = Fernet.generate_key().decode()
    env["ZOHO_BENCH_HMAC_KEY"] = secrets.token_urlsafe(48)
    env["PYTHONPATH"] = os.pathsep.join(
        filter(None, [os.path.dirname(os.path.dirname(os.path.abspath(__file__))), env.get("PYTHONPATH")])
    )
    dbs = [d.strip() for d in args.dbs.split(",") if d.strip()]
    if args.refresh_path:
        return refresh_path(args, dbs, env)
    cache_dir = tempfile.mkdtemp(prefix="zoho_tokens_bench_rows_")
    common = ["--repeats", str(args.repeats), "--duration", str(args.duration)]
    started = time.perf_counter()
    runs: list[dict[str, Any]] = []
    try:
        for db in dbs:
            for rows in args.rows:
                options = ["--db", db, "--rows", str(rows), "--cache-dir", cache_dir, *common]
                if args.no_dbstore:
                    options.append("--no-dbstore")
                if args.full_memory:
                    options += ["--list-memory-max-rows", str(max(args.rows))]
                runs.append(
                    run_worker("benchmarks.run_store", options, env, f"{db} {rows}", {"db": db, "rows": rows})
                )
        if not args.no_filestore:
            for rows in args.filestore_rows:
                options = ["--rows", str(rows), *common]
                runs.append(
                    run_worker(
                        "benchmarks.run_filestore", options, env, f"file {rows}", {"db": "file", "rows": rows}
                    )
                )
    finally:
        shutil.rmtree(cache_dir, ignore_errors=True)

    method = (
        f"median of {args.repeats} rounds (min, max shown); each round runs every case of a process "
        f"once, for ~{args.duration}s, interleaved"
    )
    return finish(args, method, started, runs, [])


def refresh_path(args: argparse.Namespace, dbs: list[str], env: dict[str, str]) -> int:
    slow_rounds = max(1, args.repeats - 2)
    options = ["--delays", args.zoho_delays, "--rounds", str(args.repeats), "--slow-rounds", str(slow_rounds)]
    started = time.perf_counter()
    runs = [
        run_worker(
            "benchmarks.run_refresh",
            ["--db", db, *options],
            env,
            f"{db} refresh path",
            {"db": db, "kind": "refresh"},
        )
        for db in dbs
    ]
    method = (
        f"refresh path: {args.repeats} round(s) per Zoho delay under 1 s, {slow_rounds} at 1 s or more; "
        "each round runs every scenario once; median, min and max over the rounds"
    )
    return finish(args, method, started, [], runs)


def finish(
    args: argparse.Namespace,
    method: str,
    started: float,
    runs: list[dict[str, Any]],
    refresh_runs: list[dict[str, Any]],
) -> int:
    meta = {
        "date": datetime.datetime.now().isoformat(timespec="seconds"),
        "machine": f"{platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}",
        **versions(),
        "method": method,
        "total": f"{time.perf_counter() - started:.0f}s",
    }
    text, verdicts = report.render(runs, meta, refresh_runs)
    print(text)
    if args.json:
        with open(args.json, "w", encoding="utf-8") as handle:
            json.dump({"meta": meta, "runs": runs, "refresh_runs": refresh_runs}, handle, indent=1)
    if any("error" in run for run in runs + refresh_runs):
        return 2
    return 1 if verdicts.failed else 0


if __name__ == "__main__":
    sys.exit(main())
