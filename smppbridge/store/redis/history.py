"""The message history on Redis: a message's timeline and receipts as the core's types,
and searches through the time indexes (docs/cluster.md, *History and memory per
message*).

Theory of operation
-------------------
* **Timeline.** Most entries are derived from the message hash, so the usual story
  (accepted → sent → final) costs no key of its own: *accepted* from ``submitted_at``
  (``af`` marks a message accepted already final), *sent* from ``sat``/``sst``/``sd`` and
  the provider fields, *final* from ``done_at``/``stat``/``err``/``fd``. Retries,
  intermediate statuses and a second send are notes in the list ``h:<id>`` (the last
  ``history_cap`` kept). The hash counts every note ever written (``hn``) and records
  how many came before the send (``sp``) and, when a note follows the final status (a
  send racing a cancel), before the final (``fp``); so the order is exact whatever
  the nodes' clocks say.
* **Receipts.** Each receipt is listed in its message's hash as ``r:<seq>`` (see
  :mod:`.scripts` for the view format): pending while it is in the outbox, then
  delivered, dropped or expired with the time; it expires with the message.
* **Search.** Four sorted sets scored by ``submitted_at`` with the message id as member
  (Redis orders equal scores by member bytes, which is the contract's id order):
  ``ix:t`` (every message), ``ix:a:<account>``, ``ix:d:<destination>``,
  ``ix:s:<source>``. A query walks the smallest one its filters name, newest first,
  and checks the remaining filters on each message hash in Lua.

Costs (N = entries of the index walked, k = entries examined):

* ``timeline``, ``receipts_of``: one script, O(1) + the notes or the hash's fields.
* ``search`` with ``provider`` and ``provider_id``: the ``prov:`` key, O(1).
* ``search`` otherwise: O(log N) to find where the page starts (the cursor's own entry
  is looked up by rank; only if it is gone are the entries of exactly its time walked),
  then per entry examined one HMGET of the filters the walked index does not imply
  (~5 µs; none when it implies them all), plus one HGETALL and its JSON per match
  (~25 µs). An exact filter that has its index (account, destination, source) costs
  k = the page; a filter without one (state, stat, provider, provider_id alone, or a
  second address) costs the entries skipped over too. Each script call examines at
  most :data:`CALL_BUDGET` entries and returns at most :data:`CALL_ITEMS` messages
  (~1–2 ms of Redis time at most); one :func:`search` makes at most
  :data:`SEARCH_CALLS` calls, then answers a short page whose ``next`` cursor lets the
  caller continue. Nothing ever SCANs the keyspace.

Measured on 100,000 messages (benchmarks/history_redis.py, docs/cluster.md): an
account's 100 newest, 2 scripts, 3–8 ms; a destination, 0.2–0.5 ms; provider id,
0.1–0.3 ms; timeline, 0.05–0.15 ms; a filter matching nothing, 40 scripts of 1–2 ms,
then an empty page with a cursor.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable, Sequence
from typing import Any
from urllib.parse import unquote

from smppbridge.core.history import (
    MAX_PAGE,
    Cursor,
    MessagePage,
    MessageQuery,
    ReceiptState,
    ReceiptView,
    TimelineEntry,
)
from smppbridge.core.records import DeliveryState, StoredMessage
from smppbridge.store.redis.records import num, to_stored

__all__ = ["CALL_BUDGET", "CALL_ITEMS", "RECEIPT_CODES", "SEARCH_CALLS", "matches",
           "receipts_from", "search", "timeline_from"]

#: Index entries one search script call examines at most (~5 µs each when a filter is
#: checked on the hash: <= ~1 ms).
CALL_BUDGET = 200
#: Messages one search script call returns at most (~25 µs each, the HGETALL and its
#: JSON: <= ~1.5 ms), so that no call holds Redis long.
CALL_ITEMS = 50
#: Script calls one :func:`search` makes at most before answering a short page (a
#: full MAX_PAGE page takes 20).
SEARCH_CALLS = 40

#: The one-letter codes of finished receipts in a view.
RECEIPT_CODES = {ReceiptState.DELIVERED: "d", ReceiptState.DROPPED: "x",
                 ReceiptState.EXPIRED: "e"}
_STATES = {code: state for state, code in RECEIPT_CODES.items()}
#: The hash fields the timeline script returns before the notes, in order.
_TIMELINE_FIELDS = 15
#: A position after every note: where the final entry goes unless ``fp`` says otherwise.
_END = 1 << 62


def timeline_from(raw: Sequence[Any]) -> list[TimelineEntry]:
    """The timeline of a message from the ``timeline`` script's reply."""
    if not raw:
        return []
    (submitted, state, stat, err, done_at, sent_at, sent_stat, sent_pos, sent_words,
     final_words, final_pos, accepted_final, written, provider, provider_id) = (
        raw[:_TIMELINE_FIELDS])
    notes = [_note(item) for item in raw[_TIMELINE_FIELDS:]]
    out = [TimelineEntry(float(submitted), "final", stat, int(err), "accepted")
           if accepted_final else
           TimelineEntry(float(submitted), "queued", "", 0, "accepted")]
    derived: list[tuple[int, int, TimelineEntry]] = []
    if sent_at is not None:
        words = sent_words or f"sent to {provider} as {provider_id}"
        derived.append((int(sent_pos or 0), 0, TimelineEntry(
            float(sent_at), "sent", sent_stat or "ENROUTE", 0, words)))
    if state == DeliveryState.FINAL and not accepted_final:
        derived.append((int(final_pos) if final_pos is not None else _END, 1,
                        TimelineEntry(float(done_at), "final", stat, int(err),
                                      final_words or "")))
    derived.sort(key=lambda d: (d[0], d[1]))
    # a derived entry at position p comes just before the note numbered p (notes are
    # numbered from 0 over every note ever written; the list keeps the last ones)
    first = int(written or 0) - len(notes)
    for number, entry in enumerate(notes, first):
        while derived and derived[0][0] <= number:
            out.append(derived.pop(0)[2])
        out.append(entry)
    out.extend(d[2] for d in derived)
    return out


