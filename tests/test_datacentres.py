"""Zoho's data centres: the accounts server of every API domain, and the setting for other domains."""

import pytest
from zohocrmsdk.src.com.zoho.crm.api.dc import (
    AUDataCenter,
    CADataCenter,
    CNDataCenter,
    EUDataCenter,
    INDataCenter,
    JPDataCenter,
    SADataCenter,
    USDataCenter,
)

from zoho_tokens.datacentres import (
    DATA_CENTRES,
    accounts_server_for,
    data_centre_for_accounts_server,
    data_centre_for_api_domain,
    token_endpoint_for,
    trusted_accounts_servers,
)

SDK_DATA_CENTRES = [
    USDataCenter,
    EUDataCenter,
    INDataCenter,
    AUDataCenter,
    JPDataCenter,
    CNDataCenter,
    CADataCenter,
    SADataCenter,
]


@pytest.mark.parametrize("data_center", SDK_DATA_CENTRES, ids=lambda dc: dc.__name__)
@pytest.mark.parametrize("environment", ["PRODUCTION", "SANDBOX", "DEVELOPER"])
def test_every_environment_the_sdk_knows_has_the_sdks_token_endpoint(data_center, environment):
    sdk_environment = getattr(data_center, environment)()

    assert token_endpoint_for(sdk_environment.url) == sdk_environment.accounts_url


@pytest.mark.parametrize("host", ["www", "sandbox", "developer"])
def test_the_uk_data_centre(host):
    assert accounts_server_for(f"https://{host}.zohoapis.uk") == "https://accounts.zoho.uk"
    assert token_endpoint_for(f"https://{host}.zohoapis.uk") == "https://accounts.zoho.uk/oauth/v2/token"


def test_nine_data_centres_with_their_codes():
    assert [centre.code for centre in DATA_CENTRES] == ["us", "eu", "in", "au", "jp", "cn", "ca", "sa", "uk"]
    assert len({centre.accounts_server for centre in DATA_CENTRES}) == 9


def test_api_domains_are_compared_by_origin():
    assert accounts_server_for("https://WWW.ZohoApis.EU/") == "https://accounts.zoho.eu"
    assert data_centre_for_api_domain("https://www.zohoapis.com.au").code == "au"
    assert data_centre_for_api_domain("http://www.zohoapis.com") is None  # not Zoho's scheme
    assert data_centre_for_api_domain("https://www.zohoapis.com.evil.test") is None
    for nothing in (None, "", "www.zohoapis.com", "not a url", "https://["):
        assert accounts_server_for(nothing) is None


def test_data_centre_of_an_accounts_server():
    """What an OAuth callback is told (Zoho's ``accounts-server`` parameter)."""
    assert data_centre_for_accounts_server("https://accounts.zoho.uk").code == "uk"
    assert data_centre_for_accounts_server("https://accounts.zohocloud.ca/").code == "ca"
    assert data_centre_for_accounts_server("https://accounts.zoho.eu/oauth/v2/token").code == "eu"
    assert data_centre_for_accounts_server("https://accounts.zoho.eu.evil.test") is None
    assert data_centre_for_accounts_server(None) is None


def test_the_setting_maps_other_domains_and_may_reroute_zohos(settings):
    settings.ZOHO_TOKENS_ACCOUNTS_SERVERS = {
        "https://crm.example.test/": "https://accounts.example.test/",
        "https://www.zohoapis.com": "https://proxy.example.test",
    }

    assert token_endpoint_for("https://crm.example.test") == "https://accounts.example.test/oauth/v2/token"
    assert accounts_server_for("https://www.zohoapis.com") == "https://proxy.example.test"
    assert accounts_server_for("https://www.zohoapis.eu") == "https://accounts.zoho.eu"
    assert data_centre_for_accounts_server("https://accounts.example.test") is None
    assert trusted_accounts_servers() == [
        *(centre.accounts_server for centre in DATA_CENTRES),
        "https://accounts.example.test",
        "https://proxy.example.test",
    ]


def test_without_the_setting_only_zohos_accounts_servers_are_trusted(settings):
    settings.ZOHO_TOKENS_ACCOUNTS_SERVERS = {}

    assert trusted_accounts_servers() == [centre.accounts_server for centre in DATA_CENTRES]
    assert token_endpoint_for("https://crm.example.test") is None


def test_the_fake_zoho_fixture_maps_its_own_domain(fake_zoho):
    assert token_endpoint_for(fake_zoho.base_url) == fake_zoho.token_url
