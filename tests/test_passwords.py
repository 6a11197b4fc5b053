"""Passwords: salted scrypt hashes, constant-time checks, the cache of good checks."""

from __future__ import annotations

from smppbridge.core.passwords import PasswordChecker, hash_password, is_hashed, verify_password


def test_hash_verifies_only_the_right_password() -> None:
    """A hash accepts its password and refuses others; two hashes of one password differ."""
    h1 = hash_password("secret1", log2_n=4)
    h2 = hash_password("secret1", log2_n=4)
    assert is_hashed(h1)
    assert h1 != h2  # salted
    assert verify_password("secret1", h1)
    assert not verify_password("secret2", h1)
    assert "secret1" not in h1


def test_plain_passwords_compare_exactly() -> None:
    """A plain configured password matches only itself."""
    assert verify_password("demo", "demo")
    assert not verify_password("dem", "demo")
    assert not verify_password("demo1", "demo")


def test_checker_caches_successes_not_failures() -> None:
    """After one successful check the pair is known; a wrong password still needs scrypt."""
    checker = PasswordChecker()
    h = hash_password("pw", log2_n=4)
    assert checker.cached("pw", h) is None
    assert checker.verify("pw", h)
    assert checker.cached("pw", h) is True
    assert checker.cached("other", h) is None
    assert not checker.verify("other", h)
