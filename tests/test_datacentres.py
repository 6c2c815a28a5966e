"""Zoho's data centres: the accounts server of every API domain, and the setting for other domains."""

from io import StringIO

import pytest
from django.core.management import call_command

from tests.helpers.sdk_data_centres import SDK_DATA_CENTRES
from zoho_tokens import checks
from zoho_tokens.datacentres import (
    DATA_CENTRES,
    accounts_server_for,
    data_centre_for_accounts_server,
    data_centre_for_api_domain,
    token_endpoint_for,
    trusted_accounts_servers,
)


@pytest.mark.parametrize("data_center", SDK_DATA_CENTRES.values(), ids=lambda dc: dc.__name__)
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


# --- system check zoho_tokens.W003 ---------------------------------------------------------


def test_active_tokens_of_unmapped_domains_are_a_warning(token_factory, settings):
    settings.ZOHO_TOKENS_ACCOUNTS_SERVERS = {}
    token_factory(api_domain="https://www.zohoapis.uk")
    token_factory.create_batch(2, api_domain="https://crm.example.test")
    token_factory(api_domain=None)
    token_factory(api_domain="https://old.example.test", revoked=True)  # revoked: not reported
    token_factory(api_domain="https://old.example.test", needs_reauthorization=True)  # reported by status

    (warning,) = checks.check_accounts_servers(databases=["default"])

    assert warning.id == "zoho_tokens.W003"
    assert warning.msg == (
        '3 active Zoho tokens in database "default" have an API domain that maps to no accounts '
        "server (no API domain: 1, https://crm.example.test: 2): the store can neither refresh nor "
        "revoke them."
    )
    assert "ZOHO_TOKENS_ACCOUNTS_SERVERS" in warning.hint


def test_mapping_the_domain_or_a_token_url_silences_the_warning(token_factory, settings):
    token_factory(api_domain="https://crm.example.test")
    settings.ZOHO_TOKENS_ACCOUNTS_SERVERS = {"https://crm.example.test": "https://accounts.example.test"}
    assert checks.check_accounts_servers(databases=["default"]) == []

    settings.ZOHO_TOKENS_ACCOUNTS_SERVERS = {}
    settings.ZOHO_TOKENS_TOKEN_URL = "https://accounts.example.test/oauth/v2/token"
    assert checks.check_accounts_servers(databases=["default"]) == []


def test_the_warning_is_a_database_check(token_factory, settings):
    """Django runs database checks only when asked for a database (as ``migrate`` does)."""
    settings.ZOHO_TOKENS_ACCOUNTS_SERVERS = {}
    token_factory(api_domain="https://crm.example.test")

    out, err = StringIO(), StringIO()
    call_command("check", stdout=out, stderr=err)
    assert "W003" not in out.getvalue() + err.getvalue()

    call_command("check", "--database", "default", stdout=out, stderr=err)
    assert (
        '(zoho_tokens.W003) 1 active Zoho token in database "default" has an API domain that maps '
        "to no accounts server (https://crm.example.test: 1): the store can neither refresh nor revoke it."
    ) in err.getvalue()
