"""Tokens follow their owner out: when a user is deactivated or deleted, their Zoho
tokens are revoked at Zoho and locally (``ZOHO_TOKENS_REVOKE_WITH_OWNER``).

Revocation waits for the user's change to commit (a rolled-back deactivation revokes
nothing) and so runs outside the transaction, bounded by ``ZOHO_TOKENS_REVOKE_DEADLINE``.
A deleted user's rows are picked before the delete sets their owner to ``NULL``. Tokens
Zoho could not revoke stay active, as with ``zoho_revoke_tokens``, and are logged with
the command that retries them. ``QuerySet.update(is_active=False)`` sends no signal:
deactivate users one by one (``save()``), as the admin does.
"""

from __future__ import annotations

import logging
from typing import Any

from django.contrib.auth import get_user_model
from django.db import router, transaction
from django.db.models.signals import post_save, pre_delete

from . import services
from .conf import app_settings
from .models import ZohoToken

logger = logging.getLogger("zoho_tokens.owner")


def connect_receivers() -> None:
    """Connect the receivers to the user model (``AppConfig.ready``)."""
    user_model = get_user_model()
    post_save.connect(revoke_if_deactivated, sender=user_model, dispatch_uid="zoho_tokens_owner_deactivated")
    pre_delete.connect(revoke_before_delete, sender=user_model, dispatch_uid="zoho_tokens_owner_deleted")


def revoke_if_deactivated(sender: Any, instance: Any, update_fields: Any = None, **kwargs: Any) -> None:
    if not app_settings.REVOKE_WITH_OWNER or getattr(instance, "is_active", True):
        return
    if update_fields is not None and "is_active" not in update_fields:
        return
    _revoke_on_commit(instance, "deactivated")


def revoke_before_delete(sender: Any, instance: Any, **kwargs: Any) -> None:
    if app_settings.REVOKE_WITH_OWNER:
        _revoke_on_commit(instance, "deleted")


def _revoke_on_commit(user: Any, what: str) -> None:
    alias = router.db_for_write(ZohoToken)
    pks = list(ZohoToken.objects.using(alias).active().filter(owner=user).values_list("pk", flat=True))
    if pks:
        name = str(user)
        transaction.on_commit(lambda: revoke_tokens_of(name, pks, what, alias), using=alias)


def revoke_tokens_of(name: str, pks: list[int], what: str, alias: str) -> services.RevocationReport:
    """Revoke the rows ``pks`` of the user ``name``, at Zoho then locally, and log the outcome."""
    report = services.revoke(ZohoToken.objects.using(alias).filter(pk__in=pks).order_by("pk"), at_zoho=True)
    if report.revoked:
        logger.info(
            "Revoked %d Zoho token(s) of %s user %s: %s",
            len(report.revoked),
            what,
            name,
            ", ".join(row.token_id for row in report.revoked),
        )
    if report.failed:
        logger.error(
            "%d Zoho token(s) of %s user %s are still active (%s); "
            "retry with: manage.py zoho_revoke_tokens %s",
            len(report.failed),
            what,
            name,
            "; ".join(f"{row.token_id}: {reason}" for row, reason in report.failed),
            " ".join(row.token_id for row, _ in report.failed),
        )
    return report
