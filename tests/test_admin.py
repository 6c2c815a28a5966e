"""The admin: masked, read-only tokens; revocation as permissioned, audited actions."""

import time
from datetime import timedelta

import pytest
from django.contrib.admin.models import CHANGE, LogEntry
from django.db import DatabaseError, connection
from django.urls import reverse
from django.utils import timezone

from tests.helpers import raw_row, write_raw
from zoho_tokens.models import ZohoToken
from zoho_tokens.services import revocation
from zoho_tokens.testing import DROP

CHANGELIST = reverse("admin:zoho_tokens_zohotoken_changelist")


@pytest.fixture
def rows(tokens_zoho_knows):
    return tokens_zoho_knows("ann", "ben", with_grant_token=True)


def secrets_of(rows):
    return [
        value
        for row in rows
        for value in (row.client_secret, row.refresh_token, row.access_token, row.grant_token)
    ]


@pytest.fixture
def staff(staff_factory):
    """A staff user who may view tokens but not revoke them."""
    return staff_factory(permissions=["view_zohotoken"])


@pytest.fixture
def revoker(staff_factory):
    """A staff user who may view and revoke tokens."""
    return staff_factory(permissions=["view_zohotoken", "revoke_zohotoken"])


def test_the_list_shows_tokens_without_any_secret(admin_client, rows):
    response = admin_client.get(CHANGELIST)

    html = response.content.decode()
    assert response.status_code == 200
    for row in rows:
        assert row.token_id in html
        assert row.user_name in html
    for secret in secrets_of(rows):
        assert secret not in html


def test_the_detail_page_shows_only_the_last_four_characters(admin_client, rows):
    row = rows[0]

    response = admin_client.get(reverse("admin:zoho_tokens_zohotoken_change", args=[row.pk]))

    html = response.content.decode()
    assert response.status_code == 200
    assert f"…{row.refresh_token[-4:]}" in html
    assert f"…{row.access_token[-4:]}" in html
    for secret in secrets_of(rows):
        assert secret not in html
    assert 'name="refresh_token"' not in html  # no form field for a secret


def test_tokens_cannot_be_added_or_edited(admin_client, rows):
    row = rows[0]
    change = reverse("admin:zoho_tokens_zohotoken_change", args=[row.pk])

    assert admin_client.get(reverse("admin:zoho_tokens_zohotoken_add")).status_code == 403
    assert admin_client.post(change, {"user_name": "mallory@example.com:1"}).status_code == 403
    assert ZohoToken.objects.get(pk=row.pk).user_name == row.user_name


def test_search_finds_users_but_never_searches_tokens(admin_client, rows):
    by_user = admin_client.get(CHANGELIST, {"q": "ben@example.com"})
    by_token = admin_client.get(CHANGELIST, {"q": rows[0].refresh_token})

    assert rows[1].token_id in by_user.content.decode()
    assert rows[0].token_id not in by_user.content.decode()
    assert "0 Zoho tokens" in by_token.content.decode()


def test_the_status_filter(admin_client, rows, token_factory):
    stale = token_factory(needs_reauthorization=True)
    gone = token_factory(revoked=True)

    def listed(status):
        html = admin_client.get(CHANGELIST, {"status": status}).content.decode()
        return {row.token_id for row in [*rows, stale, gone] if row.token_id in html}

    assert listed("active") == {rows[0].token_id, rows[1].token_id}
    assert listed("reauthorization") == {stale.token_id}
    assert listed("revoked") == {gone.token_id}


def test_revoking_at_zoho_revokes_logs_and_reports(client, revoker, rows, fake_zoho):
    client.force_login(revoker)
    _, ben = rows

    response = client.post(
        CHANGELIST, {"action": "revoke_at_zoho", "_selected_action": [ben.pk]}, follow=True
    )

    assert "Revoked 1 token." in response.content.decode()
    assert fake_zoho.revoked_tokens == (ben.refresh_token,)
    assert list(ZohoToken.objects.revoked()) == [ben]
    entry = LogEntry.objects.get()
    assert (entry.action_flag, entry.object_id, entry.user_id) == (CHANGE, str(ben.pk), revoker.pk)
    assert "Revoked at Zoho and locally." in entry.get_change_message()
    assert ben.refresh_token not in entry.object_repr


def test_revoking_locally_calls_no_zoho(client, revoker, rows, fake_zoho):
    client.force_login(revoker)

    client.post(CHANGELIST, {"action": "revoke_locally", "_selected_action": [rows[0].pk]})

    assert fake_zoho.count("revoke") == 0
    assert list(ZohoToken.objects.revoked()) == [rows[0]]
    assert "Revoked locally; Zoho not called." in LogEntry.objects.get().get_change_message()


