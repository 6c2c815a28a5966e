"""The OAuth web flow's URLs: ``path("zoho/", include("zoho_tokens.urls"))`` under any prefix.

Register the callback's full URL (``https://example.com/zoho/callback/``) as the
client's redirect URI in Zoho's API console.
"""

from django.urls import path

from . import views

app_name = "zoho_tokens"

urlpatterns = [
    path("connect/", views.connect, name="connect"),
    path("callback/", views.callback, name="callback"),
]
