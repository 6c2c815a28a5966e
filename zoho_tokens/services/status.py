"""How the stored tokens are doing, for people and for monitoring: counts per status,
the oldest unresolved refresh error, the next expiry. Nothing here returns a secret."""

from __future__ import annotations

from django.db import router
from django.db.models import Count

from ..conf import app_settings
from ..datacentres import token_endpoint_for
from ..models import ZohoToken, ZohoTokenQuerySet


def token_alias(using: str | None = None) -> str:
    """The database alias the store uses (``ZOHO_TOKENS_DATABASE``, else the routers')."""
    return using or app_settings.DATABASE or router.db_for_write(ZohoToken)


def active_tokens(using: str | None = None) -> ZohoTokenQuerySet:
    """Tokens the store hands out and refreshes: not revoked, not waiting for re-authorisation."""
    return ZohoToken.objects.using(token_alias(using)).active().filter(needs_reauthorization_at__isnull=True)


def without_accounts_server(using: str | None = None) -> dict[str | None, int]:
    """Active tokens per API domain that maps to no accounts server (``None``: no domain).

    The store can neither refresh nor revoke them (see :mod:`zoho_tokens.datacentres`).
    """
    per_domain = active_tokens(using).order_by().values_list("api_domain").annotate(count=Count("pk"))
    unmapped = [(domain, count) for domain, count in per_domain if token_endpoint_for(domain) is None]
    return dict(sorted(unmapped, key=lambda item: (item[0] is not None, item[0] or "")))
