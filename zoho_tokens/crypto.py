"""Encryption and blind-index primitives; nothing here knows about Django models.

* :class:`Cipher` encrypts with the first Fernet key and decrypts with any of them,
  so keys can be rotated by prepending a new one.
* :class:`Digester` computes keyed HMAC-SHA256 digests used to look a secret up
  without storing it in clear. The first key writes; every key is tried on lookup.

Both are built once per key list and cached (see :func:`cipher_for` and
:func:`digester_for`), because building Fernet objects on every call is measurable
on the hot path of every SDK call.
"""

from __future__ import annotations

import hashlib
import hmac
import threading
from collections.abc import Callable, Sequence
from typing import TypeVar

from cryptography.fernet import Fernet, InvalidToken, MultiFernet

MIN_HMAC_KEY_LENGTH = 32
T = TypeVar("T")
# Ciphertexts are immutable, so a decrypted value can be remembered by its
# ciphertext. The bound keeps memory flat however many tokens are read.
DECRYPTED_CACHE_SIZE = 16384


class InvalidKeyError(ValueError):
    """A key list is missing or malformed."""


class DecryptionError(ValueError):
    """No configured key opens a stored value (wrong key, or tampered data)."""


def _as_bytes(key: str | bytes) -> bytes:
    return key.encode() if isinstance(key, str) else key


class Cipher:
    def __init__(self, keys: Sequence[str | bytes]) -> None:
        if not keys:
            raise InvalidKeyError("no encryption key is configured")
        try:
            self._fernet = MultiFernet([Fernet(_as_bytes(key)) for key in keys])
        except (ValueError, TypeError) as exc:
            # Fernet's own message never contains the key.
            raise InvalidKeyError(f"an encryption key is malformed ({exc})") from None
        self._decrypted: dict[str, str] = {}

    def encrypt(self, plaintext: str) -> str:
        return self._fernet.encrypt(plaintext.encode("utf-8")).decode("ascii")

    def decrypt(self, ciphertext: str) -> str:
        cached = self._decrypted.get(ciphertext)
        if cached is not None:
            return cached
        try:
            plaintext = self._fernet.decrypt(ciphertext.encode("ascii")).decode("utf-8")
        except (InvalidToken, UnicodeError) as exc:
            raise DecryptionError("no configured encryption key can decrypt the value") from exc
        if len(self._decrypted) >= DECRYPTED_CACHE_SIZE:
            self._decrypted.clear()
        self._decrypted[ciphertext] = plaintext
        return plaintext


class Digester:
    def __init__(self, keys: Sequence[str | bytes]) -> None:
        if not keys:
            raise InvalidKeyError("no HMAC key is configured")
        self._keys = [_as_bytes(key) for key in keys]
        if any(len(key) < MIN_HMAC_KEY_LENGTH for key in self._keys):
            raise InvalidKeyError(f"an HMAC key is shorter than {MIN_HMAC_KEY_LENGTH} characters")

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
_ciphers: dict[tuple[str | bytes, ...], Cipher] = {}
_digesters: dict[tuple[str | bytes, ...], Digester] = {}


def cipher_for(keys: Sequence[str | bytes]) -> Cipher:
    """The cached :class:`Cipher` for this key list (a new list builds a new one)."""
    return _cached(_ciphers, Cipher, tuple(keys))


def digester_for(keys: Sequence[str | bytes]) -> Digester:
    """The cached :class:`Digester` for this key list."""
    return _cached(_digesters, Digester, tuple(keys))


def _cached(
    cache: dict[tuple[str | bytes, ...], T],
    build: Callable[[tuple[str | bytes, ...]], T],
    keys: tuple[str | bytes, ...],
) -> T:
    built = cache.get(keys)
    if built is None:
        with _lock:
            built = cache.setdefault(keys, build(keys))
    return built


def generate_encryption_key() -> str:
    return Fernet.generate_key().decode("ascii")
