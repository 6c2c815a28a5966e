"""``{% load zoho_tokens %}{% zoho_connection %}``: the signed-in user's Zoho connections."""

from __future__ import annotations

from typing import Any
from urllib.parse import urlencode

from django import template
from django.urls import reverse

register = template.Library()


@register.inclusion_tag("zoho_tokens/connection.html", takes_context=True)
def zoho_connection(context: template.Context) -> dict[str, Any]:
    """Each of the user's Zoho connections, with a reconnect link for those that stopped
    working (revoked, or needing re-authorisation); a connect link when there is none."""
    request = context.get("request")
    user = getattr(request, "user", None)
    tokens = list(user.zoho_tokens.order_by("-updated_at")) if user and user.is_authenticated else []
    connect_url = reverse("zoho_tokens:connect")
    if request is not None:
        connect_url += "?" + urlencode({"next": request.get_full_path()})
    return {"tokens": tokens, "connect_url": connect_url}
