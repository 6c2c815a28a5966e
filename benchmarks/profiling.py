"""Where the time of ``DjangoTokenStore``'s hot operations goes, with numbers.

    python -m benchmarks.profiling                       # sqlite, postgresql, mysql at 1,000 rows
    python -m benchmarks.profiling --db sqlite --rows 1000 --calls 500

For each database it prints, per operation:

* the SQL statements one call issues (Django's ``CaptureQueriesContext``);
* a cProfile of ``--calls`` calls folded into areas (queryset building, SQL compilation,
  driver execution, model instantiation, AES-GCM, HMAC, transaction, SDK token), in profiled
  microseconds per call and share of the call, and the top functions by own time;
* unprofiled timings of the pieces (min of several runs): the raw driver query, Django's
  cursor running the very SQL the ORM generates, compiling that SQL, one AES-GCM decryption
  and encryption (and one Fernet decryption, for comparison), one HMAC digest, and a lean
  prototype (SQL compiled once, run on Django's connection, four decryptions, one
  ``OAuthToken``) showing what the same work can cost.

Every read decrypts, as in the main benchmark (the store keeps no cache).
"""

from __future__ import annotations

import argparse
import cProfile
import pstats
import sys
import time
from collections.abc import Callable, Sequence
from typing import Any

from . import common, run_store

# Areas of a cProfile, by function; cumulative times, chosen not to nest in one another
# (compile and build are separate Django phases; decrypt runs inside model instantiation,
# so "model instantiation" is reported without it).
AREAS: list[tuple[str, Callable[[str, str], bool]]] = [
    ("queryset building (filter/active/first/clone)", lambda f, n: False),  # computed below
    ("SQL compilation (compiler.as_sql)", lambda f, n: f.endswith("sql/compiler.py") and n == "as_sql"),
    (
        "driver execute (Django cursor wrapper)",
        lambda f, n: f.endswith("backends/utils.py") and n == "execute",
    ),
    ("decrypt (from_db_value)", lambda f, n: f.endswith("zoho_tokens/crypto.py") and n == "decrypt"),
    ("encrypt", lambda f, n: f.endswith("zoho_tokens/crypto.py") and n == "encrypt"),
    (
        "HMAC/SHA-256 digests",
        lambda f, n: f.endswith("zoho_tokens/fields.py") and n in ("digest_of", "candidates"),
    ),
    ("db converters (get_converters)", lambda f, n: f.endswith("sql/compiler.py") and n == "get_converters"),
    ("OAuthToken build/fill", lambda f, n: f.endswith("zoho_tokens/matching.py") and n == "fill_token"),
    (
        "transaction.atomic enter+exit (BEGIN/COMMIT)",
        lambda f, n: n in ("__enter__", "__exit__") and f.endswith("db/transaction.py"),
    ),
]


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def best_of(function: Callable[[Any], Any], args: Sequence[Any], repeats: int = 5) -> float:
    """Microseconds per call, the minimum over ``repeats`` passes over ``args``."""
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        for arg in args:
            function(arg)
        best = min(best, (time.perf_counter() - start) / len(args))
    return best * 1e6


def fold(stats: pstats.Stats, calls: int) -> list[tuple[str, float]]:
    raw = stats.stats  # type: ignore[attr-defined]
    total = max(ct for (_, _, _, ct, _) in raw.values())
    out = []
    for label, match in AREAS[1:]:
        cumulative = sum(ct for (f, _, n), (_, _, _, ct, _) in raw.items() if match(f, n))
        out.append((label, cumulative))
    build = sum(
        ct
        for (f, _, n), (_, _, _, ct, _) in raw.items()
        if f.endswith("models/query.py")
        and n in ("filter", "exclude", "order_by", "__getitem__", "using", "select_for_update")
    )
    out.insert(0, ("queryset building (using/filter/[:1]/select_for_update)", build))
    return [(label, seconds / calls * 1e6) for label, seconds in out] + [
        ("TOTAL (profiled)", total / calls * 1e6)
    ]


