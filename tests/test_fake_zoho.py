"""FakeZoho driven by the real Zoho CRM SDK (with its own FileStore) and by raw HTTP."""

from __future__ import annotations

import csv
import json
import time
import urllib.error
import urllib.parse
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
import requests
from zohocrmsdk.src.com.zoho.api.authenticator.oauth_token import OAuthToken
from zohocrmsdk.src.com.zoho.api.authenticator.store.file_store import FileStore
from zohocrmsdk.src.com.zoho.crm.api.exception.sdk_exception import SDKException
from zohocrmsdk.src.com.zoho.crm.api.initializer import Initializer
from zohocrmsdk.src.com.zoho.crm.api.org import OrgOperations, ResponseWrapper

from zoho_tokens.testing import DROP, RATE_LIMIT_BODY, FakeZoho

pytest_plugins = ["zoho_tokens.testing.pytest_plugin"]

pytestmark = pytest.mark.usefixtures("zoho_sdk_reset")

REDIRECT = "http://localhost/callback"


def counts(fz: FakeZoho) -> dict[str, int]:
    names = ("authorization_code", "refresh_token", "revoke", "users", "org")
    return {name: fz.count(name) for name in names}


def login(fz: FakeZoho, tmp_path: Path, code: str | None = None) -> OAuthToken:
    """Initialize the SDK with a grant token and the SDK's FileStore in tmp_path."""
    token = OAuthToken(
        client_id="client-id",
        client_secret="client-secret",
        grant_token=code or fz.issue_grant_token(),
        redirect_url=REDIRECT,
    )
    Initializer.initialize(
        environment=fz.environment(),
        token=token,
        store=FileStore(str(tmp_path / "tokens.csv")),
        resource_path=str(tmp_path),
    )
    return token


def stored_rows(tmp_path: Path) -> list[dict[str, str]]:
    with open(tmp_path / "tokens.csv", newline="") as f:
        return list(csv.DictReader(f))


def expire_stored_token(tmp_path: Path) -> None:
    """Set the FileStore's expiry to now, so the SDK refreshes before its next call."""
    path = tmp_path / "tokens.csv"
    with open(path, newline="") as f:
        rows = list(csv.reader(f))
    for row in rows[1:]:
        row[7] = str(int(time.time() * 1000))
    with open(path, "w", newline="") as f:
        csv.writer(f).writerows(rows)


def zgid_of_org() -> str:
    response = OrgOperations().get_organization()
    assert response.get_status_code() == 200
    wrapper = response.get_object()
    assert isinstance(wrapper, ResponseWrapper)
    return str(wrapper.get_org()[0].get_zgid())


def http(
    fz: FakeZoho,
    path: str,
    *,
    form: dict[str, str] | None = None,
    token: str | None = None,
) -> tuple[int, str, Any]:
    """One raw request; returns (status, content type, JSON body), errors included."""
    data = urllib.parse.urlencode(form).encode() if form is not None else None
    request = urllib.request.Request(fz.base_url + path, data=data)
    if token is not None:
        request.add_header("Authorization", "Zoho-oauthtoken " + token)
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, response.headers["Content-Type"], json.load(response)
    except urllib.error.HTTPError as error:
        with error:
            return error.code, error.headers["Content-Type"], json.load(error)


def exchange(fz: FakeZoho, code: str) -> Any:
    form = {"grant_type": "authorization_code", "code": code, "client_id": "c"}
    return http(fz, "/oauth/v2/token", form=form)[2]


def refresh(fz: FakeZoho, refresh_token: str) -> Any:
    form = {"grant_type": "refresh_token", "refresh_token": refresh_token}
    return http(fz, "/oauth/v2/token", form=form)[2]


# ------------------------------------------------------------------ the real SDK


def test_grant_login_then_get_organization(fake_zoho: FakeZoho, tmp_path: Path) -> None:
    code = fake_zoho.issue_grant_token("bob@example.com", "20002")
    token = login(fake_zoho, tmp_path, code)

    # The grant exchange, then Utility.get_user_name: one users + one org call.
    assert counts(fake_zoho) == {
        "authorization_code": 1, "refresh_token": 0, "revoke": 0, "users": 1, "org": 1,
    }  # fmt: skip
    (call,) = fake_zoho.received("authorization_code")
    assert call == {
        "client_id": "client-id",
        "client_secret": "client-secret",
        "redirect_uri": REDIRECT,
        "grant_type": "authorization_code",
        "code": code,
    }
    (row,) = stored_rows(tmp_path)
    assert row["user_name"] == "bob@example.com:20002"
    assert row["api_domain"] == fake_zoho.base_url
    assert row["access_token"] == token.get_access_token()
    assert fake_zoho.is_access_token_valid(row["access_token"])

    assert zgid_of_org() == "20002"
    assert fake_zoho.count("org") == 2
    assert fake_zoho.count("refresh_token") == 0
    assert fake_zoho.received("org")[-1]["Authorization"] == ("Zoho-oauthtoken " + row["access_token"])


