"""The admin in a real browser, 1280 pixels wide: an operator finds a token, reads its
status at a glance, sees it masked, and revokes it."""

import re

import pytest

from zoho_tokens.models import ZohoToken


def text(page, selector):
    """What the element shows, non-breaking spaces as spaces."""
    return page.inner_text(selector).replace("\xa0", " ")


@pytest.mark.django_db(transaction=True)
def test_an_operator_revokes_a_token_in_the_admin(
    browser_page, live_server, fake_zoho, tokens_zoho_knows, staff_factory, user_factory, screenshot
):
    ann, ben = tokens_zoho_knows("ann", "ben")
    ZohoToken.objects.filter(pk=ben.pk).update(owner=user_factory(username="benjamin"))
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
    for secret in (ann.refresh_token, ann.access_token, ben.refresh_token, ben.client_secret):
        assert secret not in listing
    ben_row = text(page, "#result_list tr:has-text('ben@example.com')")
    assert "benjamin" in ben_row
    assert "Active\naccess token valid for 59 minutes" in ben_row
    # Nothing hides behind horizontal scrolling.
    assert page.evaluate("document.documentElement.scrollWidth") <= 1280
    screenshot(page, "admin_list")

    page.click("#result_list a:text('ben@example.com')")
    page.wait_for_selector("fieldset")
    detail = page.inner_text("#content")
    assert f"…{ben.refresh_token[-4:]}" in detail
    assert ben.refresh_token not in page.content()
    expiry = text(page, ".field-access_token_expires .readonly")
    assert re.fullmatch(
        r"\w{3}\.? \d{1,2}, \d{4}, \d{1,2}(:\d{2})? [ap]\.m\. \(access token valid for 59 minutes\)", expiry
    )
    page.go_back()

    page.check(f"input[name=_selected_action][value='{ben.pk}']")
    page.select_option("select[name=action]", "revoke_at_zoho")
    page.click("button[name=index]")
    page.wait_for_selector(".messagelist")
    screenshot(page, "admin_revoked")

    assert "Revoked 1 token." in page.inner_text(".messagelist")
    assert fake_zoho.revoked_tokens == (ben.refresh_token,)
    assert list(ZohoToken.objects.revoked()) == [ben]
    assert "Revoked\njust now" in text(page, "#result_list tr:has-text('ben@example.com')")
