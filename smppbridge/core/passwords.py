"""Account passwords: salted scrypt hashes and constant-time comparison.

A configured password is either plain text or a hash made by
``smppbridge hash-password``: ``scrypt$<log2 n>$<r>$<p>$<salt b64>$<hash b64>``.
scrypt is in the standard library and is memory-hard; its cost is paid once per
(system_id, password) pair thanks to :class:`PasswordChecker`'s cache of successful
checks, so reconnect storms do not burn CPU.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets

__all__ = ["PasswordChecker", "hash_password", "is_hashed", "verify_password"]

_PREFIX = "scrypt$"
_LOG2_N, _R, _P = 14, 8, 1  # ~16 MiB and ~40 ms per hash: OWASP's scrypt baseline
_SALT_BYTES = 16
_DKLEN = 32
_HASH_FIELDS = 6


def is_hashed(stored: str) -> bool:
    return stored.startswith(_PREFIX)


def hash_password(password: str, *, log2_n: int = _LOG2_N) -> str:
    """A salted scrypt hash of ``password`` for the config file."""
    salt = secrets.token_bytes(_SALT_BYTES)
    digest = hashlib.scrypt(password.encode(), salt=salt, n=1 << log2_n, r=_R, p=_P,
                            dklen=_DKLEN, maxmem=256 * 1024 * 1024)
    b64 = base64.b64encode
    return f"{_PREFIX}{log2_n}${_R}${_P}${b64(salt).decode()}${b64(digest).decode()}"


def check_hash_format(stored: str) -> None:
    """Raise ValueError when a stored ``scrypt$`` value is malformed."""
    parts = stored.split("$")
    if len(parts) != _HASH_FIELDS:
        raise ValueError("hash must be scrypt$<log2 n>$<r>$<p>$<salt>$<hash>")
    try:
        log2_n, r, p = int(parts[1]), int(parts[2]), int(parts[3])
        base64.b64decode(parts[4], validate=True)
        base64.b64decode(parts[5], validate=True)
    except ValueError as exc:
        raise ValueError(f"malformed scrypt hash ({exc})") from None
    if not (1 <= log2_n <= 20 and 1 <= r <= 32 and 1 <= p <= 16):
        raise ValueError("scrypt parameters out of range")


def verify_password(password: str, stored: str) -> bool:
    """Compare in constant time against a plain or hashed stored password."""
    if not is_hashed(stored):
        return hmac.compare_digest(password.encode(), stored.encode())
    _, log2_n, r, p, salt, digest = stored.split("$")
    expected = base64.b64decode(digest)
    got = hashlib.scrypt(password.encode(), salt=base64.b64decode(salt), n=1 << int(log2_n),
                         r=int(r), p=int(p), dklen=len(expected), maxmem=256 * 1024 * 1024)
    return hmac.compare_digest(got, expected)


class PasswordChecker:
    """verify_password with a cache of successful checks.

    The cache keeps an HMAC of the accepted password under a per-process random key,
    never the password itself, and is keyed by the stored value so a config reload
    that changes the password invalidates it.
    """

    def __init__(self) -> None:
        self._key = secrets.token_bytes(32)
        self._ok: dict[str, bytes] = {}

    def _mac(self, password: str) -> bytes:
        return hmac.digest(self._key, password.encode(), "sha256")

    def cached(self, password: str, stored: str) -> bool | None:
        """True if this exact pair was verified before; None when scrypt must run."""
        if not is_hashed(stored):
            return verify_password(password, stored)
        known = self._ok.get(stored)
        if known is not None and hmac.compare_digest(known, self._mac(password)):
            return True
        return None

    def verify(self, password: str, stored: str) -> bool:
        hit = self.cached(password, stored)
        if hit is not None:
            return hit
        ok = verify_password(password, stored)
        if ok:
            self._ok[stored] = self._mac(password)
        return ok
