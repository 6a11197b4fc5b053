"""Flood rules: duplicates and subscriber floods, with an injected clock (docs/content.md)."""

from __future__ import annotations

from smppbridge.core.accounts import FloodRules
from smppbridge.ingest.flood import (
    DuplicateMessage,
    MemoryFloodState,
    SubscriberFlood,
    flood_error,
    text_digest,
)
from smppbridge.smpp.constants import CommandStatus

OK = CommandStatus.ESME_ROK
DUP = CommandStatus.VENDOR_DUPLICATE
FLOOD = CommandStatus.VENDOR_SUBSCRIBER_FLOOD
RULES = FloodRules()


async def check(state: MemoryFloodState, now: float, text: str = "hi", *,
                account: str = "acct", source: str = "src", destination: str = "380501234567",
                rules: FloodRules = RULES) -> int:
    return await state.check_and_record(account=account, source=source,
                                        destination=destination,
                                        text_digest=text_digest(text), now=now, rules=rules)


# --- duplicates ---------------------------------------------------------------------------

async def test_duplicate_within_window_is_refused() -> None:
    """Same account, source, destination and text within 60 s → VENDOR_DUPLICATE."""
    s = MemoryFloodState()
    assert await check(s, 0.0) == OK
    assert await check(s, 59.9) == DUP


async def test_duplicate_after_window_is_accepted() -> None:
    """60 s after the first copy the same message is accepted again."""
    s = MemoryFloodState()
    assert await check(s, 0.0) == OK
    assert await check(s, 60.0) == OK


async def test_duplicate_window_runs_from_the_first_accepted_copy() -> None:
    """Refused copies do not extend the window."""
    s = MemoryFloodState()
    assert await check(s, 0.0) == OK
    assert await check(s, 30.0) == DUP
    assert await check(s, 59.0) == DUP
    assert await check(s, 61.0) == OK
    assert await check(s, 62.0) == DUP  # the accepted copy at 61 opened a new window


async def test_any_difference_is_not_a_duplicate() -> None:
    """Another text, source, destination or account is a different message."""
    s = MemoryFloodState()
    assert await check(s, 0.0) == OK
    assert await check(s, 1.0, "hi!") == OK
    assert await check(s, 2.0, source="other") == OK
    assert await check(s, 3.0, destination="380500000000") == OK
    assert await check(s, 4.0, account="other") == OK


async def test_release_forgets_the_duplicate_record() -> None:
    """A message refused downstream is released: the ESME's retry is not a duplicate."""
    s = MemoryFloodState()
    assert await check(s, 5.0) == OK
    await s.release(account="acct", source="src", destination="380501234567",
                    text_digest=text_digest("hi"), recorded_at=5.0)
    assert await check(s, 6.0) == OK


async def test_release_of_an_older_record_keeps_the_newer() -> None:
    """release only removes the record made at ``recorded_at``."""
    s = MemoryFloodState()
    assert await check(s, 0.0) == OK
    assert await check(s, 61.0) == OK
    await s.release(account="acct", source="src", destination="380501234567",
                    text_digest=text_digest("hi"), recorded_at=0.0)
    assert await check(s, 62.0) == DUP


# --- subscriber flood ---------------------------------------------------------------------

async def test_fifty_accepted_fifty_first_refused() -> None:
    """More than 50 messages each under 30 s after the previous: the 51st is refused."""
    s = MemoryFloodState()
    for i in range(50):
        assert await check(s, i * 29.0, f"m{i}") == OK, i
    assert await check(s, 50 * 29.0, "m50") == FLOOD


async def test_pause_of_thirty_seconds_resets_the_streak() -> None:
    """Only a pause of 30 s or more ends the streak."""
    s = MemoryFloodState()
    for i in range(50):
        assert await check(s, float(i), f"m{i}") == OK
    assert await check(s, 50.0, "x") == FLOOD
    assert await check(s, 80.0, "y") == OK  # exactly 30 s after the previous attempt


async def test_refused_attempts_keep_the_streak_alive() -> None:
    """Every refused attempt moves 'previous' forward: hammering stays blocked."""
    s = MemoryFloodState()
    now = 0.0
    for i in range(50):
        assert await check(s, now, f"m{i}") == OK
        now += 1.0
    for i in range(5):
        assert await check(s, now, f"r{i}") == FLOOD
        now += 29.0  # never a 30 s pause after a refused attempt
    assert await check(s, now, "still") == FLOOD
    assert await check(s, now + 30.0, "after pause") == OK


