"""Admin: tokens listed and shown masked, never editable; revocation as audited actions.

An active token leaves only through revocation (at Zoho, then locally): deleting its
row would leave its refresh token valid at Zoho. Only revoked tokens can be deleted.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from django.contrib import admin, messages
from django.contrib.admin.actions import delete_selected as django_delete_selected
from django.core.exceptions import PermissionDenied
from django.db import DatabaseError
from django.db.models import QuerySet
from django.db.models.constants import LOOKUP_SEP
from django.http import HttpRequest, HttpResponse
from django.utils.translation import gettext_lazy as _
from django.utils.translation import ngettext
from django.views.decorators.debug import sensitive_variables

from . import services
from .crypto import DecryptionError
from .fields import DigestField, EncryptedTextField
from .models import ZohoToken, mask

IDENTITY_FIELDS = ("token_id", "user_name", "status", "client_id")
SECRET_FIELDS = ("masked_client_secret", "masked_refresh_token", "masked_access_token", "masked_grant_token")
REFRESH_FIELDS = (
    "access_token_expires",
    "last_refreshed_at",
    "needs_reauthorization_at",
    "refresh_error",
    "refresh_retry_at",
)
HISTORY_FIELDS = ("created_at", "updated_at", "revoked_at", "api_domain", "redirect_url")
REVOKE_PERMISSION = f"{ZohoToken._meta.app_label}.revoke_zohotoken"
# Never filtered on in a URL: the row count would tell whether a guessed token is real,
# and the value would land in access logs.
UNFILTERABLE = frozenset(
    name
    for field in ZohoToken._meta.concrete_fields
    if isinstance(field, EncryptedTextField | DigestField)
    for name in (field.name, field.attname)
)


class StatusFilter(admin.SimpleListFilter):
    title = _("status")
    parameter_name = "status"

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, Any]]:
        return [
            ("active", _("Active")),
            ("reauthorization", _("Needs re-authorisation")),
            ("revoked", _("Revoked")),
        ]

    def queryset(self, request: HttpRequest, queryset: QuerySet[ZohoToken]) -> QuerySet[ZohoToken] | None:
        if self.value() == "active":
            return queryset.filter(revoked_at__isnull=True, needs_reauthorization_at__isnull=True)
        if self.value() == "reauthorization":
            return queryset.filter(revoked_at__isnull=True, needs_reauthorization_at__isnull=False)
        if self.value() == "revoked":
            return queryset.filter(revoked_at__isnull=False)
        return queryset


@admin.register(ZohoToken)
class ZohoTokenAdmin(admin.ModelAdmin):
    list_display = (
        "token_id",
        "user_name",
        "status",
        "access_token_expires",
        "last_refreshed_at",
        "updated_at",
    )
    list_filter = (StatusFilter, "client_id")
    # Never a token: a search lands in the URL and the access log.
    search_fields = ("user_name", "token_id", "client_id")
    ordering = ("-updated_at",)
    actions = ("revoke_at_zoho", "revoke_locally", "delete_selected")
    fieldsets = (
        (None, {"fields": IDENTITY_FIELDS}),
        (_("Secrets (last characters only)"), {"fields": SECRET_FIELDS}),
        (_("Refresh"), {"fields": REFRESH_FIELDS}),
        (_("History"), {"fields": HISTORY_FIELDS}),
    )
    readonly_fields = (*IDENTITY_FIELDS, *SECRET_FIELDS, *REFRESH_FIELDS, *HISTORY_FIELDS)

    # Tokens come from Zoho through the SDK; nobody types them in.
    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: ZohoToken | None = None) -> bool:
        return False

    def lookup_allowed(self, lookup: str, value: str, request: HttpRequest | None = None) -> bool:
        if lookup.split(LOOKUP_SEP)[0] in UNFILTERABLE:
            return False
        return super().lookup_allowed(lookup, value, request)

    def has_delete_permission(self, request: HttpRequest, obj: ZohoToken | None = None) -> bool:
        if obj is not None and not obj.is_revoked:
            return False  # revoke it first
        return super().has_delete_permission(request, obj)

    def has_revoke_permission(self, request: HttpRequest) -> bool:
        return request.user.has_perm(REVOKE_PERMISSION)

    def delete_model(self, request: HttpRequest, obj: ZohoToken) -> None:
        # A new authorisation may have re-activated the row since the page was shown.
        if not ZohoToken.objects.using(obj._state.db).revoked().filter(pk=obj.pk).delete()[0]:
            raise PermissionDenied

    def delete_queryset(self, request: HttpRequest, queryset: QuerySet[ZohoToken]) -> None:
        queryset.filter(revoked_at__isnull=False).delete()

    @admin.display(description=_("status"))
    def status(self, obj: ZohoToken) -> str:
        if obj.is_revoked:
            return str(_("Revoked"))
        if obj.needs_reauthorization:
            return str(_("Needs re-authorisation"))
        return str(_("Active"))

    @admin.display(description=_("access token expires"), ordering="expiry_time")
    def access_token_expires(self, obj: ZohoToken) -> datetime | None:
        if obj.expiry_time is None:
            return None
        return datetime.fromtimestamp(obj.expiry_time / 1000, tz=UTC)

    @admin.display(description=_("client secret"))
    def masked_client_secret(self, obj: ZohoToken) -> str:
        return _masked(obj, "client_secret")

    @admin.display(description=_("refresh token"))
    def masked_refresh_token(self, obj: ZohoToken) -> str:
        return _masked(obj, "refresh_token")

    @admin.display(description=_("access token"))
    def masked_access_token(self, obj: ZohoToken) -> str:
        return _masked(obj, "access_token")

    @admin.display(description=_("grant token"))
    def masked_grant_token(self, obj: ZohoToken) -> str:
        return _masked(obj, "grant_token")

    @admin.action(description=_("Delete selected revoked Zoho tokens"), permissions=("delete",))
    def delete_selected(self, request: HttpRequest, queryset: QuerySet[ZohoToken]) -> HttpResponse | None:
        """Django's deletion, with its confirmation page, for revoked tokens only."""
        active = queryset.filter(revoked_at__isnull=True).count()
        if active:
            self.message_user(
                request,
                ngettext(
                    "%(count)d selected token is active: revoke it first (at Zoho, then locally). "
                    "Nothing was deleted.",
                    "%(count)d selected tokens are active: revoke them first (at Zoho, then locally). "
                    "Nothing was deleted.",
                    active,
                )
                % {"count": active},
                messages.ERROR,
            )
            return None
        return django_delete_selected(self, request, queryset)

    @admin.action(description=_("Revoke at Zoho, then locally"), permissions=("revoke",))
    def revoke_at_zoho(self, request: HttpRequest, queryset: QuerySet[ZohoToken]) -> None:
        self._revoke(request, queryset, at_zoho=True)

    @admin.action(description=_("Revoke locally only (Zoho not called)"), permissions=("revoke",))
    def revoke_locally(self, request: HttpRequest, queryset: QuerySet[ZohoToken]) -> None:
        self._revoke(request, queryset, at_zoho=False)

    @sensitive_variables()
    def _revoke(self, request: HttpRequest, queryset: QuerySet[ZohoToken], *, at_zoho: bool) -> None:
        entry = "Revoked at Zoho and locally." if at_zoho else "Revoked locally; Zoho not called."
        revoked: list[ZohoToken] = []

        def log(row: ZohoToken) -> None:
            # In the row's transaction: the entry and the revocation commit together.
            self.log_change(request, row, entry)
            revoked.append(row)

        try:
            report = services.revoke(queryset.order_by("pk"), at_zoho=at_zoho, on_revoked=log)
        except DatabaseError as exc:
            self._report_revoked(request, len(revoked))
            self.message_user(
                request,
                _(
                    "The database failed (%(error)s): the other selected tokens were not revoked "
                    "here. Try again."
                )
                % {"error": type(exc).__name__},
                messages.ERROR,
            )
            return
        self._report_revoked(request, len(report.revoked))
        for row, reason in report.failed:
            self.message_user(request, f"{row} was not revoked: {reason}", messages.ERROR)
        if report.already_revoked:
            count = len(report.already_revoked)
            self.message_user(
                request,
                ngettext(
                    "%(count)d token was already revoked.", "%(count)d tokens were already revoked.", count
                )
                % {"count": count},
                messages.WARNING,
            )

    def _report_revoked(self, request: HttpRequest, count: int) -> None:
        if count:
            self.message_user(
                request,
                ngettext("Revoked %(count)d token.", "Revoked %(count)d tokens.", count) % {"count": count},
                messages.SUCCESS,
            )


def _masked(obj: ZohoToken, name: str) -> str:
    try:
        return mask(getattr(obj, name))
    except DecryptionError:
        # Not written for this row (copied from another), or a key is missing: the store
        # refuses it with the reason; the page still shows the rest.
        return str(_("cannot be decrypted"))
