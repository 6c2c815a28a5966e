"""The admin in a real browser: an operator finds a token, sees it masked, and revokes it."""

import os
import shutil
from pathlib import Path

import pytest
from django.db import connections

from zoho_tokens.models import ZohoToken

CHROMIUM = os.environ.get("ZOHO_TOKENS_CHROMIUM", "/usr/bin/chromium")
SCREENSHOTS = Path(os.environ.get("ZOHO_TOKENS_SCREENSHOTS", "/tmp/zoho_tokens_screenshots"))


@pytest.fixture
def browser_page(live_server):
    if not shutil.which(CHROMIUM):
        if os.environ.get("ZOHO_TOKENS_BROWSER_TESTS") == "required":
            pytest.fail(f"No Chromium at {CHROMIUM}; install Debian's chromium package.")
        pytest.skip(f"No Chromium at {CHROMIUM} (CI installs it and requires these tests).")
    from playwright.sync_api import sync_playwright

    # Playwright's sync API runs an event loop in this thread; the ORM calls the test
    # makes around it are still synchronous.
    os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = "true"
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=CHROMIUM,
            args=[
                "--no-sandbox",
                "--disable-gpu",
                "--disable-background-networking",
                "--disable-component-update",
            ],
        )
        page = browser.new_page()
        yield page
        browser.close()
        # The ORM calls made while Playwright runs get their own connection (its
        # greenlet is another context); left open, PostgreSQL could not drop the test database.
        connections.close_all()
    del os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"]


@pytest.mark.django_db(transaction=True)
def test_an_operator_revokes_a_token_in_the_admin(
    browser_page, live_server, fake_zoho, tokens_zoho_knows, staff_factory
):
    ann, ben = tokens_zoho_knows("ann", "ben")
    staff_factory(
        username="operator", password="operator-pw", permissions=["view_zohotoken", "revoke_zohotoken"]
    )
    page = browser_page

    page.goto(f"{live_server.url}/admin/login/?next=/admin/zoho_tokens/zohotoken/")
    page.fill("#id_username", "operator")
    page.fill("#id_password", "operator-pw")
    page.click("input[type=submit]")
    page.wait_for_selector("#result_list")

    listing = page.content()
    assert ann.token_id in listing and ben.token_id in listing
    for secret in (ann.refresh_token, ann.access_token, ben.refresh_token, ben.client_secret):
        assert secret not in listing

    page.click(f"#result_list a:text('{ben.token_id}')")
    page.wait_for_selector("fieldset")
    detail = page.inner_text("#content")
    assert f"…{ben.refresh_token[-4:]}" in detail
    assert ben.refresh_token not in page.content()
    page.go_back()

    page.check(f"input[name=_selected_action][value='{ben.pk}']")
    page.select_option("select[name=action]", "revoke_at_zoho")
    page.click("button[name=index]")
    page.wait_for_selector(".messagelist")
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SCREENSHOTS / "admin_revoked.png"), full_page=True)

    assert "Revoked 1 token." in page.inner_text(".messagelist")
    assert fake_zoho.revoked_tokens == (ben.refresh_token,)
    assert list(ZohoToken.objects.revoked()) == [ben]
    assert "Revoked" in page.inner_text(f"#result_list tr:has(a:text('{ben.token_id}'))")
