"""Show django-zoho-tokens at work: the real Zoho SDK, our store, the connect views, and an
embedded fake Zoho (or the real Zoho, with a real client in ``.env``)."""

from __future__ import annotations

import os
import secrets
import sys
import tempfile
import threading
import time
from contextlib import ExitStack
from typing import Any

from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.management import call_command
from django.core.management.base import BaseCommand, CommandParser
from django.db import connection
from django.test import override_settings
from zohocrmsdk.src.com.zoho.api.authenticator.oauth_token import OAuthToken
from zohocrmsdk.src.com.zoho.crm.api.initializer import Initializer
from zohocrmsdk.src.com.zoho.crm.api.org import OrgOperations
from zohocrmsdk.src.com.zoho.crm.api.user_signature import UserSignature

from zoho_tokens.models import ZohoToken, mask
from zoho_tokens.store import DjangoTokenStore
from zoho_tokens.testing.fake_zoho import DATA_CENTRE_NAMES, FakeZoho

# Server-side integrations the console part logs in through the SDK itself.
SDK_USERS = [("bob@example.com", "20002"), ("carol@example.com", "10001")]
# alice connects through the site; her colleagues show up in her org's users.
COLLEAGUES = [("carol@example.com", "10001"), ("dan@example.com", "10001")]