def test_a_failed_revocation_is_reported_and_changes_nothing(client, revoker, rows, fake_zoho):
    client.force_login(revoker)
    fake_zoho.inject_error("revoke", DROP)

    response = client.post(
        CHANGELIST, {"action": "revoke_at_zoho", "_selected_action": [rows[0].pk]}, follow=True
    )

    html = response.content.decode()
    assert "was not revoked: Zoho could not be reached" in html
    assert rows[0].refresh_token not in html
    assert ZohoToken.objects.revoked().count() == 0
    assert LogEntry.objects.count() == 0


def test_revoking_needs_the_revoke_permission(client, staff, rows, fake_zoho):
    client.force_login(staff)

    page = client.get(CHANGELIST).content.decode()
    response = client.post(CHANGELIST, {"action": "revoke_at_zoho", "_selected_action": [rows[0].pk]})

    assert "revoke_at_zoho" not in page
    assert response.status_code in (200, 302)
    assert fake_zoho.count("revoke") == 0
    assert ZohoToken.objects.revoked().count() == 0


def test_a_hundred_revocations_with_a_slow_zoho_fit_in_one_request(
    client, revoker, tokens_zoho_knows, fake_zoho
):
    """A few at a time within one deadline: 100 tokens at 200 ms each end well inside a
    web server's worker timeout, every row revoked and audited."""
    rows = tokens_zoho_knows(*[f"user{n}" for n in range(100)])
    fake_zoho.set_delay(0.2, "revoke")
    client.force_login(revoker)

    started = time.monotonic()
    response = client.post(
        CHANGELIST, {"action": "revoke_at_zoho", "_selected_action": [row.pk for row in rows]}, follow=True
    )
    elapsed = time.monotonic() - started

    assert elapsed < 5, elapsed
    assert "Revoked 100 tokens." in response.content.decode()
    assert set(fake_zoho.revoked_tokens) == {row.refresh_token for row in rows}
    assert ZohoToken.objects.revoked().count() == 100
    assert sorted(int(pk) for pk in LogEntry.objects.values_list("object_id", flat=True)) == sorted(
        row.pk for row in rows
    )


def test_rows_zoho_did_not_answer_for_by_the_deadline_stay_active_and_are_reported(
    client, revoker, tokens_zoho_knows, fake_zoho, settings
):
    rows = tokens_zoho_knows(*[f"user{n}" for n in range(6)])
    settings.ZOHO_TOKENS_REVOKE_CONCURRENCY = 2
    settings.ZOHO_TOKENS_REVOKE_DEADLINE = 0.5
    fake_zoho.set_delay(0.3, "revoke")  # two answers by 0.3 s; the next two would come at 0.6 s
    client.force_login(revoker)

    response = client.post(
        CHANGELIST, {"action": "revoke_at_zoho", "_selected_action": [row.pk for row in rows]}, follow=True
    )

    revoked = list(ZohoToken.objects.revoked())
    assert revoked == rows[:2]
    assert [str(message) for message in response.context["messages"]] == [
        "Revoked 2 tokens.",
        *(f"{row} was not revoked: Zoho did not answer within 0.5 s; run it again" for row in rows[2:]),
    ]
    # Each revoked row has its log entry; the others none.
    assert sorted(LogEntry.objects.values_list("object_id", flat=True)) == sorted(str(r.pk) for r in revoked)

    # Repeating the action finishes the job.
    settings.ZOHO_TOKENS_REVOKE_DEADLINE = 20
    fake_zoho.set_delay(0, "revoke")
    client.post(CHANGELIST, {"action": "revoke_at_zoho", "_selected_action": [row.pk for row in rows]})
    assert ZohoToken.objects.revoked().count() == 6


def test_a_call_cut_short_by_the_actions_deadline_is_reported_as_the_deadline(fake_zoho, settings):
    """The whole action's deadline ends the last calls twice at once: the caller stops
    waiting, and each call's own watchdog (bounded by what is left of it) fires. Whichever
    comes first, the row is reported the same way, never as an unreachable Zoho."""
    settings.ZOHO_TOKENS_REFRESH_TIMEOUT = 5
    fake_zoho.set_delay(1, "revoke")
    refresh_token = fake_zoho.issue_refresh_token("ann@example.com", "1")

    reason = revocation._revoke_at_zoho(fake_zoho.token_url, refresh_token, time.monotonic() + 0.2, 0.2)
    # A call still queued when the deadline passes is not sent, and reads the same.
    queued = revocation._revoke_at_zoho(fake_zoho.token_url, refresh_token, time.monotonic() - 0.01, 0.2)

    assert reason == queued == "Zoho did not answer within 0.2 s; run it again"
    assert fake_zoho.count("revoke") == 1


