"""Encryption and blind-index primitives; nothing here knows about Django models.

* :class:`Cipher` encrypts with the first key and decrypts with any of them, so keys
  can be rotated by prepending a new one.
* :class:`Digester` computes keyed HMAC-SHA256 digests used to look a secret up
  without storing it in clear. The first key writes; every key is tried on lookup.

Both are built once per key list and cached (see :func:`cipher_for` and
:func:`digester_for`), because building them on every call is measurable on the hot
path of every SDK call.

Stored format (base64 text): ``version (1 byte, 2) | key id (4) | nonce (12) |
AES-256-GCM ciphertext and tag``. The associated data is those first five bytes
followed by the caller's *context*, bytes that name where the value lives (the
fields use ``table NUL column NUL token id``): the context is not stored, so a value
opens only where it was written, and a copy in another row or column fails like a
wrong key. Every SDK call decrypts four values, and one AES-GCM call costs about a
seventh of Fernet's HMAC-then-CBC in Python (see benchmarks/). The key id names the
key that wrote the value, so decryption tries one key, not every key. The AES key is
derived with HKDF-SHA256 from the configured key (32 random bytes in url-safe base64,
the format ``Fernet.generate_key()`` prints). Random 96-bit nonces are safe for 2^32
encryptions per key; a token store writes a few per user and hour.

Each digest purpose (a column) gets its own HMAC key, derived with HKDF-SHA256 from
each configured HMAC key, so no two columns share a key and a digest from one column
means nothing in another.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import os
import threading
from collections.abc import Callable, Sequence
from typing import TypeVar

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

MIN_HMAC_KEY_LENGTH = 32
T = TypeVar("T")

FORMAT_VERSION = b"\x02"
KEY_ID_LENGTH = 4
NONCE_LENGTH = 12
HEADER_LENGTH = len(FORMAT_VERSION) + KEY_ID_LENGTH
TAG_LENGTH = 16
ENCRYPTION_KEY_LENGTH = 32
_HKDF_INFO = b"zoho_tokens AES-256-GCM v2"
_DIGEST_HKDF_INFO = b"zoho_tokens HMAC-SHA256 digest\x00"


def looks_sealed(text: str) -> bool:
    """Whether ``text`` has the shape of a value this module encrypted (not that it opens).

    Tokens and secrets in clear never do: Zoho's contain dots, and an accidental match
    needs strict base64 that decodes to the version byte and at least 33 bytes.
    """
    try:
        raw = binascii.a2b_base64(text, strict_mode=True)
    except (binascii.Error, ValueError):
        return False
    return raw[:1] == FORMAT_VERSION and len(raw) >= HEADER_LENGTH + NONCE_LENGTH + TAG_LENGTH


class InvalidKeyError(ValueError):
    """A key list is missing or malformed."""


class DecryptionError(ValueError):
    """A stored value does not open: see :attr:`reason`."""

    FORMAT = "format"  # not a value this version writes
    KEY = "key"  # written with a key that is not configured
    PLACE = "place"  # the key is configured, but the value was written for another context, or altered

    def __init__(self, message: str, reason: str) -> None:
        super().__init__(message)
        self.reason = reason


def _as_bytes(key: str | bytes) -> bytes:
    return key.encode() if isinstance(key, str) else key


def decode_encryption_key(key: str | bytes) -> bytes:
    """The 32 bytes of a configured encryption key; ``InvalidKeyError`` (without the key) if malformed."""
    try:
        raw = base64.urlsafe_b64decode(_as_bytes(key))
    except (binascii.Error, ValueError, TypeError):
        raw = b""
    if len(raw) != ENCRYPTION_KEY_LENGTH:
        raise InvalidKeyError(
            f"an encryption key is malformed (not {ENCRYPTION_KEY_LENGTH} bytes in url-safe base64)"
        ) from None
    return raw


def _hkdf(key: bytes, info: bytes) -> bytes:
    return HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=info).derive(key)


def _derive(key: str | bytes) -> tuple[bytes, AESGCM]:
    """The key's id and its AES-256-GCM cipher, both derived from the configured key."""
    aes_key = _hkdf(decode_encryption_key(key), _HKDF_INFO)
    key_id = hashlib.sha256(b"zoho_tokens key id\x00" + aes_key).digest()[:KEY_ID_LENGTH]
    return key_id, AESGCM(aes_key)


