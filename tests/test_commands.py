"""zoho_revoke_tokens and zoho_rotate_keys, as operators run them: exact output, database state,
Zoho calls (zoho_purge_tokens: test_purge.py)."""

import re
from io import StringIO

import pytest
from cryptography.fernet import Fernet
from django.core.management import call_command, load_command_class
from django.core.management.base import CommandError

from tests.helpers import raw_row, write_raw
from zoho_tokens.models import ZohoToken


def run(*args: str) -> tuple[str, str]:
    out, err = StringIO(), StringIO()
    call_command(*args, stdout=out, stderr=err)
    return out.getvalue(), err.getvalue()


@pytest.fixture
def zoho_tokens(tokens_zoho_knows):
    return tokens_zoho_knows("ann", "ben", "cat")


# --- zoho_revoke_tokens ------------------------------------------------------------


def test_revoke_by_id_revokes_at_zoho_then_locally(zoho_tokens, fake_zoho):
    ann, ben, _ = zoho_tokens

    out, err = run("zoho_revoke_tokens", ben.token_id)

    assert out == "Revoked 1 token.\n"
    assert err == ""
    assert fake_zoho.revoked_tokens == (ben.refresh_token,)
    assert list(ZohoToken.objects.revoked()) == [ben]
    assert ZohoToken.objects.get(pk=ann.pk).revoked_at is None


def test_revoke_by_user_and_email_with_verbosity(zoho_tokens, fake_zoho):
    ann, _, cat = zoho_tokens

    out, _ = run("zoho_revoke_tokens", "--user", "ann@example.com:1", "--user", "cat@example.com", "-v", "2")

    assert out == (
        f"Revoked token {ann.token_id} (ann@example.com:1).\n"
        f"Revoked token {cat.token_id} (cat@example.com:3).\n"
        "Revoked 2 tokens.\n"
    )
    assert set(fake_zoho.revoked_tokens) == {ann.refresh_token, cat.refresh_token}


def test_revoke_local_only_makes_no_http_call(zoho_tokens, fake_zoho):
    out, _ = run("zoho_revoke_tokens", "--local-only", zoho_tokens[0].token_id)

    assert out == "Revoked 1 token.\n"
    assert fake_zoho.count("revoke") == 0
    assert ZohoToken.objects.revoked().count() == 1


def test_revoke_dry_run_changes_nothing(zoho_tokens, fake_zoho):
    out, _ = run("zoho_revoke_tokens", "--dry-run", *[row.token_id for row in zoho_tokens])

    assert out == "Would revoke 3 tokens.\n"
    assert fake_zoho.count("revoke") == 0
    assert ZohoToken.objects.revoked().count() == 0


def test_revoke_when_zoho_is_unreachable_keeps_the_token_active_and_fails(zoho_tokens, fake_zoho):
    from zoho_tokens.testing import DROP

    fake_zoho.inject_error("revoke", DROP)
    ann = zoho_tokens[0]

    with pytest.raises(CommandError, match="1 token could not be revoked"):
        out, err = StringIO(), StringIO()
        call_command("zoho_revoke_tokens", ann.token_id, stdout=out, stderr=err)

    assert (
        f"Token {ann.token_id} (ann@example.com:1) not revoked: Zoho could not be reached" in err.getvalue()
    )
    assert ann.refresh_token not in err.getvalue()
    assert ZohoToken.objects.revoked().count() == 0


def test_a_token_zoho_no_longer_knows_is_revoked_locally(zoho_tokens, fake_zoho, token_factory):
    dead = token_factory(refresh_token="1000.unknown-to-zoho.r", api_domain=fake_zoho.base_url)

    out, _ = run("zoho_revoke_tokens", dead.token_id)

    assert out == "Revoked 1 token.\n"
    assert ZohoToken.objects.get(pk=dead.pk).revoked_at is not None


def test_revoke_names_what_it_cannot_find_and_revokes_nothing(zoho_tokens, fake_zoho):
    with pytest.raises(
        CommandError,
        match=re.escape("No active token for: no-such-id, nobody@example.com. Nothing was revoked."),
    ):
        run("zoho_revoke_tokens", "no-such-id", zoho_tokens[0].token_id, "--user", "nobody@example.com")

    assert fake_zoho.count("revoke") == 0
    assert ZohoToken.objects.revoked().count() == 0


def test_revoke_needs_a_target(db):
    with pytest.raises(CommandError, match="Name the tokens to revoke"):
        run("zoho_revoke_tokens")


# --- zoho_rotate_keys --------------------------------------------------------------

