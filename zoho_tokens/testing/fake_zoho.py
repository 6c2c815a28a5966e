"""A fake Zoho (accounts server, consent page + the CRM endpoints the SDK calls) for tests.

:class:`FakeZoho` serves real HTTP on 127.0.0.1 from daemon threads, so the real
``zohocrmsdk`` (which uses ``requests``) can be pointed at it with
:meth:`FakeZoho.environment`. All state sits behind one lock: the SDK may call it from
many threads, and from child processes (which must only talk HTTP to it, never call
its methods). Only the standard library is used; the SDK is imported lazily by
:meth:`FakeZoho.environment`.

Each data centre it plays (``data_centres=("us", "eu")``) is a server of its own, on its
own port, as Zoho's are on their own hosts: a grant code, a refresh token and an access
token are good only at the data centre that issued them. The first data centre also
serves the consent page (``/oauth/v2/auth``), where a person picks a user and a data
centre and approves or denies; the browser then goes back to the ``redirect_uri`` with
``code``, ``location``, ``accounts-server`` and ``state``, as Zoho sends them.
"""

from __future__ import annotations

import html
import json
import secrets
import sys
import threading
import time
from collections import Counter, deque
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit

__all__ = ["DROP", "ENDPOINTS", "RATE_LIMIT_BODY", "RATE_LIMIT_STATUS", "FakeZoho"]

#: Endpoint names accepted by :meth:`FakeZoho.count`, ``inject_error`` and ``set_delay``.
ENDPOINTS = ("authorization_code", "refresh_token", "revoke", "users", "org")
#: ``inject_error(endpoint, DROP)`` closes the connection without any answer.
DROP = "drop"
#: What Zoho answers (HTTP 400) when a refresh token is used too often.
RATE_LIMIT_BODY: Mapping[str, str] = {
    "error": "Access Denied",
    "error_description": "You have made too many requests continuously. Please try again after some time.",
}
RATE_LIMIT_STATUS = 400
TOKEN_PATH = "/oauth/v2/token"
AUTHORIZE_PATH = "/oauth/v2/auth"
#: The data centres a FakeZoho can play, with Zoho's codes (the callback's ``location``).
DATA_CENTRE_NAMES: Mapping[str, str] = {
    "us": "United States",
    "eu": "Europe",
    "in": "India",
    "au": "Australia",
    "jp": "Japan",
    "cn": "China",
    "ca": "Canada",
    "sa": "Saudi Arabia",
    "uk": "United Kingdom",
}
JSON_CONTENT_TYPE = "application/json;charset=UTF-8"
_CRM_ENDPOINTS = ("users", "org")

UserKey = tuple[str, str]  # (email, zgid)


@dataclass
class _User:
    email: str
    zgid: str
    user_id: str
    org_id: str


@dataclass
class _RefreshToken:
    user: UserKey
    data_centre: str
    revoked: bool = False


@dataclass
class _AccessToken:
    refresh_token: str
    expires_at: float  # time.monotonic()


@dataclass
class _Answer:
    """One reply: ``body`` None means drop the connection."""

    status: int
    body: Mapping[str, Any] | None
    delay: float = 0.0
    drip: float = 0.0  # seconds between bytes of the answer
    page: str | None = None  # an HTML answer (the consent page)
    location: str | None = None  # a redirect


@dataclass
class _Injection:
    remaining: int
    answer: _Answer


def _crm_error(code: str, message: str) -> dict[str, Any]:
    return {"code": code, "details": {}, "message": message, "status": "error"}