class Command(BaseCommand):
    help = (
        "Log server-side users in through the Zoho SDK against an embedded fake Zoho, show what is "
        "stored, create the demo's users, and (--runserver) serve the site."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--runserver",
            metavar="ADDRPORT",
            help="Then serve the site at ADDRPORT while the fake Zoho keeps answering.",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        site = f"http://127.0.0.1:{os.environ.get('PORT', '8000')}"
        with ExitStack() as stack:
            if settings.ZOHO_FAKE:
                zoho = stack.enter_context(FakeZoho(data_centres=tuple(DATA_CENTRE_NAMES)))
                stack.enter_context(override_settings(**fake_zoho_settings(zoho)))
                self.forget_earlier_fakes(zoho)
                for email, zgid in COLLEAGUES:
                    zoho.add_user(email, zgid)
                self.sdk_logins(zoho, stack.enter_context(tempfile.TemporaryDirectory()))
                self.show_rows()
                forget_sdk_logins()
            else:
                self.stdout.write(
                    f"Real Zoho: client {settings.ZOHO_TOKENS_CLIENT_ID}, consent at "
                    f"{settings.ZOHO_TOKENS_AUTHORIZATION_URL}, callback "
                    f"{settings.ZOHO_TOKENS_REDIRECT_URL or site + '/zoho/callback/'}"
                )
            alice = self.ensure_user("alice", superuser=False)
            admin = self.ensure_user("admin", superuser=True)
            self.explain(site, alice, admin)
            if options["runserver"]:
                self.stdout.flush()  # before runserver takes over, also when piped
                # One process, so no reloader: the fake Zoho lives in it.
                call_command("runserver", options["runserver"], use_reloader=False)

    def forget_earlier_fakes(self, zoho: FakeZoho) -> None:
        """Tokens of an earlier run name a fake Zoho that is gone: nothing can use them."""
        current = set(zoho.accounts_servers().values())
        stale = [
            row.pk
            for row in ZohoToken.objects.filter(api_domain__startswith="http://127.0.0.1:")
            if row.api_domain not in current
        ]
        if stale:
            ZohoToken.objects.filter(pk__in=stale).delete()
            self.stdout.write(f"Removed {len(stale)} token(s) of an earlier run's fake Zoho.")

    def sdk_logins(self, zoho: FakeZoho, resource_path: str) -> None:
        store = DjangoTokenStore()
        for email, zgid in SDK_USERS:
            token = OAuthToken(
                client_id=settings.ZOHO_TOKENS_CLIENT_ID,
                client_secret=settings.ZOHO_TOKENS_CLIENT_SECRET,
                grant_token=zoho.issue_grant_token(email, zgid),
                redirect_url=f"http://127.0.0.1:{os.environ.get('PORT', '8000')}/zoho/callback/",
            )
            Initializer.initialize(
                environment=zoho.environment(), token=token, store=store, resource_path=resource_path
            )
            self.stdout.write(
                f"Logged in {email} through the SDK: org {org_zgid()}, token id {token.get_id()}"
            )

        # An expired token: the SDK refreshes it once through the store.
        email, zgid = SDK_USERS[0]
        row = ZohoToken.objects.get(user_name=f"{email}:{zgid}")
        ZohoToken.objects.filter(pk=row.pk).update(expiry_time=int(time.time() * 1000) - 1000)
        Initializer.switch_user(token=OAuthToken(user_signature=UserSignature(row.user_name)))
        org_zgid()
        self.stdout.write(
            f"Expired token of {row.user_name} refreshed: {zoho.count('refresh_token')} refresh"
        )

    def show_rows(self) -> None:
        self.stdout.write("\nStored tokens (as the ORM sees them, masked):")
        for row in ZohoToken.objects.order_by("pk"):
            self.stdout.write(
                f"  {row.token_id}  {row.user_name or '':<28} refresh {mask(row.refresh_token)}  "
                f"access {mask(row.access_token)}"
            )
        table = connection.ops.quote_name(ZohoToken._meta.db_table)
        with connection.cursor() as cursor:
            cursor.execute(f"SELECT refresh_token FROM {table} ORDER BY id LIMIT 1")
            (ciphertext,) = cursor.fetchone()
        self.stdout.write(f"What the database holds in refresh_token: {ciphertext[:40]}…")

    def ensure_user(self, username: str, *, superuser: bool) -> str:
        """The user's password when it was created now, else how to set a new one."""
        user_model = get_user_model()
        if user_model.objects.filter(username=username).exists():
            python = os.path.relpath(sys.executable)
            return f"password set on the first run; a new one: {python} manage.py changepassword {username}"
        password = secrets.token_urlsafe(9)
        if superuser:
            user_model.objects.create_superuser(username, f"{username}@example.com", password)
        else:
            user_model.objects.create_user(username, f"{username}@example.com", password)
        return f"password {password}"

    def explain(self, site: str, alice: str, admin: str) -> None:
        zoho = "the fake Zoho" if settings.ZOHO_FAKE else "Zoho"
        self.stdout.write(
            f"""
The demo site: {site}/
  site user  alice  {alice}
  admin      admin  {admin}

  1. Sign in as alice and click "Connect Zoho CRM".
  2. On {zoho}'s page, pick a data centre and click Approve (or Deny).
  3. Back on the site: "Connected as alice@example.com (org 10001)" and the org's users,
     fetched through the Zoho SDK with alice's token.
  4. In the admin ({site}/admin/, as admin), revoke alice's token
     ("Revoke locally only" or "at Zoho"), then reload the site: it asks alice to reconnect.
  5. In the admin's Users, untick "Active" on alice: her tokens are revoked at {zoho}.
"""
        )


def fake_zoho_settings(zoho: FakeZoho) -> dict[str, Any]:
    """The connect views' Zoho is the fake: consent at its page, codes exchanged at its data
    centres, revocations outside SDK calls at its first data centre."""
    return {
        "ZOHO_TOKENS_AUTHORIZATION_URL": zoho.authorization_url,
        # Each fake data centre's API domain is also its accounts server, as a project maps
        # a test server.
        "ZOHO_TOKENS_ACCOUNTS_SERVERS": zoho.accounts_servers(),
        "ZOHO_TOKENS_TOKEN_URL": zoho.token_url,
    }


def forget_sdk_logins() -> None:
    """The site's threads act as their own users (use_zoho_as), never as the last SDK login."""
    Initializer.initializer = None
    Initializer.LOCAL = threading.local()


def org_zgid() -> str:
    return str(OrgOperations().get_organization().get_object().get_org()[0].get_zgid())
