"""use_zoho_as: the SDK's calls in a thread act as the Django user it names, and only as them."""

import threading
from concurrent.futures import ThreadPoolExecutor

import pytest
from django.core.exceptions import ImproperlyConfigured
from django.db import connections
from zohocrmsdk.src.com.zoho.crm.api.org import OrgOperations

from tests.helpers import org_zgid
from zoho_tokens.as_user import PLACEHOLDER_TOKEN, ZohoNotConnected, environment_for, use_zoho_as

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("zoho_sdk_reset")]


@pytest.fixture
def connected(zoho_for_connect, token_factory, user_factory):
    """``connected(username, email, zgid, data_centre)``: a user owning a token the fake
    Zoho issued at that data centre, its access token expired (the store refreshes it)."""

    def make(username, email, zgid, data_centre="us"):
        user = user_factory(username=username)
        token_factory(
            owner=user,
            user_name=f"{email}:{zgid}",
            refresh_token=zoho_for_connect.issue_refresh_token(email, zgid, data_centre=data_centre),
            api_domain=zoho_for_connect.url_of(data_centre),
            expired=True,
        )
        return user

    return make


def test_each_call_acts_as_the_user_named_in_their_data_centre(connected, zoho_for_connect):
    alice = connected("alice", "alice@example.com", "10001", "us")
    ann = connected("ann", "ann@example.eu", "30003", "eu")

    assert use_zoho_as(alice).user_name == "alice@example.com:10001"
    assert org_zgid() == "10001"
    use_zoho_as(ann)
    assert org_zgid() == "30003"
    use_zoho_as(alice)
    assert org_zgid() == "10001"

    assert zoho_for_connect.count("org", "us") == 2
    assert zoho_for_connect.count("org", "eu") == 1
    # One refresh each, through the store, at each token's own data centre.
    assert zoho_for_connect.count("refresh_token", "us") == 1
    assert zoho_for_connect.count("refresh_token", "eu") == 1


def test_threads_switched_to_different_users_never_mix(connected):
    users = [connected(f"user{n}", f"user{n}@example.com", str(40000 + n)) for n in range(4)]
    start = threading.Barrier(len(users))

    def calls(n):
        try:
            use_zoho_as(users[n])
            start.wait()
            return {org_zgid() for _ in range(5)}
        finally:
            connections.close_all()  # this thread's own, or PostgreSQL keeps the test database

    with ThreadPoolExecutor(len(users)) as pool:
        seen = list(pool.map(calls, range(len(users))))

    assert seen == [{str(40000 + n)} for n in range(len(users))]


def test_a_thread_that_named_nobody_acts_as_nobody(connected, zoho_for_connect):
    use_zoho_as(connected("alice", "alice@example.com", "10001"))

    def call():
        try:
            return OrgOperations().get_organization().get_status_code()
        finally:
            connections.close_all()

    with ThreadPoolExecutor(1) as pool:
        status = pool.submit(call).result()

    assert status == 401
    assert zoho_for_connect.received("org")[-1]["Authorization"] == f"Zoho-oauthtoken {PLACEHOLDER_TOKEN}"


def test_a_user_without_a_connection(user_factory):
    with pytest.raises(ZohoNotConnected, match="has not connected Zoho") as refused:
        use_zoho_as(user_factory(username="carol"))
    assert refused.value.token is None


@pytest.mark.parametrize("trait", ["needs_reauthorization", "revoked"])
def test_a_connection_that_needs_consent_again(user_factory, token_factory, trait):
    carol = user_factory(username="carol")
    row = token_factory(owner=carol, user_name="carol@example.com:1", **{trait: True})

    with pytest.raises(ZohoNotConnected, match=r"carol@example\.com must be reconnected") as refused:
        use_zoho_as(carol)
    assert refused.value.token == row


def test_a_user_with_two_connections_names_the_one_to_use(user_factory, token_factory, zoho_for_connect):
    carol = user_factory(username="carol")
    token_factory(owner=carol, user_name="carol@example.com:1")
    second = token_factory(
        owner=carol,
        user_name="carol@example.com:2",
        refresh_token=zoho_for_connect.issue_refresh_token("carol@example.com", "2"),
        api_domain=zoho_for_connect.base_url,
        expired=True,
    )

    with pytest.raises(ValueError, match="carol has 2 Zoho connections"):
        use_zoho_as(carol)
    use_zoho_as(second)
    assert org_zgid() == "2"


def test_the_environment_of_each_data_centre(settings):
    uk = environment_for("https://www.zohoapis.uk")
    eu = environment_for("https://sandbox.zohoapis.eu")

    assert (uk.url, uk.accounts_url, uk.file_upload_url) == (
        "https://www.zohoapis.uk",
        "https://accounts.zoho.uk/oauth/v2/token",
        "https://content.zohoapis.uk",
    )
    assert (eu.url, eu.accounts_url) == (
        "https://sandbox.zohoapis.eu",
        "https://accounts.zoho.eu/oauth/v2/token",
    )
    with pytest.raises(ImproperlyConfigured, match="ZOHO_TOKENS_ACCOUNTS_SERVERS"):
        environment_for("https://crm.example.com")
