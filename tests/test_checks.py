"""System checks: each problem has its own stable id and a hint that shows how to fix it."""

import re
from io import StringIO

import pytest
from django.core.management import call_command
from django.core.management.base import SystemCheckError

from zoho_tokens import checks

GOOD_FERNET = "O6G1vcAygNBU63ArRpmZrL7YpGpTSva0lukwBuw6hQo="
GOOD_HMAC = "nMCKDAuUzEBMqhEt81oAmaQFJ7oAm7MisJut_ZdufuAG6Mep4n1Voyyq4nU4P4CT"
NEW_FERNET = "9x3aDB_i621KpZswzEe_1NlGzjbvvt4O3NWq4M7v_EI="
NEW_HMAC = "a-new-hmac-key-for-the-check-tests-0123456789abcdef"


def ids() -> list[str]:
    return [message.id for message in checks.check_keys()]


def test_ids_are_unique_and_namespaced():
    assert len(set(checks.CHECK_IDS)) == len(checks.CHECK_IDS)
    assert all(check_id.startswith("zoho_tokens.") for check_id in checks.CHECK_IDS)


def test_good_settings_pass(settings):
    assert checks.check_keys() == []


@pytest.mark.parametrize(
    ("encryption_keys", "hmac_keys", "expected"),
    [
        ([], [GOOD_HMAC], [checks.E001]),
        (GOOD_FERNET, [GOOD_HMAC], [checks.E002]),
        (["not-a-fernet-key"], [GOOD_HMAC], [checks.E003]),
        ([GOOD_FERNET], [], [checks.E004]),
        ([GOOD_FERNET], GOOD_HMAC, [checks.E005]),
        ([GOOD_FERNET], ["short"], [checks.E006]),
        ([GOOD_FERNET], [GOOD_FERNET], [checks.E007]),
        ([GOOD_FERNET, GOOD_FERNET], [GOOD_HMAC], [checks.W001]),
        ([GOOD_FERNET], [GOOD_HMAC, GOOD_HMAC], [checks.W001]),
        (None, None, [checks.E001, checks.E004]),
    ],
)
def test_each_problem_has_its_id(settings, encryption_keys, hmac_keys, expected):
    settings.ZOHO_TOKENS_ENCRYPTION_KEYS = encryption_keys
    settings.ZOHO_TOKENS_HMAC_KEYS = hmac_keys

    assert ids() == expected


def test_the_secret_key_is_never_a_token_key(settings):
    settings.ZOHO_TOKENS_HMAC_KEYS = [settings.SECRET_KEY]

    assert ids() == [checks.E008]


def test_every_error_hint_says_how_to_make_a_key(settings):
    settings.ZOHO_TOKENS_ENCRYPTION_KEYS = ["bad-fernet"]
    settings.ZOHO_TOKENS_HMAC_KEYS = ["bad-hmac"]

    messages = checks.check_keys()

    assert [m.id for m in messages] == [checks.E003, checks.E006]
    assert "Fernet.generate_key()" in messages[0].hint
    assert "secrets.token_urlsafe" in messages[1].hint
    assert all("bad-" not in m.msg + m.hint for m in messages)  # no key echoed back


def test_the_check_is_registered_with_django(settings):
    settings.ZOHO_TOKENS_ENCRYPTION_KEYS = []

    with pytest.raises(SystemCheckError, match=r"zoho_tokens\.E001"):
        call_command("check", stdout=StringIO(), stderr=StringIO())


# --- the keys against the stored tokens (needs the database) ---------------------------


def database_check_ids() -> list[str]:
    """What ``manage.py check --database default`` reports for this app."""
    out, err = StringIO(), StringIO()
    try:
        call_command("check", "--database", "default", stdout=out, stderr=err)
    except SystemCheckError as exc:
        return sorted(set(re.findall(r"zoho_tokens\.[EW]\d{3}", str(exc))))
    return sorted(set(re.findall(r"zoho_tokens\.[EW]\d{3}", out.getvalue() + err.getvalue())))


def test_a_wrong_hmac_key_is_caught_by_check(token_factory, settings):
    token_factory.create_batch(3, with_grant_token=True)
    assert database_check_ids() == []
    # A rotation in progress: the new key first, the old one still listed.
    settings.ZOHO_TOKENS_HMAC_KEYS = [NEW_HMAC, *settings.ZOHO_TOKENS_HMAC_KEYS]
    assert database_check_ids() == []

    settings.ZOHO_TOKENS_HMAC_KEYS = [NEW_HMAC]

    with pytest.raises(SystemCheckError) as caught:
        call_command("check", "--database", "default", stdout=StringIO(), stderr=StringIO())
    message = str(caught.value)
    assert "zoho_tokens.E009" in message
    assert '3 of 3 stored tokens checked in the database "default"' in message
    assert "zoho_rotate_keys" in message
    assert NEW_HMAC not in message
    assert database_check_ids() == [checks.E009]


def test_an_encryption_key_that_opens_no_stored_token_is_caught_by_check(token_factory, settings):
    token_factory()
    settings.ZOHO_TOKENS_ENCRYPTION_KEYS = [NEW_FERNET]

    assert database_check_ids() == [checks.E010]


@pytest.mark.parametrize(
    ("client_id", "client_secret", "expected"),
    [
        ("1000.X", "secret", []),
        (None, None, []),
        ("1000.X", None, [checks.W004]),
        (None, "secret", [checks.W004]),
    ],
)
def test_the_oauth_client_comes_whole(settings, client_id, client_secret, expected):
    settings.ZOHO_TOKENS_CLIENT_ID = client_id
    settings.ZOHO_TOKENS_CLIENT_SECRET = client_secret

    messages = checks.check_oauth_client()

    assert [message.id for message in messages] == expected
    assert all("secret" not in message.msg.replace("CLIENT_SECRET", "") for message in messages)


def test_an_accounts_server_the_secret_would_reach_in_clear(settings):
    settings.ZOHO_TOKENS_ACCOUNTS_SERVERS = {
        "https://crm.example.com": "https://accounts.example.com",
        "http://127.0.0.1:8001": "http://127.0.0.1:8001",
        "https://crm.example.org": "http://accounts.example.org",
    }

    messages = checks.check_oauth_client()

    assert [message.id for message in messages] == [checks.W005]
    assert "'http://accounts.example.org'" in messages[0].msg