# --- deleting: only what was revoked ------------------------------------------------


def test_the_delete_action_refuses_active_tokens_even_for_a_superuser(admin_client, token_factory, fake_zoho):
    ann, ben = token_factory(), token_factory(revoked=True)

    response = admin_client.post(
        CHANGELIST,
        {"action": "delete_selected", "_selected_action": [ann.pk, ben.pk], "post": "yes"},
        follow=True,
    )

    assert "1 selected token is active: revoke it first (at Zoho, then locally)." in response.content.decode()
    assert ZohoToken.objects.count() == 2
    # Revoked tokens go, through Django's confirmation.
    admin_client.post(CHANGELIST, {"action": "delete_selected", "_selected_action": [ben.pk], "post": "yes"})
    assert list(ZohoToken.objects.all()) == [ann]
    assert fake_zoho.count("revoke") == 0


def test_an_active_token_has_no_delete_button_and_cannot_be_deleted(admin_client, token_factory):
    ann, ben = token_factory(), token_factory(revoked=True)

    def delete_url(row):
        return reverse("admin:zoho_tokens_zohotoken_delete", args=[row.pk])

    change_url = reverse("admin:zoho_tokens_zohotoken_change", args=[ann.pk])
    page = admin_client.get(change_url).content.decode()
    assert delete_url(ann) not in page
    # The delete page, asked for anyway (a link kept from before the row was authorised
    # again): back to the token, told why.
    for response in (admin_client.get(delete_url(ann)), admin_client.post(delete_url(ann), {"post": "yes"})):
        assert (response.status_code, response["Location"]) == (302, change_url)
    shown = admin_client.get(change_url)
    assert [str(message) for message in shown.context["messages"]] == [
        f"{ann} is active: revoke it first (at Zoho, then locally). Nothing was deleted."
    ] * 2
    assert ZohoToken.objects.filter(pk=ann.pk).exists()
    # A revoked token's page offers it, and it goes.
    page = admin_client.get(reverse("admin:zoho_tokens_zohotoken_change", args=[ben.pk])).content.decode()
    assert delete_url(ben) in page
    assert admin_client.post(delete_url(ben), {"post": "yes"}).status_code == 302
    assert list(ZohoToken.objects.all()) == [ann]


def test_without_the_delete_permission_the_delete_page_stays_forbidden(client, staff, token_factory):
    client.force_login(staff)
    for row in (token_factory(), token_factory(revoked=True)):
        url = reverse("admin:zoho_tokens_zohotoken_delete", args=[row.pk])
        assert client.get(url).status_code == 403
        assert client.post(url, {"post": "yes"}).status_code == 403
    assert ZohoToken.objects.count() == 2


def test_each_revocation_commits_with_its_log_entry(client, revoker, tokens_zoho_knows, fake_zoho):
    rows = tokens_zoho_knows("ann", "ben", "cat", "dan", "eve")
    client.force_login(revoker)
    updates = []

    def fail_the_third_revocation(execute, sql, params, many, context):
        if sql.startswith("UPDATE") and ZohoToken._meta.db_table in sql:
            updates.append(sql)
            if len(updates) == 3:
                raise DatabaseError("the disk is full")
        return execute(sql, params, many, context)

    with connection.execute_wrapper(fail_the_third_revocation):
        response = client.post(
            CHANGELIST,
            {"action": "revoke_at_zoho", "_selected_action": [row.pk for row in rows]},
            follow=True,
        )

    html = response.content.decode()
    assert "Revoked 2 tokens." in html
    assert "The database failed (DatabaseError): the other selected tokens were not revoked here." in html
    # Zoho answers in any order: whichever two were marked first are revoked and logged.
    revoked = sorted(ZohoToken.objects.revoked().values_list("pk", flat=True))
    assert len(revoked) == 2
    assert sorted(int(entry.object_id) for entry in LogEntry.objects.all()) == revoked
    assert ZohoToken.objects.active().count() == 3


def test_a_value_that_does_not_open_is_shown_as_such(admin_client, rows):
    ann, ben = rows
    write_raw(ben.pk, "refresh_token", raw_row(ann.pk)["refresh_token"])

    response = admin_client.get(reverse("admin:zoho_tokens_zohotoken_change", args=[ben.pk]))

    html = response.content.decode()
    assert response.status_code == 200
    assert "cannot be decrypted" in html
    assert f"…{ben.access_token[-4:]}" in html
    assert f"…{ann.refresh_token[-4:]}" not in html


