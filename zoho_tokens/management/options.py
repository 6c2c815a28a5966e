"""What the commands check in their options before they touch anything."""

from __future__ import annotations

from django.core.management.base import CommandError
from django.db import connections


def database_alias(alias: str | None) -> str | None:
    """``--database`` as given, once it names a configured database (``None``: the routers' choice)."""
    if alias is not None and alias not in connections:
        raise CommandError(f"--database: no database {alias!r} in DATABASES.")
    return alias
