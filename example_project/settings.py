"""Settings of the example project: everything secret comes from the environment or ``.env``.

``make demo`` writes a ``.env`` with freshly generated keys on first run; ``.env.example``
lists every variable. Without ``ZOHO_CLIENT_ID`` the site talks to a fake Zoho that
``zoho_demo`` embeds; with a real client (and its redirect URL) it talks to Zoho.
"""

from pathlib import Path

import environ
from django.core.exceptions import ImproperlyConfigured

BASE_DIR = Path(__file__).resolve().parent.parent
env = environ.Env()
environ.Env.read_env(BASE_DIR / ".env")

try:
    SECRET_KEY = env("DJANGO_SECRET_KEY")
except ImproperlyConfigured:
    raise ImproperlyConfigured(
        "Set DJANGO_SECRET_KEY, or write a .env with fresh keys for this example project: "
        "`make .env` (it runs `python example_project/make_env.py > .env`)."
    ) from None
DEBUG = env.bool("DJANGO_DEBUG", default=True)
ALLOWED_HOSTS = env.list("DJANGO_ALLOWED_HOSTS", default=["127.0.0.1", "localhost"])

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "zoho_tokens",
    "example_project",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
]

ROOT_URLCONF = "example_project.urls"
WSGI_APPLICATION = "example_project.wsgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        # The project's templates come first: they override the app's zoho_tokens/base.html.
        "DIRS": [BASE_DIR / "example_project" / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ],
        },
    },
]

DATABASES = {
    "default": env.db("DATABASE_URL", default=f"sqlite:///{BASE_DIR / 'example_project' / 'db.sqlite3'}")
}
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    # Concurrent token writers wait for SQLite's write lock instead of failing (zoho_tokens.W002).
    DATABASES["default"].setdefault("OPTIONS", {}).update({"transaction_mode": "IMMEDIATE", "timeout": 20})
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

USE_TZ = True
TIME_ZONE = "UTC"
LANGUAGE_CODE = "en-us"
USE_I18N = True
STATIC_URL = "static/"

# The two key lists of django-zoho-tokens: newest key first, older keys kept to read old rows.
ZOHO_TOKENS_ENCRYPTION_KEYS = env.list("ZOHO_TOKENS_ENCRYPTION_KEYS", default=[])
ZOHO_TOKENS_HMAC_KEYS = env.list("ZOHO_TOKENS_HMAC_KEYS", default=[])

LOGIN_URL = "/accounts/login/"
LOGIN_REDIRECT_URL = "/"
LOGOUT_REDIRECT_URL = "/"

# The OAuth client. Without ZOHO_CLIENT_ID the embedded fake Zoho plays Zoho (it accepts
# any client) and zoho_demo points the connect views at it.
ZOHO_FAKE = not env("ZOHO_CLIENT_ID", default="")
ZOHO_TOKENS_CLIENT_ID = env("ZOHO_CLIENT_ID", default="") or "1000.DEMOCLIENT"
ZOHO_TOKENS_CLIENT_SECRET = env("ZOHO_CLIENT_SECRET", default="") or "demo-client-secret"
# The callback URL registered for the client at Zoho; unset, it is built from the request.
ZOHO_TOKENS_REDIRECT_URL = env("ZOHO_REDIRECT_URL", default="") or None
ZOHO_TOKENS_SCOPES = env.list(
    "ZOHO_SCOPES", default=["ZohoCRM.modules.ALL", "ZohoCRM.users.READ", "ZohoCRM.org.READ"]
)
# Where consent starts: accounts.zoho.com, or accounts.zoho.com.cn for China.
ZOHO_TOKENS_AUTHORIZATION_URL = env(
    "ZOHO_AUTHORIZATION_URL", default="https://accounts.zoho.com/oauth/v2/auth"
)
ZOHO_TOKENS_CONNECTED_URL = "/"
# A user deactivated or deleted takes their Zoho tokens along: revoked at Zoho and here.
ZOHO_TOKENS_REVOKE_WITH_OWNER = True

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "handlers": {"console": {"class": "logging.StreamHandler"}},
    "loggers": {"zoho_tokens": {"handlers": ["console"], "level": "INFO"}},
}
