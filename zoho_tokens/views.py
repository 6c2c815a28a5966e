"""The OAuth web flow: ``connect`` sends a signed-in user to Zoho's consent page,
``callback`` turns Zoho's answer into a stored token owned by that user.

Every refusal ends on ``zoho_tokens/connect_failed.html``, which says what happened
and offers to try again; nothing is stored then. Templates extend
``zoho_tokens/base.html``: override either in your project's templates.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import urlencode

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import ImproperlyConfigured
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.shortcuts import render
from django.urls import reverse
from django.utils.http import url_has_allowed_host_and_scheme
from django.utils.translation import gettext as _
from django.utils.translation import gettext_noop
from django.views.decorators.cache import never_cache
from django.views.decorators.debug import sensitive_variables
from django.views.decorators.http import require_GET

from . import oauth, services
from .conf import app_settings


def client_for(request: HttpRequest) -> services.Client:
    """The OAuth client from settings, with the callback URL Zoho must send the user back to."""
    if not app_settings.CLIENT_ID or not app_settings.CLIENT_SECRET:
        raise ImproperlyConfigured("Set ZOHO_TOKENS_CLIENT_ID and ZOHO_TOKENS_CLIENT_SECRET to connect Zoho.")
    redirect_url = app_settings.REDIRECT_URL or request.build_absolute_uri(reverse("zoho_tokens:callback"))
    return services.Client(app_settings.CLIENT_ID, app_settings.CLIENT_SECRET, redirect_url)


@never_cache
@require_GET
@login_required
def connect(request: HttpRequest) -> HttpResponse:
    """Redirect to Zoho's consent page with a fresh single-use ``state``; ``?next=`` is
    where the callback sends the user once connected."""
    client = client_for(request)
    next_url = request.GET.get("next", "")
    if not url_has_allowed_host_and_scheme(next_url, {request.get_host()}, require_https=request.is_secure()):
        next_url = ""
    state = oauth.start_consent(request, next_url)
    return HttpResponseRedirect(
        oauth.authorization_url(client_id=client.client_id, redirect_url=client.redirect_url, state=state)
    )


@never_cache
@require_GET
@login_required
@sensitive_variables("code", "client")
def callback(request: HttpRequest) -> HttpResponse:
    """Check ``state``, then exchange ``code`` at the trusted accounts server Zoho named."""
    try:
        started = oauth.finish_consent(request, request.GET.get("state"))
    except oauth.StateRefused as refused:
        return failed(request, f"state_{refused.reason}", status=400)
    retry = started["next"]
    error = request.GET.get("error")
    if error:
        reason = "declined" if error == "access_denied" else "zoho_error"
        return failed(request, reason, detail=error[:100], next_url=retry)
    code = request.GET.get("code")
    if not code:
        return failed(request, "zoho_error", detail=_("no code"), next_url=retry, status=400)
    named = request.GET.get("accounts-server")
    try:
        server = oauth.accounts_server_named(named, request.GET.get("location"))
    except oauth.UntrustedAccountsServer as untrusted:
        return failed(request, "untrusted", detail=str(untrusted), next_url=retry, status=400)
    try:
        connection = services.connect(
            code=code, server=server, client=client_for(request), owner=request.user
        )
    except services.ConnectFailed as exc:
        status = 502 if exc.reason in ("unreachable", "unidentified") else 400
        return failed(request, exc.reason, detail=exc.detail, next_url=retry, status=status)
    row = connection.token
    email, _colon, org = (row.user_name or "").rpartition(":")
    messages.success(
        request,
        _("Connected Zoho CRM as %(email)s (org %(org)s).") % {"email": email, "org": org},
        fail_silently=True,
    )
    return HttpResponseRedirect(retry or app_settings.CONNECTED_URL)


# What each refusal tells the user: a title and what happened. Nothing was stored in any case.
N_ = gettext_noop
FAILURES: dict[str, tuple[str, str]] = {
    "state_missing": (
        N_("This Zoho sign-in cannot be checked"),
        N_("Zoho sent you back without the state this site needs to check that the sign-in started here."),
    ),
    "state_unknown": (
        N_("This Zoho sign-in did not start here"),
        N_("The link back from Zoho does not belong to a sign-in started in this browser session."),
    ),
    "state_used": (
        N_("This Zoho sign-in link was already used"),
        N_("Each link back from Zoho works once."),
    ),
    "state_expired": (
        N_("This Zoho sign-in took too long"),
        N_("The sign-in was started too long ago to be finished now."),
    ),
    "declined": (
        N_("You declined access in Zoho"),
        N_("You can connect Zoho CRM whenever you are ready."),
    ),
    "zoho_error": (
        N_("Zoho did not grant access"),
        N_("Zoho answered: %(detail)s."),
    ),
    "untrusted": (
        N_("Zoho sent you back naming an unknown server"),
        N_(
            "The link back named an accounts server this site does not trust (%(detail)s), so "
            "your sign-in code was not sent anywhere."
        ),
    ),
    "rejected": (
        N_("Zoho did not accept the sign-in code"),
        N_(
            "Zoho answered %(detail)s: the code was already used, is more than a few minutes old, "
            "or belongs to another data centre."
        ),
    ),
    "unreachable": (
        N_("Zoho could not be reached"),
        N_("%(detail)s."),
    ),
    "unidentified": (
        N_("Zoho did not say who you are"),
        N_("Zoho CRM did not name the user and organisation of this sign-in (%(detail)s)."),
    ),
    "taken": (
        N_("This Zoho account is connected by another user"),
        N_("%(detail)s is already connected to this site by another user."),
    ),
    "failed": (
        N_("The connection could not be saved"),
        N_("This site could not store the connection (%(detail)s)."),
    ),
}


def failed(
    request: HttpRequest, reason: str, *, detail: str = "", next_url: str = "", status: int = 200
) -> HttpResponse:
    """The page that says what went wrong, that nothing was connected, and offers to try again."""
    title, message = FAILURES[reason]
    retry_url = reverse("zoho_tokens:connect")
    if next_url:
        retry_url += "?" + urlencode({"next": next_url})
    context: dict[str, Any] = {
        "reason": reason,
        "title": _(title),
        "message": _(message) % {"detail": detail} if "%(detail)s" in message else _(message),
        "retry_url": retry_url,
    }
    return render(request, "zoho_tokens/connect_failed.html", context, status=status)