class FakeZoho:
    """A fake Zoho accounts + CRM server on real HTTP (see the module docstring).

    Use as a context manager, or call :meth:`start` / :meth:`stop`. Tokens look like
    Zoho's (``1000.<hex>.<hex>``) and are never reused. Access tokens expire after
    :attr:`access_token_lifetime` seconds (read when a token is issued).
    """

    def __init__(
        self,
        *,
        access_token_lifetime: int = 3600,
        host: str = "127.0.0.1",
        port: int = 0,
        data_centres: Sequence[str] = ("us",),
    ) -> None:
        unknown = [code for code in data_centres if code not in DATA_CENTRE_NAMES]
        if unknown or not data_centres:
            raise ValueError(f"data_centres must be some of {tuple(DATA_CENTRE_NAMES)}, not {unknown}")
        self.access_token_lifetime = access_token_lifetime
        self._default_lifetime = access_token_lifetime
        #: Seconds a grant code can be exchanged (Zoho's last about three minutes).
        self.grant_token_lifetime = 180.0
        self._host, self._port = host, port
        self.data_centres = tuple(data_centres)
        self._servers: dict[str, _Server] = {}
        self._urls: dict[str, str] = {}
        self._threads: list[threading.Thread] = []
        self._lock = threading.Lock()
        self._issued: set[str] = set()  # survives reset(): tokens are never reused
        self._reset_state()

    # ----------------------------------------------------------------- lifecycle
    def start(self) -> FakeZoho:
        """Start serving (idempotent); returns self. The first data centre listens on
        ``port``, the others on free ports."""
        if not self._servers:
            for position, code in enumerate(self.data_centres):
                server = _Server((self._host, self._port if position == 0 else 0), _Handler)
                server.fake, server.data_centre = self, code
                host, port = server.server_address[:2]
                self._servers[code], self._urls[code] = server, f"http://{host!s}:{port}"
                thread = threading.Thread(target=server.serve_forever, name=f"FakeZoho-{code}", daemon=True)
                thread.start()
                self._threads.append(thread)
        return self

    def stop(self) -> None:
        """Stop serving and free the ports (idempotent)."""
        servers, self._servers = self._servers, {}
        for server in servers.values():
            server.shutdown()
            server.server_close()
        for thread in self._threads:
            thread.join(timeout=5)
        self._threads = []

    def __enter__(self) -> FakeZoho:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    @property
    def base_url(self) -> str:
        """``http://127.0.0.1:PORT`` of the first data centre: its CRM API domain and
        accounts server, and the consent page's host."""
        return self.url_of(self.data_centres[0])

    def url_of(self, data_centre: str) -> str:
        """``http://127.0.0.1:PORT`` of ``data_centre``: its API domain and accounts server."""
        if not self._servers:
            raise RuntimeError("FakeZoho is not started")
        if data_centre not in self._urls:
            raise ValueError(f"this FakeZoho plays {self.data_centres}, not {data_centre!r}")
        return self._urls[data_centre]

    @property
    def token_url(self) -> str:
        """The first data centre's token endpoint (the SDK's ``accounts_url``)."""
        return self.base_url + TOKEN_PATH

    @property
    def authorization_url(self) -> str:
        """The consent page (``ZOHO_TOKENS_AUTHORIZATION_URL``)."""
        return self.base_url + AUTHORIZE_PATH

    def accounts_servers(self) -> dict[str, str]:
        """Every data centre's API domain and accounts server (one URL plays both), as
        ``ZOHO_TOKENS_ACCOUNTS_SERVERS`` wants them."""
        return {self.url_of(code): self.url_of(code) for code in self.data_centres}

    def environment(self, data_centre: str | None = None) -> Any:
        """A ``DataCenter.Environment`` pointing the SDK at a data centre (the first by default)."""
        from zohocrmsdk.src.com.zoho.crm.api.dc.data_center import DataCenter

        url = self.url_of(data_centre or self.data_centres[0])
        return DataCenter.Environment(url, url + TOKEN_PATH, url)

    # -------------------------------------------------------------- test setup
    def reset(self) -> None:
        """Forget users, tokens, counts, injected errors and delays; restore the
        constructor's lifetime. The server keeps running."""
        with self._lock:
            self._reset_state()

    def _reset_state(self) -> None:
        self.access_token_lifetime = self._default_lifetime
        self._users: dict[UserKey, _User] = {}
        self._codes: dict[str, tuple[UserKey, str, float]] = {}
        self._refresh: dict[str, _RefreshToken] = {}
        self._access: dict[str, _AccessToken] = {}
        self._counts: Counter[str] = Counter()
        self._counts_by_data_centre: Counter[tuple[str, str]] = Counter()
        self._refresh_counts: Counter[str] = Counter()
        self._received: dict[str, list[dict[str, str]]] = {}
        self._revoked: list[str] = []
        self._consents: list[dict[str, str]] = []
        self._injected: dict[str, deque[_Injection]] = {}
        self._delays: dict[str | None, float] = {}
        self._drips: dict[str | None, float] = {}

    def issue_grant_token(
        self, email: str = "alice@example.com", zgid: str = "10001", *, data_centre: str | None = None
    ) -> str:
        """A new one-time grant code for the user ``email`` in org ``zgid``, good only at
        ``data_centre`` (the first by default)."""
        code_dc = self._data_centre(data_centre)
        with self._lock:
            code = self._new_token()
            self._codes[code] = (
                self._user(email, zgid),
                code_dc,
                time.monotonic() + self.grant_token_lifetime,
            )
            return code

    def issue_refresh_token(
        self, email: str = "alice@example.com", zgid: str = "10001", *, data_centre: str | None = None
    ) -> str:
        """Register a refresh token directly (no HTTP call, nothing counted)."""
        token_dc = self._data_centre(data_centre)
        with self._lock:
            token = self._new_token()
            self._refresh[token] = _RefreshToken(self._user(email, zgid), token_dc)
            return token

    def add_user(self, email: str, zgid: str) -> None:
        """Make ``email`` a user of org ``zgid`` (listed by the ``users`` endpoint)."""
        with self._lock:
            self._user(email, zgid)

    def inject_error(
        self,
        endpoint: str,
        error: str = "invalid_code",
        *,
        times: int = 1,
        status: int = 200,
        body: Mapping[str, Any] | None = None,
    ) -> None:
        """Make the next ``times`` calls to ``endpoint`` fail (they are still counted,
        and change no state: a grant code is not consumed).

        Accounts endpoints answer ``{"error": error}``, CRM endpoints
        ``{"code": error, "details": {}, "message": error, "status": "error"}``,
        with HTTP ``status`` (Zoho accounts answer errors with 200); ``body`` replaces
        the JSON. ``error=DROP`` closes the connection without an answer.
        Injections queue up in order.
        """
        self._check_endpoint(endpoint)
        if times < 1:
            raise ValueError("times must be >= 1")
        answer: Mapping[str, Any] | None
        if error == DROP:
            answer = None
        elif body is not None:
            answer = dict(body)
        elif endpoint in _CRM_ENDPOINTS:
            answer = _crm_error(error, error)
        else:
            answer = {"error": error}
        with self._lock:
            queue = self._injected.setdefault(endpoint, deque())
            queue.append(_Injection(times, _Answer(status, answer)))

    def inject_rate_limit(self, endpoint: str = "refresh_token", *, times: int = 1) -> None:
        """Answer Zoho's "too many requests" (HTTP 400) to the next ``times`` calls."""
        self.inject_error(endpoint, times=times, status=RATE_LIMIT_STATUS, body=RATE_LIMIT_BODY)

    def set_delay(self, seconds: float, endpoint: str | None = None) -> None:
        """Wait ``seconds`` before each answer, for ``endpoint`` or (None) for all
        endpoints without their own delay. State changes happen before the wait."""
        if endpoint is not None:
            self._check_endpoint(endpoint)
        with self._lock:
            self._delays[endpoint] = seconds

    def set_drip(self, seconds: float, endpoint: str | None = None) -> None:
        """Send each answer one byte every ``seconds`` (status line and headers included),
        for ``endpoint`` or (None) all endpoints without their own drip: a server that never
        stalls long enough for a per-read timeout, yet takes long to answer."""
        if endpoint is not None:
            self._check_endpoint(endpoint)
        with self._lock:
            self._drips[endpoint] = seconds

    def expire_grant_tokens(self, *codes: str) -> None:
        """Make the given grant codes too old to exchange (all of them if none are given)."""
        with self._lock:
            for code in codes or tuple(self._codes):
                if code in self._codes:
                    user, data_centre, _ = self._codes[code]
                    self._codes[code] = (user, data_centre, 0.0)

    def expire_access_tokens(self, *access_tokens: str) -> None:
        """Expire the given access tokens now (all of them if none are given)."""
        with self._lock:
            for token in access_tokens or tuple(self._access):
                if token in self._access:
                    self._access[token].expires_at = 0.0

    # ---------------------------------------------------------------- inspection
    def count(self, endpoint: str, data_centre: str | None = None) -> int:
        """HTTP calls received by ``endpoint`` (failed and injected ones included), at every
        data centre or at ``data_centre``."""
        self._check_endpoint(endpoint)
        with self._lock:
            if data_centre is None:
                return self._counts[endpoint]
            return self._counts_by_data_centre[endpoint, data_centre]

    def refresh_count(self, refresh_token: str) -> int:
        """Refresh calls made with ``refresh_token`` (failed ones included)."""
        with self._lock:
            return self._refresh_counts[refresh_token]

    def received(self, endpoint: str) -> list[dict[str, str]]:
        """Parameters (query + form, plus any ``Authorization`` header) of each call."""
        self._check_endpoint(endpoint)
        with self._lock:
            return [dict(call) for call in self._received.get(endpoint, [])]

    @property
    def revoked_tokens(self) -> tuple[str, ...]:
        """Every token received at ``/revoke``, in order (unknown ones included)."""
        with self._lock:
            return tuple(self._revoked)

    @property
    def consents(self) -> list[dict[str, str]]:
        """Every answer given on the consent page: the query the page was opened with
        (``client_id``, ``scope``, ``redirect_uri``, ``state``...) plus ``decision``,
        ``email``, ``zgid`` and ``data_centre``."""
        with self._lock:
            return [dict(consent) for consent in self._consents]

    def is_access_token_valid(self, access_token: str) -> bool:
        """True if issued here, unexpired, and its refresh token is not revoked."""
        with self._lock:
            return self._valid_user(access_token) is not None

    # ------------------------------------------------------------------ internals
    @staticmethod
    def _check_endpoint(endpoint: str) -> None:
        if endpoint not in ENDPOINTS:
            raise ValueError(f"unknown endpoint {endpoint!r}; expected one of {ENDPOINTS}")

    def _new_token(self) -> str:
        while True:
            token = f"1000.{secrets.token_hex(16)}.{secrets.token_hex(16)}"
            if token not in self._issued:
                self._issued.add(token)
                return token

    def _data_centre(self, data_centre: str | None) -> str:
        code = data_centre or self.data_centres[0]
        if code not in self.data_centres:
            raise ValueError(f"this FakeZoho plays {self.data_centres}, not {code!r}")
        return code

    def _user(self, email: str, zgid: str) -> UserKey:
        key = (email, zgid)
        if key not in self._users:
            n = len(self._users) + 1
            self._users[key] = _User(email, zgid, str(4150868000000000000 + n), str(4150868000000100000 + n))
        return key

    def _valid_user(self, access_token: str, data_centre: str | None = None) -> _User | None:
        entry = self._access.get(access_token)
        if entry is None or time.monotonic() >= entry.expires_at:
            return None
        refresh = self._refresh[entry.refresh_token]
        if refresh.revoked or (data_centre is not None and refresh.data_centre != data_centre):
            return None
        return self._users[refresh.user]

    def _grant(self, refresh_token: str) -> dict[str, Any]:
        access = self._new_token()
        lifetime = self.access_token_lifetime
        self._access[access] = _AccessToken(refresh_token, time.monotonic() + lifetime)
        # No "expires_in_sec": with it the SDK reads "expires_in" as milliseconds.
        return {
            "access_token": access,
            "expires_in": int(lifetime),
            "api_domain": self._urls[self._refresh[refresh_token].data_centre],
            "token_type": "Bearer",
        }

    def _dispatch(
        self,
        method: str,
        path: str,
        params: Mapping[str, str],
        authorization: str | None,
        data_centre: str | None = None,
    ) -> _Answer:
        """Count one request and compute its answer (called by the HTTP handler)."""
        data_centre = data_centre or self.data_centres[0]
        if path == AUTHORIZE_PATH and data_centre == self.data_centres[0]:
            return self._consent_page(method, params)
        if method == "POST" and path == TOKEN_PATH:
            endpoint = params.get("grant_type", "")
            if endpoint not in ("authorization_code", "refresh_token"):
                return _Answer(200, {"error": "unsupported_grant_type"})
        elif method == "POST" and path == TOKEN_PATH + "/revoke":
            endpoint = "revoke"
        elif method == "GET" and path.startswith("/crm/v") and path.endswith("/users"):
            endpoint = "users"
        elif method == "GET" and path.startswith("/crm/v") and path.endswith("/org"):
            endpoint = "org"
        else:
            msg = "Please check if the URL trying to access is a correct one"
            return _Answer(404, _crm_error("INVALID_URL_PATTERN", msg))
        with self._lock:
            self._counts[endpoint] += 1
            self._counts_by_data_centre[endpoint, data_centre] += 1
            call = dict(params)
            if authorization is not None:
                call["Authorization"] = authorization
            self._received.setdefault(endpoint, []).append(call)
            if endpoint == "refresh_token":
                self._refresh_counts[params.get("refresh_token", "")] += 1
            if endpoint == "revoke":
                self._revoked.append(params.get("token", ""))
            answer = self._injected_answer(endpoint) or self._answer(
                endpoint, params, authorization, data_centre
            )
            answer.delay = self._delays.get(endpoint, self._delays.get(None, 0.0))
            answer.drip = self._drips.get(endpoint, self._drips.get(None, 0.0))
            return answer

    def _injected_answer(self, endpoint: str) -> _Answer | None:
        queue = self._injected.get(endpoint)
        if not queue:
            return None
        injection = queue[0]
        injection.remaining -= 1
        if injection.remaining <= 0:
            queue.popleft()
        return _Answer(injection.answer.status, injection.answer.body)

    def _answer(
        self, endpoint: str, params: Mapping[str, str], authorization: str | None, data_centre: str
    ) -> _Answer:
        if endpoint == "authorization_code":
            code = params.get("code", "")
            issued = self._codes.get(code)
            # A code is good once, for a few minutes, and only at the data centre that issued it.
            if issued is None or issued[1] != data_centre or time.monotonic() >= issued[2]:
                return _Answer(200, {"error": "invalid_code"})
            del self._codes[code]
            refresh_token = self._new_token()
            self._refresh[refresh_token] = _RefreshToken(issued[0], data_centre)
            return _Answer(200, {"refresh_token": refresh_token, **self._grant(refresh_token)})
        if endpoint == "refresh_token":
            refresh_token = params.get("refresh_token", "")
            entry = self._refresh.get(refresh_token)
            if entry is None or entry.revoked or entry.data_centre != data_centre:
                return _Answer(200, {"error": "invalid_code"})
            return _Answer(200, self._grant(refresh_token))
        if endpoint == "revoke":
            entry = self._refresh.get(params.get("token", ""))
            if entry is None or entry.revoked or entry.data_centre != data_centre:
                return _Answer(200, {"status": "failure", "error": "invalid_token"})
            entry.revoked = True
            return _Answer(200, {"status": "success"})
        return self._crm_answer(endpoint, params, authorization, data_centre)

    def _crm_answer(
        self, endpoint: str, params: Mapping[str, str], authorization: str | None, data_centre: str
    ) -> _Answer:
        prefix = "Zoho-oauthtoken "
        if authorization is None or not authorization.startswith(prefix):
            return _Answer(401, _crm_error("AUTHENTICATION_FAILURE", "Authentication failed"))
        user = self._valid_user(authorization[len(prefix) :], data_centre)
        if user is None:
            return _Answer(401, _crm_error("INVALID_TOKEN", "invalid oauth token"))
        if endpoint == "users":
            if params.get("type") == "CurrentUser":
                members = [user]
            else:
                members = [member for member in self._users.values() if member.zgid == user.zgid]
            users = [
                {"id": member.user_id, "email": member.email, "full_name": _full_name(member.email)}
                for member in members
            ]
            info = {"per_page": 200, "count": len(users), "page": 1, "more_records": False}
            return _Answer(200, {"users": users, "info": info})
        org = {"id": user.org_id, "zgid": user.zgid, "company_name": f"Org {user.zgid}"}
        return _Answer(200, {"org": [org]})

    # ------------------------------------------------------------ the consent page
    def _consent_page(self, method: str, params: Mapping[str, str]) -> _Answer:
        redirect_uri = params.get("redirect_uri", "")
        if urlsplit(redirect_uri).scheme not in ("http", "https"):
            return _Answer(400, None, page=_page("Invalid request", "<p>redirect_uri is missing.</p>"))
        if method == "GET":
            return _Answer(200, None, page=self._consent_form(params))
        decision = params.get("decision", "")
        data_centre = params.get("data_centre") or self.data_centres[0]
        if data_centre not in self._urls:
            data_centre = self.data_centres[0]
        email, zgid = params.get("email") or "alice@example.com", params.get("zgid") or "10001"
        back: dict[str, str] = {}
        if decision == "approve":
            back["code"] = self.issue_grant_token(email, zgid, data_centre=data_centre)
        else:
            back["error"] = "access_denied"
        back["location"] = data_centre
        back["accounts-server"] = self._urls[data_centre]
        if params.get("state"):
            back["state"] = params["state"]
        with self._lock:
            self._consents.append({**params, "decision": decision or "deny", "data_centre": data_centre})
        separator = "&" if urlsplit(redirect_uri).query else "?"
        return _Answer(302, None, location=f"{redirect_uri}{separator}{urlencode(back)}")

    def _consent_form(self, params: Mapping[str, str]) -> str:
        hidden = "".join(
            f'<input type="hidden" name="{html.escape(name)}" value="{html.escape(value)}">'
            for name, value in params.items()
            if name
            in ("client_id", "redirect_uri", "scope", "state", "response_type", "access_type", "prompt")
        )
        options = "".join(
            f'<option value="{code}">{html.escape(DATA_CENTRE_NAMES[code])} ({code})</option>'
            for code in self.data_centres
        )
        scopes = ", ".join(html.escape(scope) for scope in params.get("scope", "").split(",") if scope)
        body = f"""
<p><strong>{html.escape(params.get("client_id", "An application"))}</strong> asks to access
your Zoho CRM: {scopes or "no scope named"}.</p>
<form method="post" action="{AUTHORIZE_PATH}">{hidden}
<p><label for="email">Zoho user</label> <input id="email" name="email" value="alice@example.com"></p>
<p><label for="zgid">Organisation (zgid)</label> <input id="zgid" name="zgid" value="10001"></p>
<p><label for="data_centre">Data centre</label>
<select id="data_centre" name="data_centre">{options}</select></p>
<p><button type="submit" name="decision" value="approve">Approve</button>
<button type="submit" name="decision" value="deny">Deny</button></p>
</form>"""
        return _page("Fake Zoho: allow access?", body)


