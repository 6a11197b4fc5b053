"""The console's sessions and CSRF tokens (smppbridge/node/console/sessions.py): signed
random ids held in memory, idle and absolute expiry, a bounded count, one CSRF token
per session compared in constant time."""

from __future__ import annotations

import pytest

from smppbridge.node.console.sessions import IDLE, LIFETIME, Kind, SessionStore


class Clock:
    def __init__(self) -> None:
        self.now = 1_000_000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def store(clock: Clock) -> SessionStore:
    return SessionStore(clock=clock)


def test_a_session_is_found_by_its_cookie(store: SessionStore) -> None:
    """The cookie of a new session names it; the session keeps who logged in."""
    session = store.create(Kind.ACCOUNT, system_id="acme", granted_on="x")
    found = store.get(store.cookie(session))
    assert found is session
    assert (found.kind, found.system_id, found.granted_on) == (Kind.ACCOUNT, "acme", "x")


def test_ids_and_tokens_are_long_random_and_never_reused(store: SessionStore) -> None:
    """Each session gets its own 256-bit id and CSRF token; the cookie is the id and
    its signature."""
    sessions = [store.create(Kind.OPERATOR) for _ in range(50)]
    assert len({s.id for s in sessions}) == 50
    assert len({s.csrf for s in sessions}) == 50
    assert all(len(s.id) >= 43 and len(s.csrf) >= 43 for s in sessions)
    assert all(s.id != s.csrf for s in sessions)
    sid, _, signature = store.cookie(sessions[0]).partition(".")
    assert sid == sessions[0].id
    assert signature


@pytest.mark.parametrize("tamper", [
    lambda c: c.split(".")[0],                       # no signature
    lambda c: c.split(".")[0] + ".",                 # an empty one
    lambda c: c[:-2] + ("AA" if not c.endswith("AA") else "BB"),  # a changed one
    lambda c: "x" + c,                               # a changed id
    lambda c: "",
    lambda c: "....",
])
def test_a_cookie_this_process_did_not_sign_is_refused(store: SessionStore,
                                                       tamper: object) -> None:
    """A cookie whose id or signature was changed (or is missing) finds no session."""
    session = store.create(Kind.OPERATOR)
    assert callable(tamper)
    assert store.get(tamper(store.cookie(session))) is None
    assert store.get(None) is None


def test_another_store_does_not_take_the_cookie(store: SessionStore) -> None:
    """The signing key is drawn per store (per node process): a restart's store
    refuses the cookies of the one before, so a restart logs everyone out."""
    cookie = store.cookie(store.create(Kind.OPERATOR))
    assert SessionStore().get(cookie) is None


def test_a_session_ends_after_the_idle_time(store: SessionStore, clock: Clock) -> None:
    """Used within IDLE it lives on (each use counts); IDLE without a use ends it."""
    session = store.create(Kind.OPERATOR)
    cookie = store.cookie(session)
    for _ in range(3):
        clock.now += IDLE - 1
        assert store.get(cookie) is session
    clock.now += IDLE
    assert store.get(cookie) is None
    assert len(store) == 0


def test_a_session_ends_after_its_lifetime_however_used(store: SessionStore,
                                                        clock: Clock) -> None:
    """LIFETIME after the login the session ends even if it was used all along."""
    session = store.create(Kind.ACCOUNT, system_id="acme")
    cookie = store.cookie(session)
    while clock.now + IDLE / 2 < session.created + LIFETIME:
        clock.now += IDLE / 2
        assert store.get(cookie) is session
    clock.now = session.created + LIFETIME
    assert store.get(cookie) is None


def test_logout_drops_the_session(store: SessionStore) -> None:
    """A dropped session's cookie finds nothing; dropping twice is harmless."""
    session = store.create(Kind.OPERATOR)
    cookie = store.cookie(session)
    store.drop(session)
    store.drop(session)
    assert store.get(cookie) is None


def test_the_count_is_bounded_least_recently_used_first(clock: Clock) -> None:
    """At the limit, a new session pushes out the one used longest ago; idle ones are
    swept at each creation."""
    store = SessionStore(clock=clock, limit=3)
    a, b, c = (store.create(Kind.OPERATOR) for _ in range(3))
    clock.now += 1
    assert store.get(store.cookie(a)) is a  # a is now the most recently used
    d = store.create(Kind.OPERATOR)
    assert len(store) == 3
    assert store.get(store.cookie(b)) is None
    assert [store.get(store.cookie(s)) for s in (a, c, d)] == [a, c, d]
    clock.now += IDLE
    store.create(Kind.OPERATOR)
    assert len(store) == 1


def test_the_csrf_token_must_be_the_sessions_own(store: SessionStore) -> None:
    """Only the session's own token passes: not another session's, not an empty or
    missing one, and nothing passes without a session."""
    mine, theirs = store.create(Kind.OPERATOR), store.create(Kind.OPERATOR)
    assert store.csrf_ok(mine, mine.csrf)
    assert not store.csrf_ok(mine, theirs.csrf)
    assert not store.csrf_ok(mine, "")
    assert not store.csrf_ok(mine, None)
    assert not store.csrf_ok(mine, mine.csrf[:-1])
    assert not store.csrf_ok(None, mine.csrf)
    assert not store.csrf_ok(mine, mine.csrf + "é")


def test_digests_are_keyed_and_stable(store: SessionStore) -> None:
    """What a login was granted on is kept as a keyed digest: the same material gives
    the same digest in one store, another store (key) gives another one."""
    assert store.digest("tokens") == store.digest("tokens")
    assert store.digest("tokens") != store.digest("tokens2")
    assert "tokens" not in store.digest("tokens")
    assert SessionStore().digest("tokens") != store.digest("tokens")