def _note(item: str) -> TimelineEntry:
    at, state, stat, err, detail = json.loads(item)
    return TimelineEntry(float(at), str(state), str(stat), int(err), str(detail))


def receipts_from(raw: Sequence[Any]) -> list[ReceiptView]:
    """The receipts of a message from the ``receipts_of`` script's reply, in creation
    (seq) order."""
    if not raw:
        return []
    message_id, account = str(raw[0]), str(raw[1])
    rows = []
    for i in range(2, len(raw), 3):
        seq, view, attempts = int(raw[i]), str(raw[i + 1]), raw[i + 2]
        if view.startswith("p|"):
            code, part, stat, err, created, *rest = view.split("|", 5)
            state, n, at = ReceiptState.PENDING, int(attempts or 0), float(created)
        else:
            code, at_s, n_s, part, stat, err, created, *rest = view.split("|", 7)
            state, n, at = _STATES[code], int(n_s), float(at_s)
        rows.append((seq, ReceiptView(
            part_id=unquote(part) if part else message_id,
            account=rest[0] if rest else account, stat=stat, err=int(err), state=state,
            attempts=n, at=at)))
    rows.sort(key=lambda r: r[0])
    return [view for _, view in rows]


def matches(stored: StoredMessage, q: MessageQuery) -> bool:
    """Does ``stored`` pass every filter of ``q`` and come after its cursor?"""
    m = stored.message
    checks = ((q.account, m.account), (q.destination, m.destination.addr),
              (q.source, m.source.addr), (q.state, stored.state), (q.stat, stored.stat),
              (q.provider, stored.provider), (q.provider_id, stored.provider_id))
    if any(want is not None and want != have for want, have in checks):
        return False
    if q.since is not None and m.submitted_at < q.since:
        return False
    if q.until is not None and m.submitted_at >= q.until:
        return False
    after = q.after
    return after is None or (m.submitted_at, m.message_id) < (after.submitted_at,
                                                               after.message_id)


Script = Callable[..., Awaitable[Any]]


async def search(script: Script, key: Callable[..., str], q: MessageQuery,
                 by_provider: Callable[[str, str], Awaitable[StoredMessage | None]]
                 ) -> MessagePage:
    """Run ``q``: ``script(name, *args)`` calls a store script, ``key(*parts)`` makes a
    key name, ``by_provider`` is the store's ``find_by_provider``."""
    limit = min(q.limit, MAX_PAGE)
    if limit <= 0:
        return MessagePage([], None)
    if q.provider is not None and q.provider_id is not None:
        found = await by_provider(q.provider, q.provider_id)
        return MessagePage([found] if found is not None and matches(found, q) else [], None)
    # [index key, the hash field it implies]: the script walks the smallest
    keys = [[key(ix, value), field] for ix, field, value in (
        ("ix:d:", "dest", q.destination), ("ix:s:", "source", q.source),
        ("ix:a:", "account", q.account)) if value is not None] or [[key("ix:t"), ""]]
    filters = {field: str(value) for field, value in (
        ("account", q.account), ("dest", q.destination), ("source", q.source),
        ("state", q.state), ("stat", q.stat), ("provider", q.provider),
        ("provider_id", q.provider_id)) if value is not None}
    base: dict[str, Any] = {"keys": keys, "budget": CALL_BUDGET, "filters": filters}
    for name, bound in (("since", q.since), ("until", q.until)):
        if bound is not None:
            base[name] = num(bound)
    items: list[StoredMessage] = []
    after = q.after
    for _ in range(SEARCH_CALLS):
        args = dict(base, limit=min(CALL_ITEMS, limit - len(items)))
        if after is not None:
            args.update(after_t=num(after.submitted_at), after_id=after.message_id)
        out = await script("search", json.dumps(args, ensure_ascii=False))
        more, last_s, last_m = int(out[0]), out[1], out[2]
        items.extend(to_stored(json.loads(raw)) for raw in out[3:])
        if not more:
            return MessagePage(items, None)
        if len(items) >= limit:
            last = items[-1].message
            return MessagePage(items, Cursor(last.submitted_at, last.message_id))
        after = Cursor(float(last_s), str(last_m))
    # the work for one answer is spent: a short page, and where to go on from
    return MessagePage(items, after)
