"""Secrets are encrypted at rest, findable through digests, and lookups that cannot work are refused."""

import base64

import pytest
from cryptography.exceptions import InvalidTag
from cryptography.fernet import Fernet
from django.core.exceptions import FieldError, ImproperlyConfigured
from django.db import transaction
from django.db.models import Case, F, Value, When

from tests.helpers import ENCRYPTED_COLUMNS, raw_row, write_raw
from tests.helpers.ciphertext import open_ciphertext
from zoho_tokens.crypto import DecryptionError
from zoho_tokens.models import ZohoToken


def test_no_secret_is_stored_in_clear(token_factory, settings):
    row = token_factory(grant_token="1000.grant.g")
    stored = raw_row(row.pk)

    secrets = [getattr(row, name) for name in ENCRYPTED_COLUMNS]
    for value in stored.values():
        for secret in secrets:
            assert secret not in str(value)
    key = settings.ZOHO_TOKENS_ENCRYPTION_KEYS[0]
    for name, secret in zip(ENCRYPTED_COLUMNS, secrets, strict=True):
        assert open_ciphertext(key, str(stored[name]), name, row.token_id) == secret
    assert len(str(stored["refresh_token_digest"])) == 64


def test_the_same_secret_encrypts_differently_each_time(token_factory):
    first = token_factory(client_secret="same-secret")
    second = token_factory(client_secret="same-secret")

    assert raw_row(first.pk)["client_secret"] != raw_row(second.pk)["client_secret"]


def test_exact_and_in_lookups_go_through_the_digest(token_factory):
    alice = token_factory(refresh_token="1000.alice.r")
    bob = token_factory(refresh_token="1000.bob.r")

    assert ZohoToken.objects.get(refresh_token="1000.alice.r") == alice
    assert list(ZohoToken.objects.filter(refresh_token__in=["1000.alice.r", "1000.bob.r"])) == [alice, bob]
    assert not ZohoToken.objects.filter(refresh_token="1000.ALICE.r").exists()
    assert list(ZohoToken.objects.exclude(refresh_token="1000.alice.r")) == [bob]
    assert ZohoToken.objects.filter(grant_token__isnull=True).count() == 2
    assert not ZohoToken.objects.filter(refresh_token__in=[]).exists()


@pytest.mark.parametrize(
    "lookup",
    [
        "refresh_token__contains",
        "refresh_token__startswith",
        "refresh_token__gt",
        "client_secret",
        "access_token__iexact",
    ],
)
def test_lookups_the_database_cannot_answer_are_refused(token_factory, lookup):
    token_factory()

    with pytest.raises(FieldError, match="is encrypted"):
        list(ZohoToken.objects.filter(**{lookup: "x"}))


def test_transforms_and_expressions_are_refused(token_factory):
    token_factory()

    with pytest.raises(FieldError, match="is encrypted"):
        list(ZohoToken.objects.filter(refresh_token__lower="x"))
    with pytest.raises(FieldError, match="plain values"):
        list(ZohoToken.objects.filter(refresh_token=F("access_token")))


def test_queryset_update_re_encrypts_and_keeps_the_digest_in_step(token_factory):
    row = token_factory(refresh_token="1000.old.r")

    assert ZohoToken.objects.filter(pk=row.pk).update(refresh_token="1000.new.r") == 1

    assert ZohoToken.objects.get(refresh_token="1000.new.r").pk == row.pk
    assert not ZohoToken.objects.filter(refresh_token="1000.old.r").exists()
    assert "1000.new.r" not in str(raw_row(row.pk)["refresh_token"])


def test_queryset_update_with_an_expression_is_refused(token_factory):
    row = token_factory()
    rows = ZohoToken.objects.filter(pk=row.pk)

    with pytest.raises(FieldError, match="plain value"):
        rows.update(refresh_token=Value("1000.x.r"))
    # Not even with a digest given, as bulk_update() does: only values sealed for their row.
    with pytest.raises(FieldError, match="plain value"):
        rows.update(
            refresh_token=Case(When(pk=row.pk, then=Value("1000.x.r"))), refresh_token_digest="0" * 64
        )
    saved = row.refresh_token
    row.refresh_token = F("access_token")
    with pytest.raises(FieldError, match="plain value"), transaction.atomic():
        row.save()
    assert ZohoToken.objects.get(pk=row.pk).refresh_token == saved
    assert raw_row(row.pk)["refresh_token_digest"] != "0" * 64


