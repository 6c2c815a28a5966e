"""One run of a maintenance job at a time, across processes and machines: a lease row.

A run takes the job's row in the ``Lease`` table (inserting it, or taking it over once
it has expired), renews it as it goes and deletes it when done. A second run finds the
row held and gives up at once. Nothing is tied to the database session (no advisory
lock, no transaction held open), so it works alike on SQLite, PostgreSQL and MariaDB,
and behind PgBouncer in transaction mode. A run killed mid-way keeps the job until its
lease expires.
"""

from __future__ import annotations

import logging
import os
import secrets
import socket
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timedelta

from django.db import DatabaseError, IntegrityError, transaction
from django.utils import timezone

from .models import Lease

logger = logging.getLogger("zoho_tokens.leases")


class LeaseHeld(Exception):
    """Another run holds the job."""

    def __init__(self, name: str, until: datetime | None) -> None:
        self.name, self.until = name, until
        super().__init__(f"{name} is held until {until}")


class LeaseLost(Exception):
    """Another run took the job over: this run was slower than its lease."""


@dataclass
class HeldLease:
    name: str
    holder: str
    using: str
    seconds: float
    expires_at: datetime

    def renew(self) -> None:
        """Hold the job ``seconds`` longer from now; ``LeaseLost`` if another run has it."""
        expires_at = timezone.now() + timedelta(seconds=self.seconds)
        mine = Lease.objects.using(self.using).filter(name=self.name, holder=self.holder)
        if mine.update(expires_at=expires_at) != 1:
            raise LeaseLost(f"another run took over {self.name} after this run's lease expired")
        self.expires_at = expires_at

    def release(self) -> None:
        Lease.objects.using(self.using).filter(name=self.name, holder=self.holder).delete()


def take_lease(name: str, *, using: str, seconds: float) -> HeldLease:
    """Hold the job ``name`` for ``seconds``, or raise ``LeaseHeld`` at once."""
    holder = f"{socket.gethostname()[:200]}:{os.getpid()}:{secrets.token_hex(4)}"
    now = timezone.now()
    expires_at = now + timedelta(seconds=seconds)
    leases = Lease.objects.using(using)
    # A read first: it does not wait for SQLite's write lock, which the holder takes
    # again and again (one transaction per batch), so the second run gives up at once.
    until = leases.filter(name=name).values_list("expires_at", flat=True).first()
    if until is not None and until > now:
        raise LeaseHeld(name, until)
    try:
        with transaction.atomic(using=using):
            leases.create(name=name, holder=holder, expires_at=expires_at)
    except IntegrityError:
        # Held, or left by a run that died: taken over only once expired. Two runs taking
        # over at once both update the one row; the second finds it no longer expired.
        if not leases.filter(name=name, expires_at__lte=now).update(holder=holder, expires_at=expires_at):
            until = leases.filter(name=name).values_list("expires_at", flat=True).first()
            raise LeaseHeld(name, until) from None
        logger.warning("Took over the expired lease of %s", name)
    return HeldLease(name, holder, using, seconds, expires_at)


@contextmanager
def holding_lease(name: str, *, using: str, seconds: float) -> Iterator[HeldLease]:
    """``take_lease``, released at the end however the run ends."""
    held = take_lease(name, using=using, seconds=seconds)
    try:
        yield held
    finally:
        try:
            held.release()
        except DatabaseError as exc:  # the run's own error matters more; the lease expires anyway
            logger.warning(
                "Could not release the lease of %s (it expires at %s): %s", name, held.expires_at, exc
            )
