"""Print a ``.env`` for the example project with freshly generated keys (never commit it)."""

import secrets

from cryptography.fernet import Fernet

print(f"DJANGO_SECRET_KEY={secrets.token_urlsafe(50)}")
print(f"ZOHO_TOKENS_ENCRYPTION_KEYS={Fernet.generate_key().decode()}")
print(f"ZOHO_TOKENS_HMAC_KEYS={secrets.token_urlsafe(48)}")
