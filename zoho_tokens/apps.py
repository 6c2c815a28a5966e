from django.apps import AppConfig
from django.utils.translation import gettext_lazy as _


class ZohoTokensConfig(AppConfig):
    name = "zoho_tokens"
    verbose_name = _("Zoho tokens")
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from . import checks  # noqa: F401  (registers the system checks)
        from .receivers import connect_receivers

        connect_receivers()
