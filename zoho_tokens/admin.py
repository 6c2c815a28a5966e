"""Admin: tokens listed and shown masked, never editable; revocation as audited actions.

An active token leaves only through revocation (at Zoho, then locally): deleting its
row would leave its refresh token valid at Zoho. Only revoked tokens can be deleted.
The list fits a 1280-pixel screen: who (Zoho user, owner), the status at a glance with the
time left, a short token id; the detail page has the rest, times formatted as in the list.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import urlencode

from django.contrib import admin, messages
from django.contrib.admin.actions import delete_selected as django_delete_selected
from django.contrib.admin.utils import unquote
from django.contrib.auth import get_user_model
from django.core.exceptions import PermissionDenied
from django.db import DatabaseError
from django.db.models import Q, QuerySet
from django.db.models.constants import LOOKUP_SEP
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.urls import NoReverseMatch, reverse
from django.utils import timezone
from django.utils.formats import date_format
from django.utils.html import format_html
from django.utils.safestring import SafeString
from django.utils.timesince import timesince, timeuntil
from django.utils.translation import gettext as _g
from django.utils.translation import gettext_lazy as _
from django.utils.translation import ngettext
from django.views.decorators.debug import sensitive_variables

from . import services
from .crypto import DecryptionError
from .fields import DigestField, EncryptedTextField
from .models import (
    ACTIVE,
    EXPIRING,
    EXPIRING_WITHIN_SECONDS,
    NEEDS_REAUTHORIZATION,
    REVOKED,
    STATUS_LABELS,
    ZohoToken,
    mask,
)

IDENTITY_FIELDS = ("token_id", "user_name", "owner", "status", "client_id")
SECRET_FIELDS = ("masked_client_secret", "masked_refresh_token", "masked_access_token", "masked_grant_token")
REFRESH_FIELDS = (
    "access_token_expires",
    "last_refreshed_at",
    "needs_reauthorization_at",
    "refresh_error",
    "refresh_retry_at",
)
HISTORY_FIELDS = ("created_at", "updated_at", "revoked_at", "api_domain", "redirect_url")
# The status in bold, what it means in time below it.
STATUS_HTML = "<strong>{}</strong><br><small>{}</small>"
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
            ("active", STATUS_LABELS[ACTIVE]),
            ("expiring", STATUS_LABELS[EXPIRING]),
            ("reauthorization", STATUS_LABELS[NEEDS_REAUTHORIZATION]),
            ("revoked", STATUS_LABELS[REVOKED]),
        ]

    def queryset(self, request: HttpRequest, queryset: QuerySet[ZohoToken]) -> QuerySet[ZohoToken] | None:
        usable = queryset.filter(revoked_at__isnull=True, needs_reauthorization_at__isnull=True)
        soon = Q(expiry_time__isnull=True) | Q(access_token_digest__isnull=True)
        soon |= Q(expiry_time__lt=int((time.time() + EXPIRING_WITHIN_SECONDS) * 1000))
        if self.value() == "active":
            return usable.exclude(soon)
        if self.value() == "expiring":
            return usable.filter(soon)
        if self.value() == "reauthorization":
            return queryset.filter(revoked_at__isnull=True, needs_reauthorization_at__isnull=False)
        if self.value() == "revoked":
            return queryset.filter(revoked_at__isnull=False)
        return queryset


@admin.register(ZohoToken)
class ZohoTokenAdmin(admin.ModelAdmin):
    list_display = ("zoho_user", "owner", "status", "short_token_id", "updated")
    list_display_links = ("zoho_user",)
    list_filter = (StatusFilter, ("owner", admin.RelatedOnlyFieldListFilter), "client_id")
    # Never a token: a search lands in the URL and the access log.
    search_fields = ("user_name", "token_id", "client_id", f"owner__{get_user_model().USERNAME_FIELD}")
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

    def has_revoke_permission(self, request: HttpRequest) -> bool:
        return request.user.has_perm(REVOKE_PERMISSION)

    def lookup_allowed(self, lookup: str, value: str, request: HttpRequest | None = None) -> bool:
        if lookup.split(LOOKUP_SEP)[0] in UNFILTERABLE:
            return False
        return super().lookup_allowed(lookup, value, request)

    def has_delete_permission(self, request: HttpRequest, obj: ZohoToken | None = None) -> bool:
        if obj is not None and not obj.is_revoked:
            return False  # revoke it first
        return super().has_delete_permission(request, obj)

    def delete_view(
        self, request: HttpRequest, object_id: str, extra_context: dict[str, Any] | None = None
    ) -> HttpResponse:
        # Someone who may delete tokens, on an active one (a link kept from before a new
        # authorisation re-activated the row, or typed): say why, rather than a bare 403.
        row = self.get_object(request, unquote(object_id))
        if row is not None and not row.is_revoked and super().has_delete_permission(request):
            self.message_user(
                request,
                _g("%(token)s is active: revoke it first (at Zoho, then locally). Nothing was deleted.")
                % {"token": row},
                messages.WARNING,
            )
            return HttpResponseRedirect(reverse("admin:zoho_tokens_zohotoken_change", args=[row.pk]))
        return super().delete_view(request, object_id, extra_context)

    def delete_model(self, request: HttpRequest, obj: ZohoToken) -> None:
        # A new authorisation may have re-activated the row since the page was shown.
        if not ZohoToken.objects.using(obj._state.db).revoked().filter(pk=obj.pk).delete()[0]:
            raise PermissionDenied

    def delete_queryset(self, request: HttpRequest, queryset: QuerySet[ZohoToken]) -> None:
        queryset.filter(revoked_at__isnull=False).delete()

    @admin.display(description=_("Zoho user"), ordering="user_name")
    def zoho_user(self, obj: ZohoToken) -> str:
        if obj.user_name is None:
            return str(_("not named yet"))
        return format_html("{} <small>org {}</small>", obj.email, obj.org) if obj.org else obj.user_name

    @admin.display(description=_("token id"), ordering="token_id")
    def short_token_id(self, obj: ZohoToken) -> str:
        return format_html('<span title="{}">{}…</span>', obj.token_id, obj.token_id[:8])

    @admin.display(description=_("updated"), ordering="updated_at")
    def updated(self, obj: ZohoToken) -> str:
        return _ago(obj.updated_at)

    @admin.display(description=_("status"), ordering="needs_reauthorization_at")
    def status(self, obj: ZohoToken) -> SafeString:
        """The status at a glance, what it means in time, and the way back for a flagged row."""
        status = obj.status
        label = STATUS_LABELS[status]
        if status == REVOKED:
            return format_html(STATUS_HTML, label, _ago(obj.revoked_at))
        if status == NEEDS_REAUTHORIZATION:
            since = format_html(
                _g("flagged {ago} ({error})"),
                ago=_ago(obj.needs_reauthorization_at),
                error=obj.refresh_error or "?",
            )
            return format_html(STATUS_HTML, label, format_html("{}{}", since, _reconnect_link(obj)))
        detail = _access_token_left(obj)
        if obj.refresh_failures and obj.refresh_retry_at and obj.refresh_retry_at > timezone.now():
            failing = _g("refreshes failing (%(error)s), next try %(when)s") % {
                "error": obj.refresh_error,
                "when": _from_now(obj.refresh_retry_at),
            }
            detail = format_html("{} · {}", detail, failing)
        return format_html(STATUS_HTML, label, detail)

    @admin.display(description=_("access token expires"), ordering="expiry_time")
    def access_token_expires(self, obj: ZohoToken) -> str:
        if obj.expiry_time is None:
            return "—"
        expires = datetime.fromtimestamp(obj.expiry_time / 1000, tz=UTC)
        return f"{_when(expires)} ({_access_token_left(obj)})"

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

    @admin.action(description=_("Revoke at Zoho, then locally"), permissions=("revoke",))
    def revoke_at_zoho(self, request: HttpRequest, queryset: QuerySet[ZohoToken]) -> None:
        self._revoke(request, queryset, at_zoho=True)

    @admin.action(description=_("Revoke locally only (Zoho not called)"), permissions=("revoke",))
    def revoke_locally(self, request: HttpRequest, queryset: QuerySet[ZohoToken]) -> None:
        self._revoke(request, queryset, at_zoho=False)

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


def _when(moment: datetime) -> str:
    """A time as the admin's list shows it (``DATETIME_FORMAT``, the current time zone)."""
    return date_format(timezone.localtime(moment), "DATETIME_FORMAT")