def test_bulk_update_re_encrypts_and_keeps_the_digests_in_step(token_factory):
    rows = [token_factory(), token_factory()]
    for n, row in enumerate(rows):
        row.refresh_token = f"1000.bulk{n}.r"
        row.access_token = f"1000.bulk{n}.a"

    ZohoToken.objects.bulk_update(rows, ["refresh_token", "access_token"])

    for n, row in enumerate(rows):
        assert ZohoToken.objects.get(refresh_token=f"1000.bulk{n}.r").pk == row.pk
        assert ZohoToken.objects.get(access_token=f"1000.bulk{n}.a").pk == row.pk
        assert f"1000.bulk{n}" not in str(raw_row(row.pk))


def test_save_with_update_fields_updates_the_digest_too(token_factory):
    row = token_factory(access_token="1000.before.a")
    row.access_token = "1000.after.a"

    row.save(update_fields=["access_token"])

    assert ZohoToken.objects.get(access_token="1000.after.a").pk == row.pk
    assert not ZohoToken.objects.filter(access_token="1000.before.a").exists()


@pytest.mark.parametrize(
    "query",
    [
        pytest.param(lambda rows: rows.values_list("refresh_token", flat=True), id="values_list"),
        pytest.param(lambda rows: rows.values("token_id", "client_secret"), id="values"),
        pytest.param(lambda rows: rows.values(), id="values() of every field"),
        pytest.param(lambda rows: rows.values_list(), id="values_list() of every field"),
    ],
)
def test_values_and_values_list_of_a_secret_are_refused(token_factory, query):
    """They never see a row, so they cannot open its values: refused, never ciphertext."""
    row = token_factory()

    with pytest.raises(FieldError, match=r"values\(\) and values_list\(\) cannot decrypt"):
        list(query(ZohoToken.objects.all()))

    # Fields in clear still come as values; secrets through instances.
    assert list(ZohoToken.objects.values_list("token_id", "user_name")) == [(row.token_id, row.user_name)]
    assert list(ZohoToken.objects.values("token_id")) == [{"token_id": row.token_id}]
    assert ZohoToken.objects.only("token_id", "refresh_token").get().refresh_token == row.refresh_token


def test_a_wrong_key_is_a_clear_error_never_ciphertext(token_factory, settings):
    row = token_factory()
    stored = raw_row(row.pk)
    settings.ZOHO_TOKENS_ENCRYPTION_KEYS = [Fernet.generate_key().decode()]

    reread = ZohoToken.objects.get()  # values open when read
    with pytest.raises(DecryptionError) as caught:
        _ = reread.client_secret

    message = str(caught.value)
    assert "ZOHO_TOKENS_ENCRYPTION_KEYS" in message
    assert "zoho_tokens.ZohoToken" in message
    for name in ENCRYPTED_COLUMNS:
        if stored[name] is not None:
            assert str(stored[name]) not in message
            assert getattr(row, name) not in message


def test_keys_rotate_new_first_old_still_reads(token_factory, settings):
    old_key = settings.ZOHO_TOKENS_ENCRYPTION_KEYS[0]
    row = token_factory(refresh_token="1000.rotate.r")
    new_key = Fernet.generate_key().decode()
    settings.ZOHO_TOKENS_ENCRYPTION_KEYS = [new_key, old_key]

    reread = ZohoToken.objects.get(pk=row.pk)
    assert reread.refresh_token == "1000.rotate.r"
    reread.save()

    ciphertext = str(raw_row(row.pk)["refresh_token"])
    assert open_ciphertext(new_key, ciphertext, "refresh_token", row.token_id) == "1000.rotate.r"
    with pytest.raises(InvalidTag):
        open_ciphertext(old_key, ciphertext, "refresh_token", row.token_id)


def test_hmac_keys_rotate_old_digests_still_found(token_factory, settings):
    row = token_factory(refresh_token="1000.digest.r")
    old_digest = raw_row(row.pk)["refresh_token_digest"]
    settings.ZOHO_TOKENS_HMAC_KEYS = [
        "a-brand-new-hmac-key-of-enough-length-0123456789",
        *settings.ZOHO_TOKENS_HMAC_KEYS,
    ]

    assert ZohoToken.objects.get(refresh_token="1000.digest.r").pk == row.pk
    ZohoToken.objects.get(pk=row.pk).save()

    assert raw_row(row.pk)["refresh_token_digest"] != old_digest
    assert ZohoToken.objects.get(refresh_token="1000.digest.r").pk == row.pk