def test_expired_access_token_forces_exactly_one_refresh(fake_zoho: FakeZoho, tmp_path: Path) -> None:
    login(fake_zoho, tmp_path)
    (before,) = stored_rows(tmp_path)
    expire_stored_token(tmp_path)
    fake_zoho.expire_access_tokens()  # a call without refreshing would now get 401
    assert not fake_zoho.is_access_token_valid(before["access_token"])

    assert zgid_of_org() == "10001"
    assert zgid_of_org() == "10001"  # the fresh token is reused: no second refresh

    assert fake_zoho.refresh_count(before["refresh_token"]) == 1
    assert counts(fake_zoho) == {
        "authorization_code": 1, "refresh_token": 1, "revoke": 0, "users": 1, "org": 3,
    }  # fmt: skip
    (after,) = stored_rows(tmp_path)
    assert after["refresh_token"] == before["refresh_token"]
    assert after["access_token"] != before["access_token"]
    assert fake_zoho.is_access_token_valid(after["access_token"])
    assert int(after["expiry_time"]) > int(time.time() * 1000) + 3500 * 1000


def test_short_lifetime_refreshes_on_every_call(fake_zoho: FakeZoho, tmp_path: Path) -> None:
    # The SDK refreshes when under 5 s remain, so a 4 s token is refreshed each call.
    fake_zoho.access_token_lifetime = 4
    login(fake_zoho, tmp_path)
    (row,) = stored_rows(tmp_path)
    for _ in range(3):
        assert zgid_of_org() == "10001"
    assert fake_zoho.refresh_count(row["refresh_token"]) == 3
    assert fake_zoho.count("authorization_code") == 1


def test_revoke_then_refresh_fails(fake_zoho: FakeZoho, tmp_path: Path) -> None:
    login(fake_zoho, tmp_path)
    (row,) = stored_rows(tmp_path)
    revoke_url = fake_zoho.token_url + "/revoke"

    assert OAuthToken.revoke_refresh_token(row["refresh_token"], revoke_url) is True
    assert fake_zoho.revoked_tokens == (row["refresh_token"],)
    assert not fake_zoho.is_access_token_valid(row["access_token"])
    assert OAuthToken.revoke_refresh_token("1000.unknown.token", revoke_url) is False
    assert fake_zoho.count("revoke") == 2

    expire_stored_token(tmp_path)
    with pytest.raises(SDKException) as info:
        OrgOperations().get_organization()
    assert "invalid_code" in str(info.value)
    assert fake_zoho.refresh_count(row["refresh_token"]) == 1
    assert fake_zoho.count("org") == 1  # only the login's get_user_name call


def test_injected_refresh_error_reaches_sdk_once(fake_zoho: FakeZoho, tmp_path: Path) -> None:
    login(fake_zoho, tmp_path)
    expire_stored_token(tmp_path)
    fake_zoho.inject_error("refresh_token", "invalid_client")

    with pytest.raises(SDKException) as info:
        OrgOperations().get_organization()
    assert "invalid_client" in str(info.value)
    assert zgid_of_org() == "10001"  # times=1: the next refresh works
    assert fake_zoho.count("refresh_token") == 2


def test_dropped_connection_reaches_sdk(fake_zoho: FakeZoho, tmp_path: Path) -> None:
    login(fake_zoho, tmp_path)
    expire_stored_token(tmp_path)
    fake_zoho.inject_error("refresh_token", DROP)

    with pytest.raises(SDKException) as info:
        OrgOperations().get_organization()
    assert "Remote end closed connection" in repr(info.value.cause)
    assert fake_zoho.count("refresh_token") == 1


