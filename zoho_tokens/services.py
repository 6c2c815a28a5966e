"""Operations on stored tokens shared by the store, the admin and the management commands."""

from __future__ import annotations

from django.db.models import QuerySet
from django.utils import timezone

from .models import ZohoToken


def revoke_locally(tokens: QuerySet[ZohoToken]) -> int:
    """Mark the tokens revoked so the SDK no longer finds them; returns how many changed.

    The rows stay (for the audit trail) until purged. A new authorisation of the
    same user (a new refresh token) brings the row back to life.
    """
    return tokens.filter(revoked_at__isnull=True).update(revoked_at=timezone.now())