# --- no token in a URL ---------------------------------------------------------------


@pytest.mark.parametrize(
    "lookup",
    ["refresh_token", "access_token", "grant_token", "refresh_token_digest", "fingerprint"],
)
def test_filtering_the_list_by_a_token_tells_nothing(client, staff, rows, lookup):
    """A view-only user must not learn from the row count whether a guessed token is real."""
    client.force_login(staff)
    real = getattr(ZohoToken.objects.get(pk=rows[0].pk), lookup)

    with_real = client.get(CHANGELIST, {lookup: real})
    with_guess = client.get(CHANGELIST, {lookup: "1000.a-guess.r"})

    assert (with_real.status_code, with_guess.status_code) == (400, 400)
    assert with_real.content == with_guess.content
    assert real not in with_real.content.decode()


# --- who and in what state, at a glance -------------------------------------------------------


def status_cell(html, row):
    """The status cell of ``row``'s line in the changelist, tags stripped."""
    import re

    line = re.search(rf"<tr>(?:(?!</tr>).)*{row.token_id}(?:(?!</tr>).)*</tr>", html, re.S).group(0)
    cell = re.search(r'<td class="field-status">(.*?)</td>', line, re.S).group(1)
    return " ".join(re.sub(r"<[^>]+>", " ", cell).split())


def test_the_status_reads_at_a_glance(admin_client, token_factory, user_factory):
    rows = {
        "active": token_factory(owner=user_factory(username="ann")),
        "expiring": token_factory(expiring=True),
        "expired": token_factory(expired=True),
        "flagged": token_factory(needs_reauthorization=True),
        "revoked": token_factory(revoked=True),
        "backing off": token_factory(
            expiring=True,
            refresh_failures=2,
            refresh_error="rate_limited",
            refresh_retry_at=timezone.now() + timedelta(minutes=5, seconds=30),
        ),
    }

    html = admin_client.get(CHANGELIST).content.decode()

    cells = {name: status_cell(html, row) for name, row in rows.items()}
    assert cells == {
        "active": "Active access token valid for 59 minutes",
        "expiring": "Expiring access token expires in under a minute",
        "expired": "Expiring access token expired just now: renewed on the next call",
        "flagged": "Needs re-authorisation flagged just now (invalid_code) · Reconnect",
        "revoked": "Revoked just now",
        "backing off": "Expiring access token expires in under a minute · refreshes failing (rate_limited), "
        "next try in 5 minutes",
    }
    assert ">ann</td>" in html


def test_a_flagged_row_links_its_owner_back_to_zoho(admin_client, token_factory):
    row = token_factory(needs_reauthorization=True)
    change = reverse("admin:zoho_tokens_zohotoken_change", args=[row.pk])

    for page in (CHANGELIST, change):
        html = admin_client.get(page).content.decode()
        assert (
            f'<a href="/zoho/connect/?next=%2Fadmin%2Fzoho_tokens%2Fzohotoken%2F{row.pk}%2Fchange%2F"' in html
        )


def test_the_status_filter_knows_expiring_tokens(admin_client, token_factory):
    fresh, soon, expired = token_factory(), token_factory(expiring=True), token_factory(expired=True)

    def listed(status):
        html = admin_client.get(CHANGELIST, {"status": status}).content.decode()
        return {row.token_id for row in (fresh, soon, expired) if row.token_id in html}

    assert listed("active") == {fresh.token_id}
    assert listed("expiring") == {soon.token_id, expired.token_id}


def test_owners_are_filterable_and_searchable(admin_client, token_factory, user_factory):
    ann, ben = user_factory(username="ann"), user_factory(username="ben")
    anns, bens = token_factory(owner=ann), token_factory(owner=ben)

    by_filter = admin_client.get(CHANGELIST, {"owner__id__exact": ann.pk}).content.decode()
    by_search = admin_client.get(CHANGELIST, {"q": "ben"}).content.decode()

    assert anns.token_id in by_filter and bens.token_id not in by_filter
    assert bens.token_id in by_search and anns.token_id not in by_search


def test_the_detail_page_shows_times_as_the_list_does(admin_client, token_factory, settings):
    from datetime import UTC, datetime

    settings.TIME_ZONE = "UTC"
    row = token_factory(
        expiry_time=int(datetime(2026, 12, 2, 4, 12, 6, 523000, tzinfo=UTC).timestamp() * 1000)
    )

    html = admin_client.get(reverse("admin:zoho_tokens_zohotoken_change", args=[row.pk])).content.decode()

    assert "2026-12-02 04:12:06" not in html
    assert "Dec. 2, 2026, 4:12 a.m. (access token" in html