def test_injected_grant_error_keeps_code_usable(fake_zoho: FakeZoho, tmp_path: Path) -> None:
    code = fake_zoho.issue_grant_token()
    fake_zoho.inject_error("authorization_code", "invalid_client")
    with pytest.raises(SDKException) as info:
        login(fake_zoho, tmp_path, code)
    assert "invalid_client" in str(info.value)
    assert stored_rows(tmp_path) == []

    login(fake_zoho, tmp_path, code)
    assert len(stored_rows(tmp_path)) == 1
    assert fake_zoho.count("authorization_code") == 2


def test_reused_grant_code_fails(fake_zoho: FakeZoho, tmp_path: Path) -> None:
    code = fake_zoho.issue_grant_token()
    for name in ("first", "second"):
        (tmp_path / name).mkdir()
    login(fake_zoho, tmp_path / "first", code)
    with pytest.raises(SDKException) as info:  # a fresh store: the SDK asks Zoho again
        login(fake_zoho, tmp_path / "second", code)
    assert "invalid_code" in str(info.value)
    assert fake_zoho.count("authorization_code") == 2
    assert exchange(fake_zoho, code) == {"error": "invalid_code"}


# ------------------------------------------------------------------- raw HTTP


def test_grant_and_refresh_answers(fake_zoho: FakeZoho) -> None:
    fake_zoho.access_token_lifetime = 120
    first = exchange(fake_zoho, fake_zoho.issue_grant_token())
    assert set(first) == {"access_token", "refresh_token", "expires_in", "api_domain", "token_type"}
    assert first["expires_in"] == 120
    assert first["api_domain"] == fake_zoho.base_url
    assert first["token_type"] == "Bearer"
    for key in ("access_token", "refresh_token"):
        prefix, a, b = first[key].split(".")
        assert (prefix, len(a), len(b)) == ("1000", 32, 32)

    second = refresh(fake_zoho, first["refresh_token"])
    assert set(second) == {"access_token", "expires_in", "api_domain", "token_type"}
    assert second["access_token"] != first["access_token"]
    assert fake_zoho.is_access_token_valid(first["access_token"])
    assert fake_zoho.is_access_token_valid(second["access_token"])
    assert refresh(fake_zoho, "1000.unknown.token") == {"error": "invalid_code"}
    assert fake_zoho.refresh_count(first["refresh_token"]) == 1


def test_access_token_expires_after_lifetime(fake_zoho: FakeZoho) -> None:
    refresh_token = fake_zoho.issue_refresh_token()
    fake_zoho.access_token_lifetime = 1
    access_token = refresh(fake_zoho, refresh_token)["access_token"]
    assert http(fake_zoho, "/crm/v8/org", token=access_token)[0] == 200
    time.sleep(1.1)
    assert not fake_zoho.is_access_token_valid(access_token)
    assert http(fake_zoho, "/crm/v8/org", token=access_token)[0] == 401


def test_crm_rejects_bad_or_missing_token(fake_zoho: FakeZoho) -> None:
    status, content_type, body = http(fake_zoho, "/crm/v8/users?type=CurrentUser", token="x")
    assert (status, content_type) == (401, "application/json;charset=UTF-8")
    assert body == {
        "code": "INVALID_TOKEN", "details": {}, "message": "invalid oauth token", "status": "error",
    }  # fmt: skip
    assert http(fake_zoho, "/crm/v8/org")[2]["code"] == "AUTHENTICATION_FAILURE"
    assert http(fake_zoho, "/crm/v8/nothing")[0] == 404
    assert fake_zoho.count("users") == 1
    assert fake_zoho.count("org") == 1


def test_users_answer(fake_zoho: FakeZoho) -> None:
    access_token = refresh(fake_zoho, fake_zoho.issue_refresh_token("c@example.com", "3"))["access_token"]
    status, content_type, body = http(fake_zoho, "/crm/v8/users?type=CurrentUser", token=access_token)
    assert (status, content_type) == (200, "application/json;charset=UTF-8")
    assert [user["email"] for user in body["users"]] == ["c@example.com"]


def test_rate_limit_answer(fake_zoho: FakeZoho) -> None:
    refresh_token = fake_zoho.issue_refresh_token()
    fake_zoho.inject_rate_limit("refresh_token", times=2)
    form = {"grant_type": "refresh_token", "refresh_token": refresh_token}
    for _ in range(2):
        assert http(fake_zoho, "/oauth/v2/token", form=form)[::2] == (400, dict(RATE_LIMIT_BODY))
    assert "access_token" in refresh(fake_zoho, refresh_token)
    assert fake_zoho.refresh_count(refresh_token) == 3