async def test_refused_duplicates_count_toward_the_streak() -> None:
    """A client looping on one text floods too: its refused duplicates count."""
    s = MemoryFloodState()
    assert await check(s, 0.0) == OK
    for i in range(1, 50):
        assert await check(s, float(i)) == DUP
    # 50 attempts so far; a new text is the 51st in the streak
    assert await check(s, 50.0, "new") == FLOOD
    # after the duplicate window the looping text is refused as a flood, not accepted
    assert await check(s, 61.0) == FLOOD


async def test_flood_refusal_is_not_recorded_as_a_duplicate() -> None:
    """A message refused as flood can be re-sent after the pause."""
    s = MemoryFloodState()
    for i in range(50):
        await check(s, float(i), f"m{i}")
    assert await check(s, 50.0, "late") == FLOOD
    assert await check(s, 80.0, "late") == OK


async def test_streak_is_per_destination_not_per_source() -> None:
    """The flood rule counts messages to one destination from any source of the account."""
    s = MemoryFloodState()
    for i in range(50):
        assert await check(s, float(i), f"m{i}", source=f"s{i % 3}") == OK
    assert await check(s, 50.0, "x", source="fresh") == FLOOD
    assert await check(s, 50.0, "x", destination="other") == OK


async def test_two_accounts_are_independent() -> None:
    """One account's flood does not block another account's messages."""
    s = MemoryFloodState()
    for i in range(50):
        assert await check(s, float(i), f"m{i}", account="a") == OK
    assert await check(s, 50.0, "x", account="a") == FLOOD
    assert await check(s, 50.0, "x", account="b") == OK
    assert await check(s, 50.0, "m0", account="b") == OK


# --- settings -----------------------------------------------------------------------------

async def test_custom_rules_and_statuses() -> None:
    """Windows, limit and statuses come from the account's FloodRules."""
    rules = FloodRules(duplicate_window=5.0, flood_gap=2.0, flood_limit=2,
                       duplicate_status=0x4AA, flood_status=0x4BB)
    s = MemoryFloodState()
    assert await check(s, 0.0, "a", rules=rules) == OK
    assert await check(s, 1.0, "a", rules=rules) == 0x4AA
    assert await check(s, 1.5, "b", rules=rules) == 0x4BB
    assert await check(s, 4.0, "b", rules=rules) == OK
    assert await check(s, 6.0, "a", rules=rules) == OK  # 6 s after the first "a"


async def test_disabled_rules_accept_everything() -> None:
    """enabled=False turns both rules off; 0 turns each off on its own."""
    s = MemoryFloodState()
    off = FloodRules(enabled=False)
    for i in range(60):
        assert await check(s, float(i), rules=off) == OK
    no_dup = FloodRules(duplicate_window=0)
    assert await check(s, 0.0, "z", rules=no_dup, account="n") == OK
    assert await check(s, 0.1, "z", rules=no_dup, account="n") == OK
    no_flood = FloodRules(flood_limit=0)
    for i in range(60):
        assert await check(s, float(i), f"m{i}", rules=no_flood, account="f") == OK


def test_flood_error_maps_statuses_to_exceptions() -> None:
    """The status from check_and_record becomes an exception carrying that status."""
    rules = FloodRules(duplicate_status=0x4AA, flood_status=0x4BB)
    assert flood_error(OK, rules) is None
    dup = flood_error(0x4AA, rules)
    assert isinstance(dup, DuplicateMessage)
    assert dup.status == 0x4AA
    flood = flood_error(0x4BB, rules)
    assert isinstance(flood, SubscriberFlood)
    assert flood.status == 0x4BB


def test_default_rules() -> None:
    """Defaults are the SMS Center rules and the documented vendor statuses."""
    assert FloodRules(60.0, 30.0, 50, 0x400, 0x401, enabled=True) == RULES


def test_text_digest_is_short_and_distinguishes_texts() -> None:
    """The duplicate key is a 16-octet BLAKE2b digest, not the text."""
    assert len(text_digest("hello")) == 16
    assert text_digest("hello") != text_digest("hello ")
    assert text_digest("\ud800") != text_digest("")  # lone surrogates hash too


# --- memory bounds ------------------------------------------------------------------------

