"""Which accounts servers a code may be exchanged at: Zoho's own for every data centre."""

import pytest

from tests.helpers.sdk_data_centres import SDK_DATA_CENTRES
from zoho_tokens.oauth import (
    DATA_CENTRES,
    UntrustedAccountsServer,
    accounts_server_for_api_domain,
    accounts_server_named,
    trusted_servers,
)


@pytest.mark.parametrize("code", SDK_DATA_CENTRES)
def test_every_data_centre_the_sdk_knows_is_trusted_with_the_sdks_servers(code):
    production = SDK_DATA_CENTRES[code].PRODUCTION()

    server = accounts_server_named(None, code)

    assert server.token_endpoint == production.accounts_url
    assert server.api_domain == production.url
    assert accounts_server_named(server.url, code) == server
    assert accounts_server_for_api_domain(SDK_DATA_CENTRES[code].SANDBOX().url) == server


def test_the_uk_data_centre_the_sdk_lacks():
    server = accounts_server_named("https://accounts.zoho.uk", "uk")

    assert (server.token_endpoint, server.api_domain) == (
        "https://accounts.zoho.uk/oauth/v2/token",
        "https://www.zohoapis.uk",
    )
    assert [centre.code for centre in DATA_CENTRES] == [*SDK_DATA_CENTRES, "uk"]


def test_zoho_names_its_server_in_its_own_spelling():
    assert accounts_server_named("https://Accounts.Zoho.EU/", "EU").location == "eu"
    # A path is never followed: the code goes to the server's own token endpoint.
    assert accounts_server_named("https://accounts.zoho.eu/elsewhere", "eu").token_endpoint == (
        "https://accounts.zoho.eu/oauth/v2/token"
    )


def test_without_a_server_the_one_consent_started_at(settings):
    settings.ZOHO_TOKENS_AUTHORIZATION_URL = "https://accounts.zoho.com.cn/oauth/v2/auth"

    assert accounts_server_named(None, None).location == "cn"


@pytest.mark.parametrize(
    ("named", "location"),
    [
        ("https://accounts.zoho.eu", "us"),
        (None, "xx"),
        ("https://accounts.zoho.com:444", None),
        ("https://user:pw@accounts.zoho.com", None),
        ("accounts.zoho.com", None),
        ("ftp://accounts.zoho.com", None),
    ],
)
def test_anything_else_is_untrusted(named, location):
    with pytest.raises(UntrustedAccountsServer):
        accounts_server_named(named, location)


def test_a_configured_server_carries_its_api_domain(settings):
    settings.ZOHO_TOKENS_ACCOUNTS_SERVERS = {
        "http://127.0.0.1:9002": "http://127.0.0.1:9001/",
        "http://127.0.0.1:9004/": "http://127.0.0.1:9001",  # a second domain: still one server
    }

    server = accounts_server_named("http://127.0.0.1:9001", "whatever")

    assert (server.token_endpoint, server.api_domain) == (
        "http://127.0.0.1:9001/oauth/v2/token",
        "http://127.0.0.1:9002",
    )
    assert accounts_server_for_api_domain("http://127.0.0.1:9002") == server
    assert accounts_server_for_api_domain("http://127.0.0.1:9004") == server
    assert accounts_server_for_api_domain("http://127.0.0.1:9003") is None
    assert [s.url for s in trusted_servers()].count("http://127.0.0.1:9001") == 1


def test_the_code_exchange_trusts_exactly_where_refreshes_go(settings):
    """One list of places the client secret may reach: a server refreshes are routed to
    is trusted for the code exchange, and no other."""
    settings.ZOHO_TOKENS_ACCOUNTS_SERVERS = {"https://crm.example.test": "https://accounts.example.test"}

    assert (
        accounts_server_named("https://accounts.example.test", None).api_domain == "https://crm.example.test"
    )
    settings.ZOHO_TOKENS_ACCOUNTS_SERVERS = {}
    with pytest.raises(UntrustedAccountsServer):
        accounts_server_named("https://accounts.example.test", None)


def test_a_zoho_domain_routed_elsewhere_is_revoked_there(settings):
    settings.ZOHO_TOKENS_ACCOUNTS_SERVERS = {"https://www.zohoapis.eu": "https://accounts.proxy.test"}

    assert accounts_server_for_api_domain("https://www.zohoapis.eu").url == "https://accounts.proxy.test"
