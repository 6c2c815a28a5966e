"""The stored ciphertext format, implemented a second time from its description.

Tests open what the database holds with this, not with the app's own ``Cipher``, so
they prove the documented format (``zoho_tokens.crypto``), not just a round trip.
"""

import base64

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

TABLE = "zoho_tokens_zohotoken"


def open_ciphertext(key: str, ciphertext: str, column: str, token_id: str) -> str:
    """The plaintext of the value stored in ``column`` of the row ``token_id``;
    ``cryptography.exceptions.InvalidTag`` for a wrong key or another place."""
    raw = base64.b64decode(ciphertext, validate=True)
    header, nonce, sealed = raw[:5], raw[5:17], raw[17:]
    assert header[:1] == b"\x02", "format version 2"
    aes_key = HKDF(
        algorithm=hashes.SHA256(), length=32, salt=None, info=b"zoho_tokens AES-256-GCM v2"
    ).derive(base64.urlsafe_b64decode(key))
    place = f"{TABLE}\x00{column}\x00{token_id}".encode()
    return AESGCM(aes_key).decrypt(nonce, sealed, header + place).decode()