async def test_old_entries_are_swept() -> None:
    """Entries whose window has passed are dropped, so memory follows the live traffic."""
    s = MemoryFloodState(sweep_interval=10.0)
    for i in range(100):
        await check(s, 0.0, f"m{i}", destination=f"d{i}")
    assert len(s) == 200
    await check(s, 100.0, "later", destination="x")
    assert len(s) == 2


async def test_sweep_keeps_live_entries_behind_expired_ones() -> None:
    """The sweep drops the expired records at the front (oldest first) and keeps the
    live ones after them: a text sent at 50 s is still a duplicate at 70 s."""
    s = MemoryFloodState(sweep_interval=10.0)
    for i in range(10):
        await check(s, 0.0, f"old{i}", destination=f"o{i}")
    await check(s, 50.0, "live", destination="l")
    await check(s, 70.0, "other", destination="x")  # sweeps: the 0 s records are gone
    assert len(s) == 4  # live + other, a duplicate record and a streak each
    assert await check(s, 71.0, "live", destination="l") == DUP


async def test_max_entries_drops_the_oldest() -> None:
    """Over max_entries the oldest records go; that only lets messages through."""
    s = MemoryFloodState(max_entries=10)
    for i in range(50):
        await check(s, float(i) / 100, f"m{i}", destination=f"d{i}")
    assert len(s) <= 20
    assert await check(s, 1.0, "m0", destination="d0") == OK  # forgotten, accepted
    assert await check(s, 1.0, "m49", destination="d49") == DUP  # still remembered


# --- memory under sustained load (issue 21 #4: no decay) ----------------------------------

async def test_records_stay_bounded_by_the_windows_after_many_messages() -> None:
    """20,000 distinct messages at 100/s (200 s of an injected clock): only the last
    60 s of duplicate records and 30 s of streaks (plus one sweep interval) remain."""
    s = MemoryFloodState(sweep_interval=10.0)
    for n in range(20_000):
        assert await check(s, n / 100, f"t{n}", destination=f"380{n}") == OK
    assert len(s) <= (60 + 10) * 100 + (30 + 10) * 100
    assert len(s) >= 60 * 100 + 30 * 100 - 2  # the live windows are all still there


async def test_flood_records_are_invisible_to_the_garbage_collector() -> None:
    """The duplicate and streak records hold no container (bytes or str keys, floats,
    ints), so their dicts are never tracked and collections do not walk the ~450,000
    records of the windows at 5,000/s."""
    import gc

    s = MemoryFloodState()
    for n in range(1_000):
        await check(s, float(n), f"t{n}", destination=f"380{n}")
    gc.collect()
    await check(s, 1_000.0, "one more", destination="380x")
    assert s._duplicates
    assert s._streaks
    assert not any(gc.is_tracked(d) for d in s._duplicates.values())
    assert not any(gc.is_tracked(d) for d in s._streaks.values())
    assert not gc.is_tracked(s._counts)
    assert await check(s, 1_000.5, "one more", destination="380x") == DUP


async def test_record_made_under_another_window_still_counts() -> None:
    """A window changed between two copies (config reload): the earlier record is found,
    judged by the current window, and forgotten when its own window ends."""
    s = MemoryFloodState(sweep_interval=0.0)
    assert await check(s, 0.0) == OK
    longer = FloodRules(duplicate_window=120.0)
    assert await check(s, 59.0, rules=longer) == DUP
    assert await check(s, 60.0, rules=longer) == OK  # its 60-s record was swept
    assert await check(s, 100.0, rules=longer) == DUP  # the new one, under 120 s


async def test_key_fields_do_not_run_into_each_other() -> None:
    """("ab", "c") and ("a", "bc") as source and destination are two messages."""
    s = MemoryFloodState()
    assert await check(s, 0.0, account="x", source="ab", destination="c") == OK
    assert await check(s, 1.0, account="x", source="a", destination="bc") == OK


async def test_streak_counts_are_forgotten_with_their_streak() -> None:
    """A streak of 51 is refused; swept after its 30-s gap, its count goes too (no
    record outlives its window), and the destination starts a streak of one again."""
    s = MemoryFloodState(sweep_interval=0.0)
    for n in range(50):
        assert await check(s, n * 0.1, f"t{n}") == OK
    assert await check(s, 5.0, "t50") == FLOOD
    assert s._counts
    assert await check(s, 40.0, "other", destination="380999") == OK  # sweeps the first
    assert not any("380501234567" in k for k in s._counts)
    assert await check(s, 41.0, "t51") == OK
