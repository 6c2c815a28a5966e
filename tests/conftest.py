import os
import shutil
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from django.db import connections
from zohocrmsdk.src.com.zoho.api.authenticator.oauth_token import OAuthToken
from zohocrmsdk.src.com.zoho.crm.api.initializer import Initializer

from tests.factories import StaffUserFactory, UserFactory, ZohoTokenFactory
from zoho_tokens.store import DjangoTokenStore
from zoho_tokens.testing.fake_zoho import FakeZoho

pytest_plugins = ["zoho_tokens.testing.pytest_plugin"]

CHROMIUM = os.environ.get("ZOHO_TOKENS_CHROMIUM", "/usr/bin/chromium")
# Browser tests leave screenshots here (docs/ keeps a few of them).
SCREENSHOTS = Path(os.environ.get("ZOHO_TOKENS_SCREENSHOTS", "/tmp/zoho_tokens_screenshots"))


@pytest.fixture(scope="session")
def chromium() -> Iterator[Any]:
    """Debian's Chromium driven by Playwright, one for the whole session."""
    if not shutil.which(CHROMIUM):
        if os.environ.get("ZOHO_TOKENS_BROWSER_TESTS") == "required":
            pytest.fail(f"No Chromium at {CHROMIUM}; install Debian's chromium package.")
        pytest.skip(f"No Chromium at {CHROMIUM} (CI installs it and requires these tests).")
    from playwright.sync_api import sync_playwright

    # Playwright's sync API runs an event loop in this thread; the ORM calls the tests
    # make around it are still synchronous.
    os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = "true"
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=CHROMIUM,
            args=[
                "--no-sandbox",
                "--disable-gpu",
                "--disable-background-networking",
                "--disable-component-update",
            ],
        )
        yield browser
        browser.close()
    del os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"]


@pytest.fixture
def browser_page(chromium: Any, live_server: Any) -> Iterator[Any]:
    """A fresh browser window (no cookies), 1280 pixels wide, on ``live_server``."""
    context = chromium.new_context(viewport={"width": 1280, "height": 900})
    context.set_default_timeout(15_000)
    yield context.new_page()
    context.close()
    # The ORM calls made while Playwright runs get their own connection (its greenlet is
    # another context); left open, PostgreSQL could not drop the test database.
    connections.close_all()


@pytest.fixture
def screenshot() -> Callable[[Any, str], Path]:
    """``screenshot(page, "name")`` saves the whole page as ``name.png`` in SCREENSHOTS."""

    def take(page: Any, name: str) -> Path:
        SCREENSHOTS.mkdir(parents=True, exist_ok=True)
        path = SCREENSHOTS / f"{name}.png"
        page.screenshot(path=str(path), full_page=True)
        return path

    return take


@pytest.fixture
def token_factory(db: None) -> type[ZohoTokenFactory]:
    return ZohoTokenFactory


@pytest.fixture
def staff_factory(db: None) -> type[StaffUserFactory]:
    return StaffUserFactory


@pytest.fixture
def user_factory(db: None) -> type[UserFactory]:
    return UserFactory


@pytest.fixture
def zoho_for_connect(fake_zoho: FakeZoho, settings: Any) -> FakeZoho:
    """The fake Zoho, set up as the connect views' Zoho: consent starts at its page, codes
    are exchanged at its data centres ("us" and "eu"), revocations outside SDK calls
    reach its "us" data centre."""
    settings.ZOHO_TOKENS_AUTHORIZATION_URL = fake_zoho.authorization_url
    settings.ZOHO_TOKENS_ACCOUNTS_SERVERS = fake_zoho.accounts_servers()
    settings.ZOHO_TOKENS_TOKEN_URL = fake_zoho.token_url
    return fake_zoho


@pytest.fixture
def alice(client: Any, user_factory: Any) -> Any:
    """A signed-in user of the site, ``alice``; ``client`` is her browser."""
    user = user_factory(username="alice")
    client.force_login(user)
    return user


@pytest.fixture
def tokens_zoho_knows(
    db: None, fake_zoho: FakeZoho, settings: Any, token_factory: Any
) -> Callable[..., list[Any]]:
    """``tokens_zoho_knows("ann", "ben")``: one row per name, ``name@example.com:<n>``,
    whose refresh token the fake Zoho issued and which reaches it through
    ``ZOHO_TOKENS_TOKEN_URL`` (as the admin and the commands do, outside SDK calls).
    Other values, traits included, go to the factory: ``tokens_zoho_knows("ann", expired=True)``."""
    settings.ZOHO_TOKENS_TOKEN_URL = fake_zoho.token_url

    def make(*names: str, **values: Any) -> list[Any]:
        return [
            token_factory(
                user_name=f"{name}@example.com:{n}",
                refresh_token=fake_zoho.issue_refresh_token(f"{name}@example.com", str(n)),
                api_domain=fake_zoho.base_url,
                **values,
            )
            for n, name in enumerate(names, start=1)
        ]

    return make


@pytest.fixture
def store() -> DjangoTokenStore:
    return DjangoTokenStore()


@pytest.fixture
def sdk(
    fake_zoho: FakeZoho, store: DjangoTokenStore, tmp_path: Path, zoho_sdk_reset: None
) -> Callable[..., OAuthToken]:
    """``sdk(token)`` initialises the real SDK with our store against the fake Zoho."""

    def initialize(token: OAuthToken, **kwargs: Any) -> OAuthToken:
        Initializer.initialize(
            environment=fake_zoho.environment(),
            token=token,
            store=kwargs.pop("store", store),
            resource_path=str(tmp_path),
            **kwargs,
        )
        return token

    return initialize
