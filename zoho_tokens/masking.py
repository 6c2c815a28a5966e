"""How a secret is shown to people: never more than its last four characters."""

from __future__ import annotations

VISIBLE = 4


def mask(secret: str | None) -> str:
    """``"…wxyz"`` for a secret, ``"—"`` for none; short secrets are hidden entirely."""
    if not secret:
        return "—"
    if len(secret) <= VISIBLE * 3:
        return "…"
    return f"…{secret[-VISIBLE:]}"
