"""The stored Zoho OAuth token, its queryset, and how its secrets are shown to people."""

from __future__ import annotations

import time
import uuid
from collections.abc import Collection, Iterable
from datetime import datetime
from typing import Any, cast

from django.conf import settings
from django.db import models
from django.utils.translation import gettext_lazy as _

from .fields import (
    CombinedDigestField,
    DigestField,
    EncryptedTextField,
    SecretsQuerySet,
    with_digest_fields,
)


def new_token_id() -> str:
    """A random id for a new row: unique without asking the database (never max+1)."""
    return uuid.uuid4().hex


# The values the SDK's token carries under the row's own field names, besides the
# access token: a save copies them as they are, and the fingerprint covers them.
CREDENTIAL_FIELDS = (
    "client_id",
    "client_secret",
    "refresh_token",
    "grant_token",
    "redirect_url",
    "api_domain",
)
# Every value of the SDK's token stored under the same name.
SDK_FIELDS = (*CREDENTIAL_FIELDS, "access_token")
# Encrypted at rest.
SECRET_FIELDS = ("client_secret", "refresh_token", "access_token", "grant_token")
# What the store's own refresh attempts leave behind.
REFRESH_STATE_FIELDS = ("needs_reauthorization_at", "refresh_error", "refresh_retry_at", "refresh_failures")
# Everything a save from the SDK may change (digests follow their sources: ZohoToken.save).
SAVED_FIELDS = (
    "user_name",
    *SDK_FIELDS,
    "expiry_time",
    "last_refreshed_at",
    "revoked_at",
    *REFRESH_STATE_FIELDS,
)

MASK_VISIBLE = 4

# A token's state at a glance (admin, the connection template tag).
ACTIVE, EXPIRING, NEEDS_REAUTHORIZATION, REVOKED = "active", "expiring", "needs_reauthorization", "revoked"
STATUS_LABELS = {
    ACTIVE: _("Active"),
    EXPIRING: _("Expiring"),
    NEEDS_REAUTHORIZATION: _("Needs re-authorisation"),
    REVOKED: _("Revoked"),
}
# An access token this close to its expiry (or past it) is "expiring": the store renews
# it on the next call that needs it.
EXPIRING_WITHIN_SECONDS = 10 * 60


def mask(secret: str | None) -> str:
    """How a secret is shown to people: ``"…wxyz"``, ``"—"`` for none; short ones hidden entirely."""
    if not secret:
        return "—"
    if len(secret) <= MASK_VISIBLE * 3:
        return "…"
    return f"…{secret[-MASK_VISIBLE:]}"


class ZohoTokenQuerySet(SecretsQuerySet):
    def active(self) -> ZohoTokenQuerySet:
        """Rows the SDK may see: not revoked."""
        return self.filter(revoked_at__isnull=True)

    def revoked(self) -> ZohoTokenQuerySet:
        return self.filter(revoked_at__isnull=False)

    def for_user_name(self, name: str) -> ZohoTokenQuerySet:
        """Exact, case-sensitive match on the whole user name on every database."""
        digest_field = ZohoToken._meta.get_field("user_name_digest")
        assert isinstance(digest_field, DigestField)
        return self.filter(user_name_digest=digest_field.digest_of(name))

    def for_email(self, email: str) -> list[ZohoToken]:
        """Rows saved by the SDK as ``"email:zgid"`` for this exact email."""
        # startswith narrows the rows with the index-friendly LIKE; the exact
        # comparison in Python then ignores MySQL's case-insensitive collations.
        candidates: Iterable[ZohoToken] = self.filter(user_name__startswith=f"{email}:")
        return [row for row in candidates if row.email == email]


class TokenState:
    """What the store asks of a stored token, model instance or plain values alike."""

    __slots__ = ()
    pk: Any
    token_id: str
    user_name: str | None
    client_id: str | None
    client_secret: str | None
    refresh_token: str | None
    access_token: str | None
    expiry_time: int | None
    api_domain: str | None
    needs_reauthorization_at: datetime | None
    refresh_error: str
    refresh_retry_at: datetime | None
    refresh_failures: int
    refresh_claimed_until: datetime | None

    @property
    def needs_reauthorization(self) -> bool:
        return self.needs_reauthorization_at is not None

    def expires_within(self, seconds: float, now_ms: int | None = None) -> bool:
        """True when the access token is missing or expires in less than ``seconds``."""
        if not self.access_token or self.expiry_time is None:
            return True
        now_ms = int(time.time() * 1000) if now_ms is None else now_ms
        return self.expiry_time - now_ms < seconds * 1000