def test_str_and_repr_reveal_no_secret(token_factory):
    row = token_factory()

    for text in (str(row), repr(row)):
        for name in ENCRYPTED_COLUMNS[:3]:
            assert getattr(row, name) not in text
        assert row.token_id in text


def test_no_key_reaches_a_migration(token_factory, settings):
    for field in ZohoToken._meta.get_fields():
        if hasattr(field, "deconstruct"):
            _, _, args, kwargs = field.deconstruct()
            text = repr((args, kwargs))
            for key in [*settings.ZOHO_TOKENS_ENCRYPTION_KEYS, *settings.ZOHO_TOKENS_HMAC_KEYS]:
                assert key not in text


@pytest.mark.parametrize(
    ("setting", "value", "message"),
    [
        ("ZOHO_TOKENS_ENCRYPTION_KEYS", [], "no encryption key is configured"),
        ("ZOHO_TOKENS_ENCRYPTION_KEYS", "one-string-key", "must be a list of keys"),
        ("ZOHO_TOKENS_ENCRYPTION_KEYS", ["not-fernet"], "an encryption key is malformed"),
        ("ZOHO_TOKENS_HMAC_KEYS", [], "no HMAC key is configured"),
        ("ZOHO_TOKENS_HMAC_KEYS", ["short"], "shorter than 32 characters"),
    ],
)
def test_missing_or_malformed_keys_fail_loudly_and_store_nothing(db, settings, setting, value, message):
    setattr(settings, setting, value)

    with pytest.raises(ImproperlyConfigured, match=message) as caught, transaction.atomic():
        ZohoToken.objects.create(refresh_token="1000.never-stored.r")

    assert setting in str(caught.value)
    assert "not-fernet" not in str(caught.value)
    assert "short" not in str(caught.value).replace("shorter", "")
    settings.ZOHO_TOKENS_ENCRYPTION_KEYS = ["O6G1vcAygNBU63ArRpmZrL7YpGpTSva0lukwBuw6hQo="]
    settings.ZOHO_TOKENS_HMAC_KEYS = ["nMCKDAuUzEBMqhEt81oAmaQFJ7oAm7MisJut_ZdufuAG6Mep4n1Voyyq4nU4P4CT"]
    assert ZohoToken.objects.count() == 0


def flip_one_byte(ciphertext: str, position: int) -> str:
    raw = bytearray(base64.b64decode(ciphertext))
    raw[position] ^= 0x01
    return base64.b64encode(bytes(raw)).decode()


@pytest.mark.parametrize(
    "tamper",
    [
        pytest.param(lambda stored: "gAAAAAtampered", id="fernet-looking junk"),
        pytest.param(lambda stored: "not base64 at all!", id="not base64"),
        pytest.param(lambda stored: flip_one_byte(stored, 2), id="key id"),
        pytest.param(lambda stored: flip_one_byte(stored, 10), id="nonce"),
        pytest.param(lambda stored: flip_one_byte(stored, 30), id="ciphertext"),
        pytest.param(lambda stored: flip_one_byte(stored, -1), id="tag"),
        pytest.param(lambda stored: stored[:24], id="truncated"),
    ],
)
def test_tampered_ciphertext_is_a_clear_error(token_factory, tamper):
    row = token_factory()
    write_raw(row.pk, "client_secret", tamper(str(raw_row(row.pk)["client_secret"])))

    with pytest.raises(
        DecryptionError, match=rf"zoho_tokens\.ZohoToken\.client_secret of token {row.token_id}"
    ):
        _ = ZohoToken.objects.get(pk=row.pk).client_secret


def test_values_in_an_unknown_format_fail_clearly(token_factory, settings):
    """A value this app never wrote (here a Fernet token under the same key) never
    reads as a secret: the error names the field and the setting."""
    row = token_factory(refresh_token="1000.legacy.r")
    fernet = Fernet(settings.ZOHO_TOKENS_ENCRYPTION_KEYS[0].encode())
    write_raw(row.pk, "refresh_token", fernet.encrypt(b"1000.legacy.r").decode())

    with pytest.raises(
        DecryptionError, match=r"zoho_tokens\.ZohoToken\.refresh_token.*ZOHO_TOKENS_ENCRYPTION_KEYS"
    ):
        _ = ZohoToken.objects.get(pk=row.pk).refresh_token