def test_delay(fake_zoho: FakeZoho) -> None:
    refresh_token = fake_zoho.issue_refresh_token()
    fake_zoho.set_delay(0.3, "refresh_token")
    started = time.monotonic()
    refresh(fake_zoho, refresh_token)
    assert time.monotonic() - started >= 0.3
    started = time.monotonic()
    exchange(fake_zoho, "no-such-code")
    assert time.monotonic() - started < 0.3


def test_concurrent_refreshes_are_all_counted(fake_zoho: FakeZoho) -> None:
    refresh_token = fake_zoho.issue_refresh_token()
    fake_zoho.set_delay(0.05)
    with ThreadPoolExecutor(max_workers=16) as pool:
        answers = list(pool.map(lambda _: refresh(fake_zoho, refresh_token), range(32)))
    tokens = {answer["access_token"] for answer in answers}
    assert len(tokens) == 32
    assert all(fake_zoho.is_access_token_valid(token) for token in tokens)
    assert fake_zoho.refresh_count(refresh_token) == 32


def test_reset_forgets_everything(fake_zoho: FakeZoho) -> None:
    fake_zoho.access_token_lifetime = 7
    refresh_token = fake_zoho.issue_refresh_token()
    access_token = refresh(fake_zoho, refresh_token)["access_token"]
    fake_zoho.inject_error("refresh_token", times=5)
    fake_zoho.reset()

    assert fake_zoho.access_token_lifetime == 3600
    assert fake_zoho.count("refresh_token") == 0
    assert fake_zoho.refresh_count(refresh_token) == 0
    assert not fake_zoho.is_access_token_valid(access_token)
    assert refresh(fake_zoho, refresh_token) == {"error": "invalid_code"}  # not injected
    new_refresh_token = fake_zoho.issue_refresh_token()
    assert refresh(fake_zoho, new_refresh_token)["expires_in"] == 3600


def test_unknown_endpoint_name_is_rejected(fake_zoho: FakeZoho) -> None:
    with pytest.raises(ValueError):
        fake_zoho.inject_error("refresh")
    with pytest.raises(ValueError):
        fake_zoho.count("token")


def test_stop_frees_the_server() -> None:
    with FakeZoho() as fz:
        url = fz.base_url
    with pytest.raises(RuntimeError):
        fz.base_url  # noqa: B018
    with pytest.raises(urllib.error.URLError):
        urllib.request.urlopen(url + "/crm/v8/org", timeout=2)


def test_reset_zoho_sdk_clears_every_thread() -> None:
    from zoho_tokens.testing.pytest_plugin import reset_zoho_sdk

    marker = object()
    with ThreadPoolExecutor(max_workers=1) as worker:
        worker.submit(setattr, Initializer.LOCAL, "init", marker).result()
        Initializer.initializer = marker
        assert worker.submit(Initializer.get_initializer).result() is marker
        reset_zoho_sdk()
        assert worker.submit(Initializer.get_initializer).result() is None
    assert Initializer.get_initializer() is None


# ------------------------------------------------------- data centres and consent


def post(url: str, form: dict[str, str] | None = None, token: str | None = None) -> tuple[int, Any]:
    """One raw request to any of the fake's data centres; (status, JSON body)."""
    data = urllib.parse.urlencode(form).encode() if form is not None else None
    request = urllib.request.Request(url, data=data)
    if token is not None:
        request.add_header("Authorization", "Zoho-oauthtoken " + token)
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, json.load(response)
    except urllib.error.HTTPError as error:
        with error:
            return error.code, json.load(error)