def _full_name(email: str) -> str:
    return email.partition("@")[0].replace(".", " ").title()


def _page(title: str, body: str) -> str:
    return (
        f'<!doctype html><html lang="en"><head><meta charset="utf-8"><title>{html.escape(title)}</title>'
        f"</head><body><h1>{html.escape(title)}</h1>{body}</body></html>"
    )


class _Server(ThreadingHTTPServer):
    """The HTTP server; knows its :class:`FakeZoho` and does not log dropped clients."""

    daemon_threads = True
    # The default backlog of 5 resets connections when many workers call at once
    # on a loaded machine; the real Zoho never refuses a connection for that.
    request_queue_size = 128
    fake: FakeZoho
    data_centre: str

    def handle_error(self, request: Any, client_address: Any) -> None:
        """Ignore clients that hung up (e.g. timed out during a delay); report the rest."""
        if not isinstance(sys.exc_info()[1], ConnectionError):
            super().handle_error(request, client_address)


class _Handler(BaseHTTPRequestHandler):
    """Parses one request, asks :meth:`FakeZoho._dispatch`, writes the answer."""

    server: _Server

    server_version = "FakeZoho/1.0"

    def do_GET(self) -> None:
        self._handle()

    def do_POST(self) -> None:
        self._handle()

    def _handle(self) -> None:
        url = urlsplit(self.path)
        params = dict(parse_qsl(url.query))
        length = int(self.headers.get("Content-Length") or 0)
        if length:
            params.update(parse_qsl(self.rfile.read(length).decode("utf-8")))
        answer = self.server.fake._dispatch(
            self.command, url.path, params, self.headers.get("Authorization"), self.server.data_centre
        )
        if answer.delay > 0:
            time.sleep(answer.delay)
        if answer.location is not None or answer.page is not None:
            self._send_page(answer)
            return
        if answer.body is None:  # DROP: close without answering
            self.close_connection = True
            return
        data = json.dumps(answer.body).encode("utf-8")
        if answer.drip > 0:
            self._drip(answer, data)
            return
        self.send_response(answer.status)
        self.send_header("Content-Type", JSON_CONTENT_TYPE)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def _send_page(self, answer: _Answer) -> None:
        data = (answer.page or "").encode("utf-8")
        self.send_response(answer.status)
        if answer.location is not None:
            self.send_header("Location", answer.location)
        self.send_header("Content-Type", "text/html; charset=utf-8")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def _drip(self, answer: _Answer, data: bytes) -> None:
        head = (
            f"HTTP/1.1 {answer.status} {self.responses.get(answer.status, ('',))[0]}\r\n"
            f"Content-Type: {JSON_CONTENT_TYPE}\r\nContent-Length: {len(data)}\r\n"
            "Connection: close\r\n\r\n"
        ).encode("ascii")
        self.close_connection = True
        whole = head + data
        for position in range(len(whole)):
            self.wfile.write(whole[position : position + 1])
            self.wfile.flush()
            time.sleep(answer.drip)

    def log_message(self, format: str, *args: Any) -> None:
        """Stay quiet: no request log on stderr."""
