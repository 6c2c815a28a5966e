import time

import factory

from zoho_tokens.models import ZohoToken


def in_one_hour_ms() -> int:
    return int(time.time() * 1000) + 3_600_000


class ZohoTokenFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = ZohoToken

    user_name = factory.Sequence(lambda n: f"user{n}@example.com:2000{n}")
    client_id = "1000.TESTCLIENT"
    client_secret = factory.Sequence(lambda n: f"client-secret-{n}")
    refresh_token = factory.Sequence(lambda n: f"1000.refresh{n:04d}.r")
    access_token = factory.Sequence(lambda n: f"1000.access{n:04d}.a")
    grant_token = None
    expiry_time = factory.LazyFunction(in_one_hour_ms)
    redirect_url = "https://app.example.com/zoho/callback"
    api_domain = "https://www.zohoapis.com"