class Cipher:
    def __init__(self, keys: Sequence[str | bytes]) -> None:
        if not keys:
            raise InvalidKeyError("no encryption key is configured")
        derived = [_derive(key) for key in keys]
        self._header = FORMAT_VERSION + derived[0][0]
        self._writer = derived[0][1]
        # Two different keys sharing a 32-bit id would need 2^16 keys to be likely;
        # each id still keeps every key it stands for.
        self._readers: dict[bytes, list[AESGCM]] = {}
        for key_id, aead in derived:
            self._readers.setdefault(FORMAT_VERSION + key_id, []).append(aead)

    def encrypt(self, plaintext: str, context: bytes) -> str:
        """``plaintext`` sealed so that it opens only with the same ``context``."""
        nonce = os.urandom(NONCE_LENGTH)
        sealed = self._writer.encrypt(nonce, plaintext.encode("utf-8"), self._header + context)
        return binascii.b2a_base64(self._header + nonce + sealed, newline=False).decode("ascii")

    def decrypt(self, ciphertext: str, context: bytes) -> str:
        try:
            raw = binascii.a2b_base64(ciphertext)
        except (binascii.Error, ValueError):
            raise DecryptionError(
                "it is not base64, not a value this app wrote", DecryptionError.FORMAT
            ) from None
        header = raw[:HEADER_LENGTH]
        readers = self._readers.get(header)
        if readers is None:
            if header[:1] != FORMAT_VERSION or len(raw) < HEADER_LENGTH + NONCE_LENGTH + TAG_LENGTH:
                raise DecryptionError("it is not in the format this version writes", DecryptionError.FORMAT)
            raise DecryptionError("no configured encryption key wrote it", DecryptionError.KEY)
        nonce, sealed = raw[HEADER_LENGTH : HEADER_LENGTH + NONCE_LENGTH], raw[HEADER_LENGTH + NONCE_LENGTH :]
        associated_data = header + context
        for aead in readers:
            try:
                return aead.decrypt(nonce, sealed, associated_data).decode("utf-8")
            except (InvalidTag, ValueError):
                continue
        raise DecryptionError("it was written for another place, or altered", DecryptionError.PLACE)


class Digester:
    """HMAC-SHA256 digests for one purpose, under a key derived from each configured key."""

    def __init__(self, keys: Sequence[str | bytes], purpose: bytes) -> None:
        if not keys:
            raise InvalidKeyError("no HMAC key is configured")
        raw_keys = [_as_bytes(key) for key in keys]
        if any(len(key) < MIN_HMAC_KEY_LENGTH for key in raw_keys):
            raise InvalidKeyError(f"an HMAC key is shorter than {MIN_HMAC_KEY_LENGTH} characters")
        self._keys = [_hkdf(key, _DIGEST_HKDF_INFO + purpose) for key in raw_keys]

    def digest(self, value: str) -> str:
        """The digest written to the database (first key)."""
        return self._hmac(self._keys[0], value)

    def candidates(self, value: str) -> list[str]:
        """Every digest the value may be stored under, current key first."""
        return [self._hmac(key, value) for key in self._keys]

    @staticmethod
    def _hmac(key: bytes, value: str) -> str:
        return hmac.new(key, value.encode("utf-8"), hashlib.sha256).hexdigest()


_lock = threading.Lock()
_ciphers: dict[tuple[object, ...], Cipher] = {}
_digesters: dict[tuple[object, ...], Digester] = {}


def cipher_for(keys: Sequence[str | bytes]) -> Cipher:
    """The cached :class:`Cipher` for this key list (a new list builds a new one)."""
    return _cached(_ciphers, lambda: Cipher(keys), tuple(keys))


def digester_for(keys: Sequence[str | bytes], purpose: bytes) -> Digester:
    """The cached :class:`Digester` for this key list and purpose."""
    return _cached(_digesters, lambda: Digester(keys, purpose), (purpose, tuple(keys)))


def _cached(cache: dict[tuple[object, ...], T], build: Callable[[], T], key: tuple[object, ...]) -> T:
    built = cache.get(key)
    if built is None:
        with _lock:
            built = cache.setdefault(key, build())
    return built
