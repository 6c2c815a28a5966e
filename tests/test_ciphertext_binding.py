"""A ciphertext opens only where it was written: its table, its column and its row's token id.

Someone who can write to the table but holds no key must not be able to hand one user's
secret to another row or column: the copies are made with raw SQL, as such a writer would.
"""

import hashlib
import hmac
import json
from io import StringIO

import pytest
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from django.core.exceptions import FieldError
from django.core.management import call_command
from django.db.models import Value
from zohocrmsdk.src.com.zoho.api.authenticator.oauth_token import OAuthToken
from zohocrmsdk.src.com.zoho.crm.api.exception import SDKException

from tests.helpers import ALICE, BOB, expire, log_in, raw_row, write_raw
from tests.helpers.ciphertext import open_ciphertext
from zoho_tokens.crypto import DecryptionError
from zoho_tokens.models import ZohoToken
from zoho_tokens.testing.pytest_plugin import reset_zoho_sdk


def test_a_refresh_token_copied_into_another_row_never_reaches_zoho(db, sdk, fake_zoho):
    log_in(sdk, fake_zoho, ALICE)
    log_in(sdk, fake_zoho, BOB)
    alice = ZohoToken.objects.get(user_name="alice@example.com:10001")
    bob = ZohoToken.objects.get(user_name="bob@example.com:20002")
    expire(bob)  # Bob's next call refreshes: with whatever refresh token his row holds
    write_raw(bob.pk, "refresh_token", raw_row(alice.pk)["refresh_token"])
    reset_zoho_sdk()

    with pytest.raises(SDKException) as caught:
        sdk(OAuthToken(id=bob.token_id))

    message = str(caught.value)
    assert caught.value.code == "TOKEN_STORE"
    assert (
        f"Cannot decrypt zoho_tokens.ZohoToken.refresh_token of token {bob.token_id}: "
        "the value was not written for this row and column" in message
    )
    assert alice.refresh_token not in message
    assert fake_zoho.count("refresh_token") == 0
    # Alice's own row is untouched and still opens.
    assert ZohoToken.objects.get(pk=alice.pk).refresh_token == alice.refresh_token


def test_an_access_token_copied_into_the_refresh_token_column_does_not_open(token_factory, store):
    row = token_factory()
    write_raw(row.pk, "refresh_token", raw_row(row.pk)["access_token"])

    with pytest.raises(SDKException, match=f"refresh_token of token {row.token_id}: the value was not"):
        store.find_token_by_id(row.token_id)
    reread = ZohoToken.objects.get(pk=row.pk)
    with pytest.raises(DecryptionError, match="not written for this row and column"):
        _ = reread.refresh_token
    assert reread.access_token == row.access_token


def test_update_encrypts_the_value_for_each_row(token_factory, settings):
    rows = [token_factory() for _ in range(3)]

    assert ZohoToken.objects.update(client_secret="one-new-secret") == 3

    key = settings.ZOHO_TOKENS_ENCRYPTION_KEYS[0]
    stored = {row.token_id: raw_row(row.pk)["client_secret"] for row in rows}
    assert len(set(stored.values())) == 3
    for token_id, ciphertext in stored.items():
        assert open_ciphertext(key, ciphertext, "client_secret", token_id) == "one-new-secret"
    assert [row.client_secret for row in ZohoToken.objects.all()] == ["one-new-secret"] * 3
    assert ZohoToken.objects.filter(token_id="no-such-id").update(client_secret="x") == 0


def test_each_digest_column_has_its_own_key_derived_from_the_hmac_key(token_factory, settings):
    row = token_factory(refresh_token="1000.same-value.x", access_token="1000.same-value.x")
    stored = raw_row(row.pk)
    hmac_key = settings.ZOHO_TOKENS_HMAC_KEYS[0].encode()

    def digest(column: str) -> str:
        info = f"zoho_tokens HMAC-SHA256 digest\x00zoho_tokens_zohotoken\x00{column}".encode()
        key = HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=info).derive(hmac_key)
        return hmac.new(key, b"1000.same-value.x", hashlib.sha256).hexdigest()

    assert stored["refresh_token_digest"] == digest("refresh_token_digest")
    assert stored["access_token_digest"] == digest("access_token_digest")
    assert stored["refresh_token_digest"] != stored["access_token_digest"]
    assert hmac.new(hmac_key, b"1000.same-value.x", hashlib.sha256).hexdigest() not in stored.values()


def test_a_value_that_would_reach_the_database_without_its_row_is_refused(token_factory):
    row = token_factory()
    field = ZohoToken._meta.get_field("refresh_token")

    with pytest.raises(FieldError, match="refresh_token is encrypted for its row"):
        list(ZohoToken.objects.annotate(guess=Value("1000.plain.r", output_field=field)))
    assert field.encrypt("1000.plain.r", row.token_id) != field.encrypt("1000.plain.r", "another-row")


def test_the_token_id_of_a_stored_token_never_changes(token_factory):
    row = token_factory()
    token_id = row.token_id

    with pytest.raises(FieldError, match="token_id never changes"):
        ZohoToken.objects.filter(pk=row.pk).update(token_id="another-id")
    reread = ZohoToken.objects.get(pk=row.pk)
    reread.token_id = "another-id"
    with pytest.raises(ValueError, match="never changes"):
        reread.save()

    assert ZohoToken.objects.get(pk=row.pk).token_id == token_id


def test_a_fixture_with_values_swapped_between_records_loads_nothing(token_factory, tmp_path):
    token_factory()
    token_factory()
    out = StringIO()
    call_command("dumpdata", "zoho_tokens", stdout=out)
    records = json.loads(out.getvalue())
    a, b = (record["fields"] for record in records)
    a["client_secret"], b["client_secret"] = b["client_secret"], a["client_secret"]
    fixture = tmp_path / "swapped.json"
    fixture.write_text(json.dumps(records))
    ZohoToken.objects.all().delete()

    with pytest.raises(DecryptionError, match="not written for this row and column"):
        call_command("loaddata", str(fixture), verbosity=0)

    assert ZohoToken.objects.count() == 0
