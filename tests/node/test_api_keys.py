"""An account's api_keys authenticate it (node/auth.py): plain or scrypt-hashed keys,
only from the account's allowed_networks; admin tokens still make an operator."""

from __future__ import annotations

import pytest

from smppbridge.config import parse_config
from smppbridge.core.passwords import hash_password
from smppbridge.node.auth import ApiAuth, Refused
from smppbridge.server.admission import Admission, BindRegistry

TOKEN = "an-admin-token-of-some-length"
PLAIN = "plain-key-0123456789"
HASHED = "hashed-key-0123456789"


def _auth() -> ApiAuth:
    cfg = parse_config(f"""
[smpp]
listen = "127.0.0.1:2775"
[http]
admin_tokens = ["{TOKEN}"]
[[accounts]]
system_id = "acme"
password = "pw"
api_keys = ["{PLAIN}", "{hash_password(HASHED, log2_n=4)}"]
[[accounts]]
system_id = "lan"
password = "pw"
api_keys = ["lan-key-0123456789ab"]
allowed_networks = ["10.0.0.0/8"]
""", env={})
    admission = Admission(cfg.smpp, cfg.accounts_by_id(), BindRegistry())
    return ApiAuth(lambda: cfg.http.admin_tokens, admission, open_without_tokens=False)


@pytest.mark.parametrize("key", [PLAIN, HASHED])
async def test_a_plain_or_hashed_api_key_is_its_account(key: str) -> None:
    """Bearer with either kind of key is the account (twice: the hash from the cache)."""
    auth = _auth()
    for _ in range(2):
        who = await auth.principal(f"Bearer {key}", "127.0.0.1")
        assert who.account is not None
        assert who.account.system_id == "acme"


async def test_a_wrong_key_is_refused_and_a_token_is_an_operator() -> None:
    """An unknown key is 401; an admin token is still an operator."""
    auth = _auth()
    with pytest.raises(Refused) as refused:
        await auth.principal("Bearer not-a-key-of-anyone-at-all", "127.0.0.1")
    assert refused.value.status == 401
    assert (await auth.principal(f"Bearer {TOKEN}", "127.0.0.1")).admin


async def test_a_key_is_taken_only_from_the_accounts_networks() -> None:
    """The lan account's key from 127.0.0.1 is refused, from 10.1.2.3 taken."""
    auth = _auth()
    with pytest.raises(Refused):
        await auth.principal("Bearer lan-key-0123456789ab", "127.0.0.1")
    who = await auth.principal("Bearer lan-key-0123456789ab", "10.1.2.3")
    assert who.account is not None
    assert who.account.system_id == "lan"
