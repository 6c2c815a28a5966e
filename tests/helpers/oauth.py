"""The OAuth web flow driven like a browser would: the connect view, Zoho's consent page, back."""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit

import requests
from django.urls import reverse


def consent(
    client: Any,
    *,
    decision: str = "approve",
    email: str = "alice@example.com",
    zgid: str = "10001",
    data_centre: str = "us",
    next_url: str | None = None,
) -> str:
    """Follow the connect view to the (fake) consent page and answer it as a person would;
    returns where Zoho sends the browser back: the callback's path and query."""
    start = reverse("zoho_tokens:connect")
    if next_url is not None:
        start += "?" + urlencode({"next": next_url})
    response = client.get(start)
    assert response.status_code == 302, response.status_code
    consent_page = response["Location"]
    query = dict(parse_qsl(urlsplit(consent_page).query))
    answer = requests.post(
        consent_page.split("?", 1)[0],
        data={**query, "decision": decision, "email": email, "zgid": zgid, "data_centre": data_centre},
        allow_redirects=False,
        timeout=10,
    )
    assert answer.status_code == 302, answer.text
    back = urlsplit(answer.headers["Location"])
    return f"{back.path}?{back.query}"


def with_params(callback_url: str, **changes: str | None) -> str:
    """``callback_url`` with some query parameters replaced (``None`` removes one)."""
    path, _, query = callback_url.partition("?")
    params = dict(parse_qsl(query))
    for name, value in changes.items():
        name = name.replace("_", "-") if name == "accounts_server" else name
        if value is None:
            params.pop(name, None)
        else:
            params[name] = value
    return f"{path}?{urlencode(params)}"


class RecordingServer:
    """An HTTP server on 127.0.0.1 that records every request it receives and answers
    like a Zoho accounts server would to a code (so that a leak would "work")."""

    def __init__(self) -> None:
        self.requests: list[tuple[str, str, bytes]] = []
        recorder = self

        class Handler(BaseHTTPRequestHandler):
            def _record(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                recorder.requests.append((self.command, self.path, self.rfile.read(length)))
                body = json.dumps({"access_token": "1000.stolen.a", "refresh_token": "1000.stolen.r"})
                data = body.encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            do_GET = do_POST = _record

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}"

    def __enter__(self) -> RecordingServer:
        threading.Thread(target=self._server.serve_forever, daemon=True).start()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self._server.shutdown()
        self._server.server_close()
