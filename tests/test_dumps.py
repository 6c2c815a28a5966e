"""``dumpdata`` and the serializers write ciphertext, and ``loaddata`` reads it back."""

import base64
import json
from io import StringIO

import pytest
from cryptography.fernet import Fernet
from django.core.management import call_command

from tests.helpers.ciphertext import open_ciphertext
from zoho_tokens import crypto
from zoho_tokens.models import ZohoToken
from zoho_tokens.store import DjangoTokenStore

pytestmark = pytest.mark.django_db

SECRETS = {
    "client_secret": "dump-client-secret",
    "refresh_token": "1000.dump-refresh.r",
    "access_token": "1000.dump-access.a",
    "grant_token": "1000.dump-grant.g",
}


def dump(format: str = "json") -> str:
    out = StringIO()
    call_command("dumpdata", "zoho_tokens", format=format, stdout=out)
    return out.getvalue()


@pytest.mark.parametrize("format", ["json", "xml", "jsonl"])
def test_dumpdata_writes_ciphertext_never_a_secret(token_factory, format):
    token_factory(**SECRETS)

    written = dump(format)

    for secret in SECRETS.values():
        assert secret not in written
    assert "dump-" not in written


def test_the_dumped_ciphertext_opens_with_the_key(token_factory, settings):
    token_factory(**SECRETS)

    (record,) = json.loads(dump())

    key = settings.ZOHO_TOKENS_ENCRYPTION_KEYS[0]
    token_id = record["fields"]["token_id"]
    assert {name: open_ciphertext(key, record["fields"][name], name, token_id) for name in SECRETS} == SECRETS


def test_loaddata_restores_what_dumpdata_wrote(token_factory, tmp_path, store: DjangoTokenStore):
    row = token_factory(**SECRETS)
    fixture = tmp_path / "tokens.json"
    fixture.write_text(dump())
    ZohoToken.objects.all().delete()

    call_command("loaddata", str(fixture), verbosity=0)

    loaded = ZohoToken.objects.get(refresh_token=SECRETS["refresh_token"])  # found by digest
    assert (loaded.pk, loaded.token_id) == (row.pk, row.token_id)
    assert {name: getattr(loaded, name) for name in SECRETS} == SECRETS
    found = store.find_token_by_id(row.token_id)
    assert (found.get_access_token(), found.get_client_secret()) == (
        SECRETS["access_token"],
        SECRETS["client_secret"],
    )


def test_loaddata_with_another_key_fails_clearly_and_loads_nothing(token_factory, tmp_path, settings):
    token_factory(**SECRETS)
    written = dump()
    fixture = tmp_path / "tokens.json"
    fixture.write_text(written)
    ZohoToken.objects.all().delete()
    settings.ZOHO_TOKENS_ENCRYPTION_KEYS = [Fernet.generate_key().decode()]

    with pytest.raises(crypto.DecryptionError) as caught:
        call_command("loaddata", str(fixture), verbosity=0)

    message = str(caught.value)
    assert "Could not load zoho_tokens.ZohoToken(pk=" in message
    assert "Cannot decrypt zoho_tokens.ZohoToken.client_secret" in message
    assert "ZOHO_TOKENS_ENCRYPTION_KEYS" in message
    # Django's error quotes the value it could not load: the ciphertext from the file,
    # never a secret.
    for secret in SECRETS.values():
        assert secret not in message
    assert ZohoToken.objects.count() == 0


@pytest.mark.parametrize(
    "plain",
    [
        "1000.0123456789abcdef0123456789abcdef.0123456789abcdef0123456789abcdef",
        "0123456789abcdef0123456789abcdef0123456789",  # a client secret: hex, valid base64
        # Strict base64 starting with the version byte, but shorter than any ciphertext.
        base64.b64encode(bytes(range(1, 33))).decode(),
        "",
    ],
)
def test_values_in_clear_are_not_taken_for_ciphertext(plain):
    field = ZohoToken._meta.get_field("refresh_token")

    assert field.to_python(plain) == plain
    assert not crypto.looks_sealed(plain)


def test_what_the_field_encrypts_looks_sealed(token_factory):
    row = token_factory()
    field = ZohoToken._meta.get_field("refresh_token")

    ciphertext = field.encrypt(row.refresh_token, row.token_id)
    assert crypto.looks_sealed(ciphertext)
    # Saving never decrypts: a value is encrypted as it is given, ciphertext-looking or not.
    row.refresh_token = ciphertext
    row.save()
    assert ZohoToken.objects.get(pk=row.pk).refresh_token == ciphertext


def test_after_loading_under_other_hmac_keys_rotate_keys_makes_tokens_findable(
    token_factory, tmp_path, settings
):
    row = token_factory(**SECRETS)
    fixture = tmp_path / "tokens.json"
    fixture.write_text(dump())
    ZohoToken.objects.all().delete()
    settings.ZOHO_TOKENS_HMAC_KEYS = ["another-environment-hmac-key-0123456789abcdef"]

    call_command("loaddata", str(fixture), verbosity=0)
    assert not ZohoToken.objects.filter(refresh_token=SECRETS["refresh_token"]).exists()
    call_command("zoho_rotate_keys", stdout=StringIO())

    assert ZohoToken.objects.get(refresh_token=SECRETS["refresh_token"]).pk == row.pk
    assert not ZohoToken.objects.get(pk=row.pk).fingerprint_is_stale()