def profile(name: str, function: Callable[[Any], Any], args: Sequence[Any], top: int) -> list[str]:
    profiler = cProfile.Profile()
    profiler.enable()
    for arg in args:
        function(arg)
    profiler.disable()
    stats = pstats.Stats(profiler)
    folded = fold(stats, len(args))
    total = folded[-1][1]
    lines = [f"  cProfile of {len(args)} calls of {name} (profiled us per call; profiling inflates ~2-3x):"]
    for label, us in folded:
        if us >= 0.5 or label.startswith("TOTAL"):
            lines.append(f"    {label:<50} {us:9.1f} us  {us / total:6.1%}")
    lines.append("  top functions by own time (us per store call):")
    entries = sorted(stats.stats.items(), key=lambda kv: kv[1][2], reverse=True)[:top]  # type: ignore[attr-defined]
    for (filename, line, func), (_, ncalls, tottime, cumtime, _) in entries:
        short = "/".join(filename.split("/")[-3:])
        lines.append(
            f"    {tottime / len(args) * 1e6:8.1f} own {cumtime / len(args) * 1e6:8.1f} cum "
            f"{ncalls / len(args):6.1f}x  {short}:{line}({func})"
        )
    return lines


def statements(function: Callable[[Any], Any], arg: Any) -> list[str]:
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    with CaptureQueriesContext(connection) as captured:
        function(arg)
    out = []
    for query in captured.captured_queries:
        sql = query["sql"]
        sql = sql if len(sql) < 150 else sql[:100] + " ... " + sql[-45:]
        out.append(f"    SQL: {sql}")
    return out


