"""A fake Zoho (accounts server + the CRM endpoints the SDK calls) for tests.

:class:`FakeZoho` serves real HTTP on 127.0.0.1 from a daemon thread, so the real
``zohocrmsdk`` (which uses ``requests``) can be pointed at it with
:meth:`FakeZoho.environment`. All state sits behind one lock: the SDK may call it from
many threads, and from child processes (which must only talk HTTP to it, never call
its methods). Only the standard library is used; the SDK is imported lazily by
:meth:`FakeZoho.environment`.
"""

from __future__ import annotations

import json
import secrets
import sys
import threading
import time
from collections import Counter, deque
from collections.abc import Mapping
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any
from urllib.parse import parse_qsl, urlsplit

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
    ) -> None:
        self.access_token_lifetime = access_token_lifetime
        self._default_lifetime = access_token_lifetime
        self._address = (host, port)
        self._server: _Server | None = None
        self._base_url: str | None = None
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()
        self._issued: set[str] = set()  # survives reset(): tokens are never reused
        self._reset_state()

    # ----------------------------------------------------------------- lifecycle
    def start(self) -> FakeZoho:
        """Start serving (idempotent); returns self."""
        if self._server is None:
            server = _Server(self._address, _Handler)
            server.fake = self
            host, port = server.server_address[:2]
            self._base_url = f"http://{host!s}:{port}"
            self._server = server
            self._thread = threading.Thread(target=server.serve_forever, name="FakeZoho", daemon=True)
            self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving and free the port (idempotent)."""
        server, self._server = self._server, None
        if server is not None:
            server.shutdown()
            server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None

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
        """``http://127.0.0.1:PORT``: the CRM API domain and the accounts host."""
        if self._base_url is None or self._server is None:
            raise RuntimeError("FakeZoho is not started")
        return self._base_url

    @property
    def token_url(self) -> str:
        """The full token endpoint (the SDK's ``accounts_url``)."""
        return self.base_url + TOKEN_PATH

    def environment(self) -> Any:
        """A ``DataCenter.Environment`` pointing the SDK at this server."""
        from zohocrmsdk.src.com.zoho.crm.api.dc.data_center import DataCenter

        return DataCenter.Environment(self.base_url, self.token_url, self.base_url)

    # -------------------------------------------------------------- test setup
    def reset(self) -> None:
        """Forget users, tokens, counts, injected errors and delays; restore the
        constructor's lifetime. The server keeps running."""
        with self._lock:
            self._reset_state()

    def _reset_state(self) -> None:
        self.access_token_lifetime = self._default_lifetime
        self._users: dict[UserKey, _User] = {}
        self._codes: dict[str, UserKey] = {}
        self._refresh: dict[str, _RefreshToken] = {}
        self._access: dict[str, _AccessToken] = {}
        self._counts: Counter[str] = Counter()
        self._refresh_counts: Counter[str] = Counter()
        self._received: dict[str, list[dict[str, str]]] = {}
        self._revoked: list[str] = []
        self._injected: dict[str, deque[_Injection]] = {}
        self._delays: dict[str | None, float] = {}
        self._drips: dict[str | None, float] = {}

    def issue_grant_token(self, email: str = "alice@example.com", zgid: str = "10001") -> str:
        """A new one-time grant code for the user ``email`` in org ``zgid``."""
        with self._lock:
            code = self._new_token()
            self._codes[code] = self._user(email, zgid)
            return code

    def issue_refresh_token(self, email: str = "alice@example.com", zgid: str = "10001") -> str:
        """Register a refresh token directly (no HTTP call, nothing counted)."""
        with self._lock:
            token = self._new_token()
            self._refresh[token] = _RefreshToken(self._user(email, zgid))
            return token

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

    def expire_access_tokens(self, *access_tokens: str) -> None:
        """Expire the given access tokens now (all of them if none are given)."""
        with self._lock:
            for token in access_tokens or tuple(self._access):
                if token in self._access:
                    self._access[token].expires_at = 0.0

    # ---------------------------------------------------------------- inspection
    def count(self, endpoint: str) -> int:
        """HTTP calls received by ``endpoint`` (failed and injected ones included)."""
        self._check_endpoint(endpoint)
        with self._lock:
            return self._counts[endpoint]

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

    def _user(self, email: str, zgid: str) -> UserKey:
        key = (email, zgid)
        if key not in self._users:
            n = len(self._users) + 1
            self._users[key] = _User(email, zgid, str(4150868000000000000 + n), str(4150868000000100000 + n))
        return key

    def _valid_user(self, access_token: str) -> _User | None:
        entry = self._access.get(access_token)
        if entry is None or time.monotonic() >= entry.expires_at:
            return None
        refresh = self._refresh[entry.refresh_token]
        return None if refresh.revoked else self._users[refresh.user]

    def _grant(self, refresh_token: str) -> dict[str, Any]:
        access = self._new_token()
        lifetime = self.access_token_lifetime
        self._access[access] = _AccessToken(refresh_token, time.monotonic() + lifetime)
        # No "expires_in_sec": with it the SDK reads "expires_in" as milliseconds.
        return {
            "access_token": access,
            "expires_in": int(lifetime),
            "api_domain": self._base_url,
            "token_type": "Bearer",
        }

    def _dispatch(
        self, method: str, path: str, params: Mapping[str, str], authorization: str | None
    ) -> _Answer:
        """Count one request and compute its answer (called by the HTTP handler)."""
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
            call = dict(params)
            if authorization is not None:
                call["Authorization"] = authorization
            self._received.setdefault(endpoint, []).append(call)
            if endpoint == "refresh_token":
                self._refresh_counts[params.get("refresh_token", "")] += 1
            if endpoint == "revoke":
                self._revoked.append(params.get("token", ""))
            answer = self._injected_answer(endpoint) or self._answer(endpoint, params, authorization)
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

    def _answer(self, endpoint: str, params: Mapping[str, str], authorization: str | None) -> _Answer:
        if endpoint == "authorization_code":
            user = self._codes.pop(params.get("code", ""), None)
            if user is None:
                return _Answer(200, {"error": "invalid_code"})
            refresh_token = self._new_token()
            self._refresh[refresh_token] = _RefreshToken(user)
            return _Answer(200, {"refresh_token": refresh_token, **self._grant(refresh_token)})
        if endpoint == "refresh_token":
            refresh_token = params.get("refresh_token", "")
            entry = self._refresh.get(refresh_token)
            if entry is None or entry.revoked:
                return _Answer(200, {"error": "invalid_code"})
            return _Answer(200, self._grant(refresh_token))
        if endpoint == "revoke":
            entry = self._refresh.get(params.get("token", ""))
            if entry is None or entry.revoked:
                return _Answer(200, {"status": "failure", "error": "invalid_token"})
            entry.revoked = True
            return _Answer(200, {"status": "success"})
        return self._crm_answer(endpoint, authorization)

    def _crm_answer(self, endpoint: str, authorization: str | None) -> _Answer:
        prefix = "Zoho-oauthtoken "
        if authorization is None or not authorization.startswith(prefix):
            return _Answer(401, _crm_error("AUTHENTICATION_FAILURE", "Authentication failed"))
        user = self._valid_user(authorization[len(prefix) :])
        if user is None:
            return _Answer(401, _crm_error("INVALID_TOKEN", "invalid oauth token"))
        if endpoint == "users":
            users = [{"id": user.user_id, "email": user.email, "full_name": user.email}]
            info = {"per_page": 200, "count": 1, "page": 1, "more_records": False}
            return _Answer(200, {"users": users, "info": info})
        org = {"id": user.org_id, "zgid": user.zgid, "company_name": f"Org {user.zgid}"}
        return _Answer(200, {"org": [org]})


class _Server(ThreadingHTTPServer):
    """The HTTP server; knows its :class:`FakeZoho` and does not log dropped clients."""

    daemon_threads = True
    # The default backlog of 5 resets connections when many workers call at once
    # on a loaded machine; the real Zoho never refuses a connection for that.
    request_queue_size = 128
    fake: FakeZoho

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
        answer = self.server.fake._dispatch(self.command, url.path, params, self.headers.get("Authorization"))
        if answer.delay > 0:
            time.sleep(answer.delay)
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
