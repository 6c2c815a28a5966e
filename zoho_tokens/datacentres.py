"""Zoho's data centres: which accounts server issues and refreshes the tokens of an API domain.

A token belongs to the data centre of its API domain (Zoho names it in every token
answer, and the SDK stores it with the token). Its refresh token is only good at that
data centre's accounts server, so a refresh or a revocation must go there, and never to
another. The SDK knows eight data centres; Zoho's UK one is the ninth.

Other API domains (a test server, a proxy) are mapped by ``ZOHO_TOKENS_ACCOUNTS_SERVERS``.
A domain mapped nowhere has no accounts server: the store then neither refreshes nor
revokes its tokens, and ``zoho_tokens_status`` and system check ``zoho_tokens.W003``
report them. There is deliberately no fallback to the environment the SDK was
initialised with in the current thread, which belongs to whichever user that thread
served last.
"""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import urlsplit

from .conf import app_settings

TOKEN_PATH = "/oauth/v2/token"
# Every data centre serves the same three API hosts, on its own domain.
API_HOST_PREFIXES = ("www", "sandbox", "developer")


@dataclass(frozen=True)
class DataCentre:
    """One of Zoho's data centres: its code (the SDK's ``location``), accounts server and API domains."""

    code: str
    name: str
    accounts_server: str  # "https://accounts.zoho.eu": scheme and host, no slash
    api_suffix: str  # "zohoapis.eu"

    @property
    def api_domains(self) -> tuple[str, ...]:
        return tuple(f"https://{prefix}.{self.api_suffix}" for prefix in API_HOST_PREFIXES)

    @property
    def token_endpoint(self) -> str:
        return self.accounts_server + TOKEN_PATH


DATA_CENTRES: tuple[DataCentre, ...] = (
    DataCentre("us", "United States", "https://accounts.zoho.com", "zohoapis.com"),
    DataCentre("eu", "Europe", "https://accounts.zoho.eu", "zohoapis.eu"),
    DataCentre("in", "India", "https://accounts.zoho.in", "zohoapis.in"),
    DataCentre("au", "Australia", "https://accounts.zoho.com.au", "zohoapis.com.au"),
    DataCentre("jp", "Japan", "https://accounts.zoho.jp", "zohoapis.jp"),
    DataCentre("cn", "China", "https://accounts.zoho.com.cn", "zohoapis.com.cn"),
    DataCentre("ca", "Canada", "https://accounts.zohocloud.ca", "zohoapis.ca"),
    DataCentre("sa", "Saudi Arabia", "https://accounts.zoho.sa", "zohoapis.sa"),
    DataCentre("uk", "United Kingdom", "https://accounts.zoho.uk", "zohoapis.uk"),
)

_BY_API_DOMAIN = {domain: centre for centre in DATA_CENTRES for domain in centre.api_domains}
_BY_ACCOUNTS_SERVER = {centre.accounts_server: centre for centre in DATA_CENTRES}


def origin(url: str | None) -> str | None:
    """``"scheme://host[:port]"`` of ``url``, lower case, without path or slash; ``None`` if it has none."""
    if not url:
        return None
    try:
        parts = urlsplit(url.strip())
    except ValueError:
        return None
    if not parts.scheme or not parts.netloc:
        return None
    return f"{parts.scheme}://{parts.netloc}".lower()


def data_centre_for_api_domain(api_domain: str | None) -> DataCentre | None:
    """Zoho's data centre that serves ``api_domain`` (``"https://www.zohoapis.eu"``), if any."""
    domain = origin(api_domain)
    return _BY_API_DOMAIN.get(domain) if domain else None


def data_centre_for_accounts_server(url: str | None) -> DataCentre | None:
    """Zoho's data centre whose accounts server is ``url`` (``"https://accounts.zoho.eu"``,
    with or without a path), if any. Configured servers are not data centres: see
    :func:`trusted_accounts_servers`."""
    server = origin(url)
    return _BY_ACCOUNTS_SERVER.get(server) if server else None


def configured_accounts_servers() -> dict[str, str]:
    """``ZOHO_TOKENS_ACCOUNTS_SERVERS``, keys and values reduced to their origins."""
    mapping: dict[str, str] = {}
    for api_domain, server in dict(app_settings.ACCOUNTS_SERVERS).items():
        domain, accounts = origin(api_domain), origin(server)
        if domain and accounts:
            mapping[domain] = accounts
    return mapping


def accounts_server_for(api_domain: str | None) -> str | None:
    """The accounts server for tokens of ``api_domain``: ``ZOHO_TOKENS_ACCOUNTS_SERVERS``
    first (so a domain of Zoho's can be routed elsewhere too), then Zoho's data centres."""
    domain = origin(api_domain)
    if domain is None:
        return None
    configured = configured_accounts_servers().get(domain)
    if configured is not None:
        return configured
    centre = _BY_API_DOMAIN.get(domain)
    return centre.accounts_server if centre else None


def token_endpoint_for(api_domain: str | None) -> str | None:
    """Zoho's token endpoint for tokens of ``api_domain``, or ``None`` when none is known.

    The accounts server's, else ``ZOHO_TOKENS_TOKEN_URL`` (an explicit endpoint for
    every other domain, and for tokens stored without one).
    """
    server = accounts_server_for(api_domain)
    if server is not None:
        return server + TOKEN_PATH
    return app_settings.TOKEN_URL or None


def trusted_accounts_servers() -> list[str]:
    """Every accounts server a token may come from: Zoho's, then the configured ones."""
    servers = [centre.accounts_server for centre in DATA_CENTRES]
    servers += [server for server in configured_accounts_servers().values() if server not in servers]
    return servers