def test_codes_and_tokens_are_good_only_at_their_data_centre(fake_zoho: FakeZoho) -> None:
    us, eu = fake_zoho.url_of("us"), fake_zoho.url_of("eu")
    code = fake_zoho.issue_grant_token("ann@example.eu", "3", data_centre="eu")
    exchange_form = {"grant_type": "authorization_code", "code": code}

    assert post(us + "/oauth/v2/token", exchange_form) == (200, {"error": "invalid_code"})
    status, tokens = post(eu + "/oauth/v2/token", exchange_form)

    assert status == 200 and tokens["api_domain"] == eu
    assert post(us + "/crm/v8/org", token=tokens["access_token"])[0] == 401
    assert post(eu + "/crm/v8/org", token=tokens["access_token"])[1]["org"][0]["zgid"] == "3"
    refresh_form = {"grant_type": "refresh_token", "refresh_token": tokens["refresh_token"]}
    assert post(us + "/oauth/v2/token", refresh_form) == (200, {"error": "invalid_code"})
    assert post(us + "/oauth/v2/token/revoke", {"token": tokens["refresh_token"]})[1]["status"] == "failure"
    assert post(eu + "/oauth/v2/token/revoke", {"token": tokens["refresh_token"]})[1] == {"status": "success"}
    assert (fake_zoho.count("authorization_code", "us"), fake_zoho.count("authorization_code", "eu")) == (
        1,
        1,
    )
    assert fake_zoho.accounts_servers() == {us: us, eu: eu}
    assert fake_zoho.environment("eu").accounts_url == eu + "/oauth/v2/token"


def test_grant_codes_expire(fake_zoho: FakeZoho) -> None:
    code = fake_zoho.issue_grant_token()
    fake_zoho.expire_grant_tokens(code)

    assert exchange(fake_zoho, code) == {"error": "invalid_code"}


def test_the_consent_page_sends_the_browser_back_with_a_code_and_its_data_centre(fake_zoho: FakeZoho) -> None:
    query = {
        "client_id": "1000.C",
        "scope": "ZohoCRM.users.READ,ZohoCRM.org.READ",
        "redirect_uri": "https://app.example.com/cb/",
        "state": "s1",
        "response_type": "code",
    }
    with urllib.request.urlopen(f"{fake_zoho.authorization_url}?{urllib.parse.urlencode(query)}") as page:
        html = page.read().decode()
    assert "<strong>1000.C</strong> asks to access" in html
    assert '<button type="submit" name="decision" value="approve">Approve</button>' in html
    assert '<option value="eu">Europe (eu)</option>' in html

    answer = requests.post(
        fake_zoho.authorization_url,
        data={**query, "decision": "approve", "email": "ann@example.eu", "zgid": "3", "data_centre": "eu"},
        allow_redirects=False,
        timeout=10,
    )
    back = urllib.parse.urlsplit(answer.headers["Location"])
    params = dict(urllib.parse.parse_qsl(back.query))

    assert (answer.status_code, back.netloc, back.path) == (302, "app.example.com", "/cb/")
    assert params.keys() == {"code", "location", "accounts-server", "state"}
    assert (params["location"], params["accounts-server"], params["state"]) == (
        "eu",
        fake_zoho.url_of("eu"),
        "s1",
    )
    assert (
        post(
            fake_zoho.url_of("eu") + "/oauth/v2/token",
            {"grant_type": "authorization_code", "code": params["code"]},
        )[0]
        == 200
    )
    (consent,) = fake_zoho.consents
    assert (consent["decision"], consent["client_id"], consent["email"]) == (
        "approve",
        "1000.C",
        "ann@example.eu",
    )


def test_denying_sends_the_browser_back_with_access_denied(fake_zoho: FakeZoho) -> None:
    answer = requests.post(
        fake_zoho.authorization_url,
        data={"redirect_uri": "https://app.example.com/cb/?x=1", "state": "s2", "decision": "deny"},
        allow_redirects=False,
        timeout=10,
    )

    assert answer.headers["Location"] == (
        "https://app.example.com/cb/?x=1&error=access_denied&location=us"
        f"&accounts-server={urllib.parse.quote(fake_zoho.base_url, safe='')}&state=s2"
    )


def test_the_users_of_an_org(fake_zoho: FakeZoho) -> None:
    fake_zoho.add_user("carol.jones@example.com", "3")
    fake_zoho.add_user("dan@example.com", "4")
    token = refresh(fake_zoho, fake_zoho.issue_refresh_token("c@example.com", "3"))["access_token"]

    body = http(fake_zoho, "/crm/v8/users?type=AllUsers", token=token)[2]

    assert [(user["email"], user["full_name"]) for user in body["users"]] == [
        ("carol.jones@example.com", "Carol Jones"),
        ("c@example.com", "C"),
    ]


def test_only_the_data_centres_zoho_has() -> None:
    with pytest.raises(ValueError, match="data_centres must be some of"):
        FakeZoho(data_centres=("us", "mars"))
    with FakeZoho() as fake, pytest.raises(ValueError, match="plays"):
        fake.url_of("eu")
