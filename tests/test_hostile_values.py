"""Hostile values are stored and found exactly, and touch no other row."""

import pytest
from zohocrmsdk.src.com.zoho.api.authenticator.oauth_token import OAuthToken
from zohocrmsdk.src.com.zoho.crm.api.user_signature import UserSignature

from zoho_tokens.models import ZohoToken

pytestmark = pytest.mark.django_db

HOSTILE = [
    "' OR '1'='1",
    "x'; DROP TABLE zoho_tokens_zohotoken; --",
    'double "quotes" and \\ backslashes',
    "unicode ünïcødé 東京 🚀 \u202e",
    "percent % and underscore _ wildcards",
    "t" * 4000,
]


def snapshot() -> list[tuple]:
    return [
        (row.pk, row.user_name, row.refresh_token, row.access_token)
        for row in ZohoToken.objects.order_by("pk")
    ]


@pytest.mark.parametrize(
    "value", HOSTILE, ids=["or-1-1", "drop-table", "quotes", "unicode", "wildcards", "4000"]
)
def test_hostile_values_round_trip_through_the_store(store, token_factory, value):
    bystander = token_factory(user_name="bystander@example.com:1")
    before = snapshot()
    token = OAuthToken(
        client_id="1000.C",
        client_secret=value,
        refresh_token=f"r{value}",
        user_signature=UserSignature(f"{value}:1"),
    )
    token.set_access_token(f"a{value}")

    store.save_token(token)

    assert snapshot()[: len(before)] == before
    found = store.find_token(OAuthToken(user_signature=UserSignature(f"{value}:1")))
    assert found is not None
    assert found.get_id() == token.get_id() != bystander.token_id
    assert found.get_client_secret() == value
    assert found.get_refresh_token() == f"r{value}"
    by_refresh = OAuthToken(client_id="1000.C", client_secret="x", refresh_token=f"r{value}")
    assert store.find_token(by_refresh).get_id() == token.get_id()
    assert store.find_token(OAuthToken(access_token=f"a{value}")).get_id() == token.get_id()


@pytest.mark.parametrize("value", HOSTILE[:3])
def test_an_injection_attempt_matches_nothing(store, token_factory, value):
    token_factory()

    assert store.find_token(OAuthToken(user_signature=UserSignature(value))) is None
    assert store.find_token(OAuthToken(access_token=value)) is None
    assert store.find_token(OAuthToken(id=value)) is None


def test_user_names_differing_only_in_case_are_different_users(store):
    for name in ("Case@Example.com:1", "case@example.com:1"):
        token = OAuthToken(client_id="1000.C", client_secret="s", refresh_token=f"1000.{name}.r")
        token.set_user_signature(UserSignature(name))
        store.save_token(token)

    assert ZohoToken.objects.count() == 2
    found = store.find_token(OAuthToken(user_signature=UserSignature("case@example.com:1")))
    assert found.get_refresh_token() == "1000.case@example.com:1.r"


def test_an_email_with_wildcards_matches_only_itself(store, token_factory):
    row = token_factory(user_name="a_b@example.com:1")
    token_factory(user_name="axb@example.com:2")

    found = store.find_token(OAuthToken(user_signature=UserSignature("a_b@example.com")))

    assert found.get_id() == row.token_id