class ZohoToken(TokenState, models.Model):
    """One OAuth token of one Zoho user, secrets encrypted at rest."""

    token_id = models.CharField(
        _("token id"),
        max_length=255,
        unique=True,
        default=new_token_id,
        help_text=_("The id the Zoho SDK knows this token by."),
    )
    user_name = models.TextField(
        _("user name"), null=True, blank=True, help_text=_('Saved by the SDK as "email:zgid".')
    )
    user_name_digest = DigestField(source="user_name", keyed=False, unique=True, null=True)
    # The Django user who connected this Zoho account through the OAuth views (none for
    # tokens the SDK or a command stored). SET_NULL, but the owner's tokens are revoked
    # before the user row goes when ZOHO_TOKENS_REVOKE_WITH_OWNER is on (receivers).
    owner = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        verbose_name=_("owner"),
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        related_name="zoho_tokens",
        help_text=_("The user of this site who connected this Zoho account."),
    )
    client_id = models.CharField(_("client id"), max_length=255, null=True, blank=True)
    client_secret = EncryptedTextField(_("client secret"), null=True, blank=True)
    refresh_token = EncryptedTextField(
        _("refresh token"), null=True, blank=True, digest_field="refresh_token_digest"
    )
    refresh_token_digest = DigestField(source="refresh_token", unique=True, null=True)
    access_token = EncryptedTextField(
        _("access token"), null=True, blank=True, digest_field="access_token_digest"
    )
    access_token_digest = DigestField(source="access_token", unique=True, null=True)
    grant_token = EncryptedTextField(
        _("grant token"), null=True, blank=True, digest_field="grant_token_digest"
    )
    grant_token_digest = DigestField(source="grant_token", unique=True, null=True)
    expiry_time = models.BigIntegerField(
        _("access token expiry"),
        null=True,
        blank=True,
        help_text=_("Epoch milliseconds, as the SDK keeps it."),
    )
    redirect_url = models.TextField(_("redirect URL"), null=True, blank=True)
    api_domain = models.CharField(_("API domain"), max_length=255, null=True, blank=True)
    created_at = models.DateTimeField(_("created"), auto_now_add=True)
    updated_at = models.DateTimeField(_("updated"), auto_now=True)
    last_refreshed_at = models.DateTimeField(_("access token obtained"), null=True, blank=True)
    revoked_at = models.DateTimeField(_("revoked"), null=True, blank=True, db_index=True)
    needs_reauthorization_at = models.DateTimeField(
        _("needs re-authorisation since"),
        null=True,
        blank=True,
        db_index=True,
        help_text=_("Zoho rejected the refresh token: the user must consent again."),
    )
    # Everything a save after a refresh must find unchanged, in one keyed digest: that
    # save is then one UPDATE, with no read (see services.save).
    fingerprint = CombinedDigestField(
        sources=CREDENTIAL_FIELDS,
        null=True,
        help_text=_("Keyed digest of the client, refresh and grant values, redirect URL and API domain."),
    )
    refresh_error = models.CharField(
        _("last refresh error"), max_length=100, blank=True, default="", help_text=_("Zoho's error code.")
    )
    refresh_retry_at = models.DateTimeField(
        _("no refresh before"),
        null=True,
        blank=True,
        help_text=_("Set after a failed refresh: every worker backs off until then."),
    )
    refresh_failures = models.PositiveIntegerField(
        _("failed refreshes in a row"),
        default=0,
        help_text=_("Since the last successful refresh; the back-off grows with it."),
    )
    # The refresh in progress: a worker claims it in one short UPDATE, calls Zoho with no
    # transaction open, and applies the answer only while it still holds the claim.
    refresh_claimed_by = models.CharField(
        _("refresh claimed by"), max_length=100, blank=True, default="", help_text=_("host:process:attempt")
    )
    refresh_claimed_until = models.DateTimeField(
        _("refresh claimed until"),
        null=True,
        blank=True,
        help_text=_("A claim left by a worker that died expires then."),
    )

    objects = ZohoTokenQuerySet.as_manager()

    _stored_token_id: str | None = None  # as loaded from the database

    class Meta:
        verbose_name = _("Zoho token")
        verbose_name_plural = _("Zoho tokens")
        ordering = ("pk",)
        permissions = [("revoke_zohotoken", _("Can revoke Zoho tokens"))]
        indexes = [
            # The purge's rows without a refresh token: access tokens expired before a
            # cutoff, grant tokens (no expiry) last written before one. The digest stands
            # in for the encrypted column, whose NULL-ness MariaDB cannot index (TEXT).
            models.Index(
                fields=["refresh_token_digest", "expiry_time", "updated_at"], name="zoho_token_purge_idx"
            ),
        ]

    def __str__(self) -> str:
        # Copied by Django into the admin log and tracebacks: never a secret here.
        return f"Zoho token {self.token_id} ({self.user_name or 'no user yet'})"

    def save(self, *args: Any, update_fields: Iterable[str] | None = None, **kwargs: Any) -> None:
        stored = self._stored_token_id
        if stored is not None and self.token_id != stored:
            # Every secret of the row is encrypted for its token id.
            raise ValueError(f"The token id of a stored token never changes ({stored!r}).")
        super().save(*args, update_fields=with_digest_fields(type(self), update_fields), **kwargs)

    @classmethod
    def from_db(
        cls, db: str | None, field_names: Collection[str], values: Collection[Any], **kwargs: Any
    ) -> ZohoToken:
        row = super().from_db(db, field_names, values, **kwargs)  # Django 6.1: fetch_mode
        row._stored_token_id = row.__dict__.get("token_id")
        return row

    @property
    def email(self) -> str | None:
        """The email part of an SDK user name ``"email:zgid"`` (or the whole name)."""
        if self.user_name is None:
            return None
        return self.user_name.rpartition(":")[0] or self.user_name

    @property
    def is_revoked(self) -> bool:
        return self.revoked_at is not None

    @property
    def status(self) -> str:
        """``"active"``, ``"expiring"``, ``"needs_reauthorization"`` or ``"revoked"``."""
        if self.is_revoked:
            return REVOKED
        if self.needs_reauthorization:
            return NEEDS_REAUTHORIZATION
        # From the digest, not the token: showing a status never decrypts a secret.
        if self.access_token_digest is None or self.expiry_time is None:
            return EXPIRING
        if self.expiry_time - time.time() * 1000 < EXPIRING_WITHIN_SECONDS * 1000:
            return EXPIRING
        return ACTIVE

    @property
    def org(self) -> str | None:
        """The organisation part (zgid) of an SDK user name ``"email:zgid"``."""
        if self.user_name is None or ":" not in self.user_name:
            return None
        return self.user_name.rpartition(":")[2]

    def fingerprint_is_stale(self) -> bool:
        """Whether ``fingerprint`` no longer matches the row's values (or the first HMAC key)."""
        return cast(DigestField, self._meta.get_field("fingerprint")).is_stale(self)

    def clear_refresh_state(self) -> None:
        """Forget earlier refresh failures (after a refresh or a new authorisation)."""
        self.needs_reauthorization_at = None
        self.refresh_error = ""
        self.refresh_retry_at = None
        self.refresh_failures = 0


class Lease(models.Model):
    """One run of a maintenance job at a time: the job's row, held until ``expires_at``
    (see ``zoho_tokens.leases``)."""

    name = models.CharField(_("job"), max_length=100, primary_key=True)
    holder = models.CharField(_("held by"), max_length=255, help_text=_("host:pid:random of the run."))
    expires_at = models.DateTimeField(_("held until"))

    class Meta:
        verbose_name = _("maintenance lease")
        verbose_name_plural = _("maintenance leases")

    def __str__(self) -> str:
        return f"{self.name} held by {self.holder} until {self.expires_at:%Y-%m-%d %H:%M:%S}"
