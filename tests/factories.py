from datetime import timedelta

import factory
from django.contrib.auth.models import Permission, User
from django.utils import timezone

from tests.helpers import CLIENT_ID, REDIRECT_URL, now_ms
from zoho_tokens.models import ZohoToken


class ZohoTokenFactory(factory.django.DjangoModelFactory):
    """A token as the SDK leaves it after a login: valid for an hour.

    Traits give the other states: ``ZohoTokenFactory(expired=True)``.
    """

    class Meta:
        model = ZohoToken
        skip_postgeneration_save = True

    class Params:
        # The access token expired a second ago.
        expired = factory.Trait(expiry_time=factory.LazyFunction(lambda: now_ms() - 1000))
        # Expires in 30 s: inside the store's refresh margin (60 s), outside the SDK's own (5 s).
        expiring = factory.Trait(expiry_time=factory.LazyFunction(lambda: now_ms() + 30_000))
        revoked = factory.Trait(revoked_at=factory.LazyFunction(timezone.now))
        # Zoho rejected the refresh token: the user must consent again.
        needs_reauthorization = factory.Trait(
            needs_reauthorization_at=factory.LazyFunction(timezone.now), refresh_error="invalid_code"
        )
        # Only a grant token, not exchanged yet: no user, refresh or access token, no expiry.
        grant_only = factory.Trait(
            grant_token=factory.Sequence(lambda n: f"1000.grant{n:04d}.g"),
            user_name=None,
            refresh_token=None,
            access_token=None,
            expiry_time=None,
        )
        # Logged in with a grant token the row still keeps.
        with_grant_token = factory.Trait(grant_token=factory.Sequence(lambda n: f"1000.grant{n:04d}.g"))

    user_name = factory.Sequence(lambda n: f"user{n}@example.com:2000{n}")
    client_id = CLIENT_ID
    client_secret = factory.Sequence(lambda n: f"client-secret-{n}")
    refresh_token = factory.Sequence(lambda n: f"1000.refresh{n:04d}.r")
    access_token = factory.Sequence(lambda n: f"1000.access{n:04d}.a")
    grant_token = None
    expiry_time = factory.LazyFunction(lambda: now_ms() + 3_600_000)
    redirect_url = REDIRECT_URL
    api_domain = "https://www.zohoapis.com"
    owner = None

    @factory.post_generation
    def written_days_ago(obj: ZohoToken, create: bool, days: float | None, **kwargs: object) -> None:
        """``ZohoTokenFactory(written_days_ago=2)``: the row was last written two days ago
        (``updated_at`` is set on every save, so it is changed after the save)."""
        if create and days is not None:
            obj.updated_at = timezone.now() - timedelta(days=days)
            ZohoToken.objects.filter(pk=obj.pk).update(updated_at=obj.updated_at)


class UserFactory(factory.django.DjangoModelFactory):
    """A user of the site (not staff), password "pw": ``UserFactory(username="alice")``."""

    class Meta:
        model = User
        django_get_or_create = ("username",)

    username = factory.Sequence(lambda n: f"user{n}")
    email = factory.LazyAttribute(lambda user: f"{user.username}@example.com")
    password = factory.django.Password("pw")


class StaffUserFactory(factory.django.DjangoModelFactory):
    """An admin user with only the permissions named: ``StaffUserFactory(permissions=["view_zohotoken"])``."""

    class Meta:
        model = User
        skip_postgeneration_save = True

    username = factory.Sequence(lambda n: f"staff{n}")
    password = factory.django.Password("pw")
    is_staff = True

    @factory.post_generation
    def permissions(self, create: bool, codenames: list[str] | None, **kwargs: object) -> None:
        if create and codenames:
            found = Permission.objects.filter(codename__in=codenames)
            assert found.count() == len(codenames), codenames
            self.user_permissions.add(*found)
