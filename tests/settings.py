"""Settings for the app's own test suite.

``ZOHO_TOKENS_TEST_DB`` picks the database: sqlite (default), postgresql or mysql
(MariaDB). The servers' addresses follow the development machines' defaults and
can be overridden with the usual PG*/MYSQL_* style variables below.
"""

import os
import tempfile
from typing import Any

SECRET_KEY = "tests-only-secret-key-not-for-production"
DEBUG = False
USE_TZ = True
ROOT_URLCONF = "tests.urls"
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "zoho_tokens",
    # Its pages (home, sign-in) serve the browser test of the whole connect flow.
    "example_project",
]
STATIC_URL = "/static/"
# As startproject writes it: a CSRF hole or a leak in a response shows up in the suite.
MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
]
TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ]
        },
    }
]

# The OAuth client of the connect views (the fake Zoho accepts any).
ZOHO_TOKENS_CLIENT_ID = "1000.TESTCLIENT"
ZOHO_TOKENS_CLIENT_SECRET = "test-client-secret"

# Test keys, generated once for this suite; never use them anywhere else.
ZOHO_TOKENS_ENCRYPTION_KEYS = ["O6G1vcAygNBU63ArRpmZrL7YpGpTSva0lukwBuw6hQo="]
ZOHO_TOKENS_HMAC_KEYS = ["nMCKDAuUzEBMqhEt81oAmaQFJ7oAm7MisJut_ZdufuAG6Mep4n1Voyyq4nU4P4CT"]

DATABASES: dict[str, dict[str, Any]]
DB = os.environ.get("ZOHO_TOKENS_TEST_DB", "sqlite")
# Runs in parallel (tox envs) each need their own server-side test database.
TEST_DB_NAME = os.environ.get("ZOHO_TOKENS_TEST_DB_NAME", "test_zoho_tokens")
if DB == "postgresql":
    DATABASES = {
        "default": {
            "ENGINE": "django.db.backends.postgresql",
            "NAME": os.environ.get("PGDATABASE", "test"),
            "USER": os.environ.get("PGUSER", "postgres"),
            "PASSWORD": os.environ.get("PGPASSWORD", ""),
            "HOST": os.environ.get("PGHOST", "127.0.0.1"),
            "PORT": os.environ.get("PGPORT", "5432"),
            # As the README recommends: lookups run as prepared statements.
            "OPTIONS": {"prepare_threshold": 5},
            "TEST": {"NAME": TEST_DB_NAME},
        }
    }
elif DB == "mysql":
    DATABASES = {
        "default": {
            "ENGINE": "django.db.backends.mysql",
            "NAME": os.environ.get("MYSQL_DATABASE", "test"),
            "USER": os.environ.get("MYSQL_USER", "root"),
            "PASSWORD": os.environ.get("MYSQL_PASSWORD", ""),
            "HOST": os.environ.get("MYSQL_HOST", "127.0.0.1"),
            "PORT": os.environ.get("MYSQL_PORT", "3306"),
            "OPTIONS": {"charset": "utf8mb4"},
            "TEST": {"NAME": TEST_DB_NAME, "CHARSET": "utf8mb4", "COLLATION": "utf8mb4_unicode_ci"},
        }
    }
elif DB == "sqlite":
    # A file, not :memory:, so that worker processes in the concurrency tests
    # share the test database.
    _sqlite_dir = os.environ.get("ZOHO_TOKENS_SQLITE_DIR", tempfile.gettempdir())
    DATABASES = {
        "default": {
            "ENGINE": "django.db.backends.sqlite3",
            "NAME": os.path.join(_sqlite_dir, "zoho_tokens_tests.sqlite3"),
            # Every transaction takes the write lock at BEGIN (zoho_tokens.W002).
            "OPTIONS": {"timeout": 20, "transaction_mode": "IMMEDIATE"},
            "TEST": {"NAME": os.path.join(_sqlite_dir, f"zoho_tokens_test_{os.getpid()}.sqlite3")},
        }
    }
else:
    raise RuntimeError(f"ZOHO_TOKENS_TEST_DB must be sqlite, postgresql or mysql, not {DB!r}")

# Tests create users; the fast hasher keeps that from dominating the run.
PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