def _ago(moment: datetime | None) -> str:
    """ "3 hours ago" (the exact time on hover), "just now" within the last minute."""
    if moment is None:
        return "—"
    return format_html('<span title="{}">{}</span>', _when(moment), _before_now(moment))


def _before_now(moment: datetime) -> str:
    if timezone.now() - moment < timedelta(minutes=1):
        return _g("just now")
    return _g("%s ago") % timesince(moment, depth=1)


def _from_now(moment: datetime) -> str:
    if moment - timezone.now() < timedelta(minutes=1):
        return _g("in under a minute")
    return _g("in %s") % timeuntil(moment, depth=1)


def _access_token_left(obj: ZohoToken) -> str:
    # Whether there is an access token, from its digest: reading it would decrypt it.
    if obj.access_token_digest is None or obj.expiry_time is None:
        return _g("no access token yet: obtained on the next call")
    expires = datetime.fromtimestamp(obj.expiry_time / 1000, tz=UTC)
    if expires <= timezone.now():
        return _g("access token expired %s: renewed on the next call") % _before_now(expires)
    if obj.status == EXPIRING:
        return _g("access token expires %s") % _from_now(expires)
    return _g("access token valid for %s") % timeuntil(expires, depth=1)


def _reconnect_link(obj: ZohoToken) -> str:
    """A link to the connect view for the owner, back to this row; nothing when the
    project does not serve the app's views."""
    try:
        connect = reverse("zoho_tokens:connect")
        back = reverse("admin:zoho_tokens_zohotoken_change", args=[obj.pk])
    except NoReverseMatch:
        return ""
    title = _g("For the owner: signs in to Zoho again as whoever follows it")
    return format_html(
        ' · <a href="{}?{}" title="{}">{}</a>', connect, urlencode({"next": back}), title, _g("Reconnect")
    )
