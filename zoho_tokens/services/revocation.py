"""Revoking tokens: at Zoho (so the refresh token stops working), then locally.

Revocations at Zoho run a few at a time within one total deadline, so that a large
selection in the admin ends inside the web server's worker timeout. Rows are marked
revoked as Zoho answers for them, each in its own transaction together with whatever
the caller records (the admin's log entry); rows Zoho has not answered for by the
deadline stay active and are reported, so the action can simply be repeated.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field

from django.db import router, transaction
from django.utils import timezone

from .. import zoho
from ..conf import app_settings
from ..models import ZohoToken

NO_ENDPOINT = "no Zoho accounts server is known for its API domain: map it in ZOHO_TOKENS_ACCOUNTS_SERVERS"


@dataclass
class RevocationReport:
    revoked: list[ZohoToken] = field(default_factory=list)
    failed: list[tuple[ZohoToken, str]] = field(default_factory=list)  # reasons carry no secret
    already_revoked: list[ZohoToken] = field(default_factory=list)


def revoke(
    tokens: Iterable[ZohoToken],
    *,
    at_zoho: bool = True,
    on_revoked: Callable[[ZohoToken], object] | None = None,
    deadline: float | None = None,
) -> RevocationReport:
    """Revoke each token at Zoho (unless ``at_zoho=False``), then locally.

    ``on_revoked(row)`` runs in the transaction that marks ``row`` revoked. A token Zoho
    could not revoke, or did not answer for within ``deadline`` seconds in all
    (``ZOHO_TOKENS_REVOKE_DEADLINE``), stays active, so the action can be retried: its
    refresh token is still needed for that. Rows already revoked are left as they are.
    """
    report = RevocationReport()
    pending: list[ZohoToken] = []
    for row in tokens:
        (report.already_revoked if row.is_revoked else pending).append(row)
    if not at_zoho:
        for row in pending:
            _mark_revoked(row, report, on_revoked)
        return report
    total = app_settings.REVOKE_DEADLINE if deadline is None else deadline
    ends = time.monotonic() + total
    # Threads talk HTTP only; the database is written from this thread, whose connection it is.
    pool = ThreadPoolExecutor(max_workers=max(1, app_settings.REVOKE_CONCURRENCY))
    try:
        running: dict[Future[str | None], ZohoToken] = {}
        for row in pending:
            if not row.refresh_token:
                _mark_revoked(row, report, on_revoked)  # nothing Zoho could still honour
                continue
            token_url = zoho.token_endpoint(row.api_domain)
            if token_url is None:
                report.failed.append((row, NO_ENDPOINT))
                continue
            running[pool.submit(_revoke_at_zoho, token_url, row.refresh_token, ends, total)] = row
        while running:
            done, _ = wait(running, timeout=max(0.0, ends - time.monotonic()), return_when=FIRST_COMPLETED)
            if not done:
                break
            for future in done:
                row = running.pop(future)
                reason = future.result()
                if reason is None:
                    _mark_revoked(row, report, on_revoked)
                else:
                    report.failed.append((row, reason))
        for row in running.values():
            report.failed.append((row, _past_deadline(total)))
    finally:
        pool.shutdown(wait=False, cancel_futures=True)
    # In the order given, whatever order Zoho answered in.
    order = {id(row): position for position, row in enumerate(pending)}
    report.revoked.sort(key=lambda row: order[id(row)])
    report.failed.sort(key=lambda failure: order[id(failure[0])])
    return report


def _past_deadline(total: float) -> str:
    return f"Zoho did not answer within {total:g} s; run it again"


def _revoke_at_zoho(token_url: str, refresh_token: str, ends: float, total: float) -> str | None:
    """``None`` when Zoho no longer honours the token, else why it may still work."""
    remaining = ends - time.monotonic()
    if remaining <= 0:
        # Queued behind slower calls: the same outcome as a call still running at the deadline.
        return _past_deadline(total)
    cut_by_total_deadline = remaining < app_settings.REFRESH_TIMEOUT
    try:
        answer = zoho.revoke_refresh_token(
            token_url, refresh_token=refresh_token, deadline=min(app_settings.REFRESH_TIMEOUT, remaining)
        )
    except zoho.ZohoTimedOut as exc:
        # Cut short by the whole action's deadline, which may fire here a moment before the
        # caller's own wait does: the same event, reported the same way.
        return _past_deadline(total) if cut_by_total_deadline else f"Zoho could not be reached ({exc})"
    except zoho.ZohoUnreachable as exc:
        return f"Zoho could not be reached ({exc})"
    if not answer.revoked:
        return f"Zoho refused ({answer.error})"
    return None


def _mark_revoked(
    row: ZohoToken, report: RevocationReport, on_revoked: Callable[[ZohoToken], object] | None
) -> None:
    using = row._state.db or router.db_for_write(ZohoToken)
    now = timezone.now()
    with transaction.atomic(using=using):
        marked = (
            ZohoToken.objects.using(using)
            .filter(pk=row.pk, revoked_at__isnull=True)
            .update(revoked_at=now, updated_at=now)
        )
        if not marked:
            report.already_revoked.append(row)  # by someone else meanwhile
            return
        row.revoked_at = row.updated_at = now
        if on_revoked is not None:
            on_revoked(row)
    report.revoked.append(row)
