"""A user's Zoho tokens go when the user goes: deactivated or deleted, revoked at Zoho and here."""

import logging

import pytest
from django.db import transaction

from zoho_tokens.models import ZohoToken
from zoho_tokens.testing import DROP

pytestmark = pytest.mark.django_db


@pytest.fixture
def owned(zoho_for_connect, token_factory, user_factory, settings):
    """alice owns one token the fake Zoho issued, bob another; revocation follows owners."""
    settings.ZOHO_TOKENS_REVOKE_WITH_OWNER = True

    def token_of(user, email, zgid):
        return token_factory(
            owner=user,
            user_name=f"{email}:{zgid}",
            refresh_token=zoho_for_connect.issue_refresh_token(email, zgid),
            api_domain=zoho_for_connect.base_url,
        )

    alice, bob = user_factory(username="alice"), user_factory(username="bob")
    return alice, token_of(alice, "alice@example.com", "10001"), token_of(bob, "bob@example.com", "20002")


def test_a_deactivated_owners_tokens_are_revoked_at_zoho_and_here(
    owned, zoho_for_connect, django_capture_on_commit_callbacks
):
    alice, alices, bobs = owned

    with django_capture_on_commit_callbacks(execute=True):
        alice.is_active = False
        alice.save()

    assert zoho_for_connect.revoked_tokens == (alices.refresh_token,)
    assert ZohoToken.objects.get(pk=alices.pk).revoked_at is not None
    assert ZohoToken.objects.get(pk=bobs.pk).revoked_at is None


def test_a_deleted_owners_tokens_are_revoked_before_they_lose_their_owner(
    owned, zoho_for_connect, django_capture_on_commit_callbacks
):
    alice, alices, bobs = owned

    with django_capture_on_commit_callbacks(execute=True):
        alice.delete()

    row = ZohoToken.objects.get(pk=alices.pk)
    assert (row.owner, row.revoked_at is not None) == (None, True)
    assert zoho_for_connect.revoked_tokens == (alices.refresh_token,)
    assert ZohoToken.objects.get(pk=bobs.pk).revoked_at is None


def test_nothing_is_revoked_when_the_setting_is_off(
    owned, zoho_for_connect, settings, django_capture_on_commit_callbacks
):
    settings.ZOHO_TOKENS_REVOKE_WITH_OWNER = False
    alice, alices, _ = owned

    with django_capture_on_commit_callbacks(execute=True):
        alice.is_active = False
        alice.save()
        alice.delete()

    assert zoho_for_connect.count("revoke") == 0
    assert ZohoToken.objects.get(pk=alices.pk).revoked_at is None


def test_a_deactivation_rolled_back_revokes_nothing(
    owned, zoho_for_connect, django_capture_on_commit_callbacks
):
    alice, alices, _ = owned

    with django_capture_on_commit_callbacks(execute=True):
        try:
            with transaction.atomic():
                alice.is_active = False
                alice.save()
                raise RuntimeError("the admin's form failed later")
        except RuntimeError:
            pass

    assert zoho_for_connect.count("revoke") == 0
    assert ZohoToken.objects.get(pk=alices.pk).revoked_at is None


def test_saving_an_active_user_calls_nobody(owned, zoho_for_connect, django_capture_on_commit_callbacks):
    alice, _, _ = owned

    with django_capture_on_commit_callbacks(execute=True):
        alice.first_name = "Alice"
        alice.save()
        alice.save(update_fields=["last_login"])

    assert zoho_for_connect.count("revoke") == 0


def test_tokens_zoho_could_not_revoke_stay_active_and_are_logged(
    owned, zoho_for_connect, caplog, django_capture_on_commit_callbacks
):
    alice, alices, _ = owned
    zoho_for_connect.inject_error("revoke", DROP)

    with (
        caplog.at_level(logging.ERROR, logger="zoho_tokens.owner"),
        django_capture_on_commit_callbacks(execute=True),
    ):
        alice.is_active = False
        alice.save()

    assert ZohoToken.objects.get(pk=alices.pk).revoked_at is None
    (record,) = caplog.records
    assert record.getMessage().startswith("1 Zoho token(s) of deactivated user alice are still active (")
    assert record.getMessage().endswith(f"retry with: manage.py zoho_revoke_tokens {alices.token_id}")
    assert alices.refresh_token not in record.getMessage()