NEW_FERNET = "9x3aDB_i621KpZswzEe_1NlGzjbvvt4O3NWq4M7v_EI="
NEW_HMAC = "a-new-hmac-key-for-rotation-tests-0123456789abcdef"


def test_rotate_keys_moves_every_row_onto_the_new_keys(token_factory, settings):
    rows = [token_factory(grant_token=f"1000.g{n}.g") for n in range(3)]
    settings.ZOHO_TOKENS_ENCRYPTION_KEYS = [NEW_FERNET, *settings.ZOHO_TOKENS_ENCRYPTION_KEYS]
    settings.ZOHO_TOKENS_HMAC_KEYS = [NEW_HMAC, *settings.ZOHO_TOKENS_HMAC_KEYS]

    out, _ = run("zoho_rotate_keys", "--batch-size", "2")

    assert out == "Re-encrypted 3 tokens with the current keys.\n"
    settings.ZOHO_TOKENS_ENCRYPTION_KEYS = [NEW_FERNET]
    settings.ZOHO_TOKENS_HMAC_KEYS = [NEW_HMAC]
    for row in rows:
        reread = ZohoToken.objects.get(refresh_token=row.refresh_token)  # found by the new digest
        assert (reread.pk, reread.client_secret, reread.access_token) == (
            row.pk,
            row.client_secret,
            row.access_token,
        )
        assert ZohoToken.objects.get(grant_token=row.grant_token).pk == row.pk
        assert not reread.fingerprint_is_stale()  # recomputed with the new HMAC key


def test_rotate_keys_stops_at_a_value_in_an_unknown_format(token_factory, settings):
    """Values this app never wrote (here a Fernet token) are refused, never rewritten."""
    row = token_factory(client_secret="early-secret")
    key = settings.ZOHO_TOKENS_ENCRYPTION_KEYS[0]
    foreign = Fernet(key.encode()).encrypt(b"early-secret").decode()
    write_raw(row.pk, "client_secret", foreign)

    with pytest.raises(CommandError, match=r"zoho_tokens\.ZohoToken\.client_secret"):
        run("zoho_rotate_keys")

    assert raw_row(row.pk)["client_secret"] == foreign


def test_rotate_keys_with_a_missing_old_key_fails_clearly(token_factory, settings):
    token_factory()
    settings.ZOHO_TOKENS_ENCRYPTION_KEYS = [NEW_FERNET]

    with pytest.raises(CommandError, match="ZOHO_TOKENS_ENCRYPTION_KEYS"):
        run("zoho_rotate_keys")


def test_rotate_keys_on_an_empty_table(db):
    assert run("zoho_rotate_keys") == ("Re-encrypted 0 tokens with the current keys.\n", "")


# --- bad input: one line, status 1, nothing changed ----------------------------------


def from_the_command_line(capsys, *argv: str) -> tuple[int, str]:
    """What cron sees: the exit status and stderr of ``manage.py <argv>``."""
    command = load_command_class("zoho_tokens", argv[0])
    with pytest.raises(SystemExit) as exited:
        command.run_from_argv(["manage.py", *argv])
    return exited.value.code, capsys.readouterr().err


@pytest.mark.parametrize("argv", [["zoho_rotate_keys"], ["zoho_revoke_tokens", "some-token-id"]])
def test_an_unknown_database_is_one_line_and_status_1(capsys, argv):
    status, err = from_the_command_line(capsys, *argv, "--database", "nosuch")

    assert (status, err) == (1, "CommandError: --database: no database 'nosuch' in DATABASES.\n")


def test_revoke_with_a_wrong_encryption_key_names_the_setting_and_changes_nothing(
    zoho_tokens, fake_zoho, settings
):
    ann = zoho_tokens[0]
    settings.ZOHO_TOKENS_ENCRYPTION_KEYS = [NEW_FERNET]

    with pytest.raises(CommandError) as caught:
        run("zoho_revoke_tokens", ann.token_id)

    message = str(caught.value)
    assert caught.value.returncode == 1
    assert "\n" not in message
    assert message.startswith(f"Cannot decrypt zoho_tokens.ZohoToken.refresh_token of token {ann.token_id}: ")
    assert "ZOHO_TOKENS_ENCRYPTION_KEYS" in message
    assert message.endswith("Nothing was revoked.")
    assert fake_zoho.count("revoke") == 0
    assert ZohoToken.objects.revoked().count() == 0


def test_revoke_on_the_named_database(zoho_tokens, fake_zoho):
    out, _ = run("zoho_revoke_tokens", "--database", "default", zoho_tokens[1].token_id)

    assert out == "Revoked 1 token.\n"
    assert list(ZohoToken.objects.revoked()) == [zoho_tokens[1]]
