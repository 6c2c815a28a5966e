"""The demo site's one page: the signed-in user's Zoho connection and a few CRM records,
fetched through the real SDK as that user."""

from __future__ import annotations

from typing import Any

from django.http import HttpRequest, HttpResponse
from django.shortcuts import render
from zohocrmsdk.src.com.zoho.crm.api import ParameterMap
from zohocrmsdk.src.com.zoho.crm.api.exception import SDKException
from zohocrmsdk.src.com.zoho.crm.api.org import OrgOperations
from zohocrmsdk.src.com.zoho.crm.api.org import ResponseWrapper as OrgWrapper
from zohocrmsdk.src.com.zoho.crm.api.users import GetUsersParam, UsersOperations
from zohocrmsdk.src.com.zoho.crm.api.users import ResponseWrapper as UsersWrapper

from zoho_tokens.as_user import ZohoNotConnected, use_zoho_as


def home(request: HttpRequest) -> HttpResponse:
    context: dict[str, Any] = {}
    if request.user.is_authenticated and request.user.zoho_tokens.exists():
        try:
            use_zoho_as(request.user)
            context.update(crm_records())
        except ZohoNotConnected:
            pass  # {% zoho_connection %} offers to reconnect
        except SDKException as exc:
            context["zoho_error"] = str(exc)
    return render(request, "example_project/home.html", context)


def crm_records() -> dict[str, Any]:
    """The organisation and its users, as the SDK returns them."""
    org = OrgOperations().get_organization().get_object()
    params = ParameterMap()
    params.add(GetUsersParam.type, "AllUsers")
    users = UsersOperations().get_users(params).get_object()
    if not isinstance(org, OrgWrapper) or not isinstance(users, UsersWrapper):
        problem = org if not isinstance(org, OrgWrapper) else users
        return {"zoho_error": f"Zoho CRM answered {problem.get_code().get_value()}: {problem.get_message()}"}
    return {"org": org.get_org()[0], "crm_users": users.get_users()}
