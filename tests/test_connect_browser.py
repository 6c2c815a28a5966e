"""The whole flow in a real browser, on the example project's pages and the fake Zoho:
alice declines, then connects Zoho CRM, sees her org through the SDK, an admin revokes the token, alice
is asked to reconnect and does, and the refresh token it replaced is revoked at Zoho."""

from pathlib import Path

import pytest

from zoho_tokens.models import ZohoToken

EXAMPLE_TEMPLATES = Path(__file__).resolve().parent.parent / "example_project" / "templates"

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("zoho_sdk_reset")]


@pytest.fixture
def demo_site(settings, zoho_for_connect, user_factory, django_user_model):
    """The example project's site, its Zoho the fake one, with alice and an admin."""
    settings.ROOT_URLCONF = "example_project.urls"
    # As the example does: its templates first, its zoho_tokens/base.html over the app's.
    settings.TEMPLATES = [{**settings.TEMPLATES[0], "DIRS": [EXAMPLE_TEMPLATES]}]
    settings.ZOHO_TOKENS_REVOKE_WITH_OWNER = True
    for email in ("carol@example.com", "dan@example.com"):
        zoho_for_connect.add_user(email, "10001")
    user_factory(username="alice", password="alice-pw")
    django_user_model.objects.create_superuser("admin", "admin@example.com", "admin-pw")
    return zoho_for_connect


def sign_in(page, base, username, password, login="/accounts/login/"):
    page.goto(f"{base}{login}?next=/")
    page.fill("#id_username", username)
    page.fill("#id_password", password)
    page.click("button[type=submit], input[type=submit]")
    page.wait_for_load_state()


def approve(page, data_centre):
    page.wait_for_selector("text=Fake Zoho: allow access?")
    page.select_option("#data_centre", data_centre)
    page.click("button[value=approve]")
    page.wait_for_selector(".zoho-connection")


def test_connect_revoke_reconnect_in_a_browser(browser_page, live_server, demo_site, screenshot):
    page, base, zoho = browser_page, live_server.url, demo_site

    sign_in(page, base, "alice", "alice-pw")
    assert page.inner_text(".zoho-connection").strip() == "Zoho CRM is not connected. Connect Zoho CRM"
    page.click("text=Connect Zoho CRM")
    page.wait_for_selector("text=Fake Zoho: allow access?")
    assert "1000.TESTCLIENT asks to access your Zoho CRM" in page.inner_text("body")
    screenshot(page, "connect_1_consent")
    page.click("button[value=deny]")
    page.wait_for_selector(".zoho-connect-failed")
    assert page.inner_text("h1") == "You declined access in Zoho"
    screenshot(page, "connect_1b_declined")
    page.click("text=Try again")
    approve(page, "eu")

    assert page.inner_text(".zoho-connection").strip() == "Connected as alice@example.com (org 10001)"
    assert page.inner_text("ul.messages") == "Connected Zoho CRM as alice@example.com (org 10001)."
    names = page.locator("#crm-users td:first-child").all_inner_texts()
    assert sorted(names) == ["Alice", "Carol", "Dan"]
    screenshot(page, "connect_2_connected")
    first = ZohoToken.objects.get()
    assert (first.owner.username, first.api_domain) == ("alice", zoho.url_of("eu"))

    admin = page.context.browser.new_context(viewport={"width": 1280, "height": 900}).new_page()
    sign_in(admin, base, "admin", "admin-pw", login="/admin/login/")
    admin.goto(f"{base}/admin/zoho_tokens/zohotoken/")
    row = admin.locator("#result_list tr", has_text="alice@example.com")
    assert "alice" in row.locator(".field-owner").inner_text()
    assert row.locator(".field-status strong").inner_text() == "Active"
    row.locator("input[name=_selected_action]").check()
    admin.select_option("select[name=action]", "revoke_locally")
    admin.click("button[name=index]")
    assert admin.inner_text(".messagelist") == "Revoked 1 token."
    screenshot(admin, "connect_3_admin_revoked")

    page.goto(f"{base}/")
    assert page.inner_text(".zoho-connection").strip() == (
        "The connection of alice@example.com was revoked. Reconnect Zoho CRM"
    )
    assert page.locator("#crm-users").count() == 0
    screenshot(page, "connect_4_reconnect_prompt")
    assert zoho.revoked_tokens == ()  # revoked here only: Zoho still honours it

    page.click("text=Reconnect Zoho CRM")
    approve(page, "eu")

    assert page.inner_text(".zoho-connection").strip() == "Connected as alice@example.com (org 10001)"
    again = ZohoToken.objects.get()
    assert (again.pk, again.revoked_at) == (first.pk, None)
    assert again.refresh_token != first.refresh_token
    assert zoho.revoked_tokens == (first.refresh_token,)
    assert zoho.count("revoke", "eu") == 1

    admin.goto(f"{base}/admin/auth/user/{again.owner.pk}/change/")
    admin.uncheck("#id_is_active")
    admin.click("input[name=_save]")
    admin.wait_for_selector(".messagelist")
    assert zoho.revoked_tokens == (first.refresh_token, again.refresh_token)
    assert ZohoToken.objects.get().revoked_at is not None
    admin.context.close()
