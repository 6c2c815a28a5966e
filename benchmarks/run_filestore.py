"""The SDK's ``FileStore`` (a CSV file) on one table size. Writes JSON to ``--out``.

    python -m benchmarks.run_filestore --rows 1000 --out /tmp/f.json

FileStore reads (and on save rewrites) the whole file on every call, so it is measured
on small tables only (1,000 and 10,000 rows by default), never on 100,000. Its saves
are not durable: it never calls fsync.
"""

from __future__ import annotations

import argparse
import csv
import os
import shutil
import sys
import tempfile
import time
from collections.abc import Sequence
from typing import Any

from . import common
from .run_store import sdk_id_of, sdk_store_record, sdk_token_cases


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def load(path: str, rows: Sequence[common.Row]) -> Any:
    from zohocrmsdk.src.com.zoho.api.authenticator.store.file_store import FileStore

    store = FileStore(path)  # writes the header line
    with open(path, "a", newline="") as handle:
        writer = csv.writer(handle, delimiter=",", quotechar='"', quoting=csv.QUOTE_MINIMAL)
        writer.writerows(sdk_store_record(r) for r in rows)
    return store


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--rows", type=int, required=True)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--duration", type=float, default=0.25)
    parser.add_argument("--sample", type=int, default=1000)
    parser.add_argument("--no-memory", action="store_true")
    parser.add_argument("--out", required=True)
    args = parser.parse_args(argv)

    started = time.perf_counter()
    payload: dict[str, Any] = {"db": "file", "rows": args.rows, "loadavg_start": os.getloadavg()}
    tmpdir = tempfile.mkdtemp(prefix="zoho_tokens_bench_file_")
    try:
        rows = common.make_rows(args.rows)
        store = load(os.path.join(tmpdir, "tokens.csv"), rows)
        picked = common.sample(rows, 2 * args.sample)
        half = max(1, len(picked) // 2)
        cases = sdk_token_cases(
            store,
            "SDK FileStore",
            "file",
            args.rows,
            picked[:half],
            picked[half:] or picked[:1],
            sdk_id_of,
            common.Counter(),
            args.repeats,
        )
        for case in cases:
            case.verify()
        log(f"[FileStore {args.rows}] timing {len(cases)} cases x {args.repeats} rounds")
        settings = common.Settings(repeats=args.repeats, duration=args.duration)
        common.run_interleaved(cases, settings, log)
        payload["results"] = [case.result.as_dict() for case in cases]
        if not args.no_memory:
            payload["memory"] = [
                {
                    "store": "SDK FileStore",
                    "db": "file",
                    "rows": args.rows,
                    "get_tokens": common.peak_memory(store.get_tokens),
                }
            ]
    finally:
        shutil.rmtree(tmpdir, ignore_errors=True)
    payload["seconds"] = time.perf_counter() - started
    payload["loadavg_end"] = os.getloadavg()
    common.emit(args.out, payload)
    log(f"[FileStore {args.rows}] done in {payload['seconds']:.0f}s")


if __name__ == "__main__":
    main()
