"""Where Zoho's token endpoint is for a stored token, chosen as the SDK chooses it."""

from __future__ import annotations

from zohocrmsdk.src.com.zoho.crm.api.dc.data_center import DataCenter
from zohocrmsdk.src.com.zoho.crm.api.initializer import Initializer

from .conf import app_settings
from .models import ZohoToken


def token_endpoint(row: ZohoToken) -> str | None:
    """The data centre of the row's API domain when Zoho's, else the environment the
    SDK was initialised with in this thread, else ``ZOHO_TOKENS_TOKEN_URL``."""
    environment = DataCenter.get(row.api_domain) if row.api_domain else None
    if environment is None:
        environment = getattr(Initializer.get_initializer(), "environment", None)
    return getattr(environment, "accounts_url", None) or app_settings.TOKEN_URL