def analyse(db: str, rows_count: int, calls: int, top: int) -> list[str]:
    lines: list[str] = [f"=== {db}, {rows_count:,} rows ==="]
    with run_store.environment(db) as sqlite_path:
        data = run_store.prepare(db, rows_count, sqlite_path, 500)
        # Django is configured by prepare(): only now can the app be imported.
        from django.db import connection
        from zohocrmsdk.src.com.zoho.api.authenticator.oauth_token import OAuthToken
        from zohocrmsdk.src.com.zoho.crm.api.user_signature import UserSignature

        from zoho_tokens import fields
        from zoho_tokens.models import ZohoToken
        from zoho_tokens.sdk import token_from_row
        from zoho_tokens.store import DjangoTokenStore

        store = DjangoTokenStore()
        raw = run_store.Raw(db, sqlite_path)
        lookup, update = data["lookup"], data["update"]
        ids = [run_store.token_id_of(r) for r in lookup][: max(1, calls)]
        ids = (ids * (calls // len(ids) + 1))[:calls]
        counter = common.Counter()

        def by_name(n: int) -> list[Any]:
            return [OAuthToken(user_signature=UserSignature(r.user_name)) for r in run_store.cycle(lookup, n)]

        def refreshed(n: int) -> list[Any]:
            out = []
            for r in run_store.cycle(update, n):
                token = OAuthToken(
                    client_id=common.CLIENT_ID,
                    client_secret=common.CLIENT_SECRET,
                    grant_token=r.grant_token,
                    refresh_token=r.refresh_token,
                    redirect_url=common.REDIRECT_URL,
                    id=run_store.token_id_of(r),
                    access_token=counter.next_access_token(),
                    user_signature=UserSignature(r.user_name),
                    api_domain=common.API_DOMAIN,
                )
                token.set_expires_in(counter.next_expiry())
                out.append(token)
            return out

        # Warm up every code path once.
        for i in ids[:50]:
            store.find_token_by_id(i)
        for t in by_name(50):
            store.find_token(t)
        for t in refreshed(20):
            store.save_token(t)

        # --- statements per call
        lines.append("  statements per call:")
        lines.append("   find_token_by_id:")
        lines += statements(store.find_token_by_id, ids[0])
        lines.append("   find_token(user name):")
        lines += statements(store.find_token, by_name(1)[0])
        lines.append("   save_token(update) (inside transaction.atomic; on MySQL Django also sends")
        lines.append("   SET autocommit=0 / =1 around it, which the capture does not show):")
        lines += statements(store.save_token, refreshed(1)[0])

        # --- profiles
        lines += profile("find_token_by_id", store.find_token_by_id, ids, top)
        lines += profile("find_token(user name)", store.find_token, by_name(calls), top)
        save_calls = max(20, calls // 4)
        lines += profile("save_token(update)", store.save_token, refreshed(save_calls), top)

        # --- unprofiled pieces
        qs = ZohoToken.objects.using(store.using).active().filter(token_id=ids[0])[:1]
        sql, params = qs.query.get_compiler(store.using).as_sql()
        cipher = fields.current_cipher()
        secret_fields = {name: ZohoToken._meta.get_field(name) for name in run_store.ENCRYPTED}
        with connection.cursor() as cur:
            cur.execute(
                f"SELECT token_id, {', '.join(run_store.ENCRYPTED)} FROM {raw.table} "
                f"WHERE token_id IN ({', '.join(['%s'] * 50)})",
                ids[:50],
            )
            # (ciphertext, the place it opens in)
            ciphertexts = [
                (c, secret_fields[name].context(row[0]))  # type: ignore[union-attr]
                for row in cur.fetchall()
                for name, c in zip(run_store.ENCRYPTED, row[1:], strict=True)
                if c is not None
            ]
        plain = [cipher.decrypt(c, place) for c, place in ciphertexts]
        digester = ZohoToken._meta.get_field("access_token_digest").digester()  # type: ignore[union-attr]
        encrypt_field = ZohoToken._meta.get_field("access_token")
        columns = [f.attname for f in ZohoToken._meta.concrete_fields]
        index = {name: columns.index(name) for name in ("token_id", "user_name", "client_id", "expiry_time")}
        secret_index = {name: columns.index(name) for name in run_store.ENCRYPTED}
        redirect_i, domain_i = columns.index("redirect_url"), columns.index("api_domain")
        lean_cursor = connection.cursor()

        def orm_compile(i: str) -> Any:
            q = ZohoToken.objects.using(store.using).active().filter(token_id=i)[:1]
            return q.query.get_compiler(store.using).as_sql()

        def django_cursor(i: str) -> Any:
            lean_cursor.execute(sql, [*params[:-1], i] if len(params) > 1 else [i])
            return lean_cursor.fetchone()

        def lean(i: str) -> Any:
            # What a lean find_token_by_id costs: SQL built once, four decryptions, one OAuthToken.
            lean_cursor.execute(sql, [*params[:-1], i] if len(params) > 1 else [i])
            row = lean_cursor.fetchone()
            token_id = row[index["token_id"]]

            def decrypt(name: str) -> Any:
                value = row[secret_index[name]]
                if value is None:
                    return None
                return cipher.decrypt(value, secret_fields[name].context(token_id))  # type: ignore[union-attr]

            token = OAuthToken(id=token_id)
            token.set_user_signature(UserSignature(row[index["user_name"]]))
            token.set_client_id(row[index["client_id"]])
            token.set_client_secret(decrypt("client_secret"))
            token.set_refresh_token(decrypt("refresh_token"))
            token.set_access_token(decrypt("access_token"))
            token.set_grant_token(decrypt("grant_token"))
            token.set_expires_in(str(row[index["expiry_time"]]))
            token.set_redirect_url(row[redirect_i])
            token.set_api_domain(row[domain_i])
            return token

        driver_cursor = connection.connection.cursor()  # the DB-API cursor under Django's wrapper
        driver_sql = sql.replace("%s", "?") if db == "sqlite" else sql

        def lean_driver(i: str) -> Any:
            driver_cursor.execute(driver_sql, [*params[:-1], i] if len(params) > 1 else [i])
            return driver_cursor.fetchone()

        from cryptography.fernet import Fernet

        fernet = Fernet(Fernet.generate_key())
        fernet_tokens = [fernet.encrypt(p.encode()) for p in plain]

        model_row = ZohoToken.objects.using(store.using).get(token_id=ids[0])
        pieces = [
            ("store.find_token_by_id (whole call)", best_of(store.find_token_by_id, ids)),
            ("raw driver SELECT (the floor)", best_of(raw.select_by("token_id"), ids)),
            ("ORM: build queryset + compile SQL only", best_of(orm_compile, ids)),
            ("Django cursor: the ORM's SQL, no model", best_of(django_cursor, ids)),
            (
                "ORM .first() on that queryset (model + 4 decrypts)",
                best_of(
                    lambda i: ZohoToken.objects.using(store.using).active().filter(token_id=i).first(), ids
                ),
            ),
            (
                "AES-256-GCM decrypt, one value (Cipher.decrypt)",
                best_of(lambda pair: cipher.decrypt(*pair), ciphertexts),
            ),
            (
                "encrypt, one value (EncryptedTextField.encrypt)",
                best_of(lambda p: encrypt_field.encrypt(p, ids[0]), plain),  # type: ignore[union-attr]
            ),
            ("HMAC-SHA256 digest, one value", best_of(digester.digest, plain)),
            ("token_from_row (OAuthToken + fill)", best_of(lambda _: token_from_row(model_row), ids[:200])),
            ("Fernet decrypt, one value (for comparison)", best_of(fernet.decrypt, fernet_tokens)),
            ("driver cursor of Django's connection, the ORM's SQL", best_of(lean_driver, ids)),
            ("lean prototype: SQL once + 4 decrypts + OAuthToken", best_of(lean, ids)),
        ]
        if db == "postgresql":
            pieces += prepared_pieces(sql, params, ids, raw)
        pieces += save_pieces(store, raw, refreshed, encrypt_field, digester)
        lines.append("  unprofiled pieces (us per call, min of 5 passes):")
        for label, us in pieces:
            lines.append(f"    {label:<52} {us:9.1f} us  ({1e6 / us:,.0f}/s)")
        raw.close()
    return lines


def save_pieces(
    store: Any, raw: Any, refreshed: Callable[[int], list[Any]], encrypt_field: Any, digester: Any
) -> list[tuple[str, float]]:
    """save_token against a lean refresh write: one conditional UPDATE, SQL built once, in
    autocommit (a single statement is atomic), one encryption and one digest."""
    from django.db import connections
    from django.utils import timezone

    connection = connections[store.using]
    quote = connection.ops.quote_name
    p = "%s"
    sql = (
        f"UPDATE {quote(raw.table)} SET access_token = {p}, access_token_digest = {p}, "
        f"expiry_time = {p}, last_refreshed_at = {p}, updated_at = {p} "
        f"WHERE token_id = {p} AND revoked_at IS NULL AND (expiry_time IS NULL OR expiry_time <= {p})"
    )
    cursor = connection.cursor()

    def lean_save(token: Any) -> Any:
        access, expiry, now = token.get_access_token(), int(token.get_expires_in()), timezone.now()
        cursor.execute(
            sql,
            [
                encrypt_field.encrypt(access, token.get_id()),
                digester.digest(access),
                expiry,
                now,
                now,
                token.get_id(),
                expiry,
            ],
        )
        if cursor.rowcount != 1:
            raise AssertionError("the lean save matched no row")

    n = 100
    return [
        (
            "store.save_token(update) (whole call, durable)",
            best_of(store.save_token, refreshed(n), repeats=1),
        ),
        (
            "raw driver UPDATE + COMMIT (the floor)",
            best_of(
                raw.update(),
                [
                    (
                        encrypt_field.encrypt(t.get_access_token(), t.get_id()),
                        digester.digest(t.get_access_token()),
                        int(t.get_expires_in()),
                        timezone.now(),
                        t.get_id(),
                    )
                    for t in refreshed(n)
                ],
                repeats=1,
            ),
        ),
        (
            "lean save prototype: 1 conditional UPDATE, autocommit",
            best_of(lean_save, refreshed(n), repeats=1),
        ),
    ]


def prepared_pieces(sql: str, params: Sequence[Any], ids: Sequence[str], raw: Any) -> list[tuple[str, float]]:
    """PostgreSQL: how much of the gap is Django turning psycopg's prepared statements off."""
    import psycopg
    from django.db import connections

    from zoho_tokens.store import DjangoTokenStore

    prepared_store = DjangoTokenStore(using="prepared")
    cursor = connections["prepared"].cursor()

    def django_prepared(i: str) -> Any:
        cursor.execute(sql, [*params[:-1], i] if len(params) > 1 else [i])
        return cursor.fetchone()

    unprepared = psycopg.connect(
        dbname=common.BENCH_DB_NAME, autocommit=True, prepare_threshold=None, **common.PG
    )
    ucur = unprepared.cursor()
    usql = f"SELECT {raw.columns} FROM {raw.table} WHERE token_id = %s AND revoked_at IS NULL"

    def raw_unprepared(i: str) -> Any:
        ucur.execute(usql, (i,))
        return ucur.fetchone()

    for i in ids[:20]:
        prepared_store.find_token_by_id(i)
        django_prepared(i)
    pieces = [
        ("raw psycopg, prepared statements off (as Django)", best_of(raw_unprepared, ids)),
        ("Django cursor, ORM's SQL, server_side_binding+prepare", best_of(django_prepared, ids)),
        ("store.find_token_by_id on that 'prepared' alias", best_of(prepared_store.find_token_by_id, ids)),
    ]
    unprepared.close()
    return pieces


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--db", default="sqlite,postgresql,mysql")
    parser.add_argument("--rows", type=int, default=1000)
    parser.add_argument("--calls", type=int, default=400)
    parser.add_argument("--top", type=int, default=12)
    args = parser.parse_args(argv)
    dbs = [d for d in args.db.split(",") if d]
    if len(dbs) > 1:
        # Django is configured once per process: one child per database.
        import os
        import subprocess

        for db in dbs:
            subprocess.run(
                [
                    sys.executable,
                    "-m",
                    "benchmarks.profiling",
                    "--db",
                    db,
                    "--rows",
                    str(args.rows),
                    "--calls",
                    str(args.calls),
                    "--top",
                    str(args.top),
                ],
                check=False,
                env={**os.environ},
            )
        return
    print("\n".join(analyse(dbs[0], args.rows, args.calls, args.top)), flush=True)


if __name__ == "__main__":
    main()
