"""The embedded store: one SQLite file in WAL mode, written with group commit.

Theory of operation: one dedicated thread owns the only sqlite3 connection. Coroutines
put operations on a queue and await a future; the thread takes *everything* queued,
runs it inside one transaction, commits once, and resolves all the futures. Under load a
single commit (one fsync with ``synchronous=FULL``) covers hundreds of submits, so
"acknowledge only after the write is durable" does not cost throughput.

Durability: WAL with ``synchronous=FULL`` (default) survives power loss; ``NORMAL``
survives a crash or kill -9 of the process but may lose the last commits on power loss.

History reads (search, timeline, receipts_of, the counts) run on a second connection in
a thread of their own (WAL lets it read committed data while the writer writes), so that an
operator's search never holds up the writer and the submits waiting on it; their
queries are in history.py. A ``:memory:`` database has no second connection to share
it: there they run on the writer.

Size: over 500 lines because it is one class, the :class:`~smppbridge.core.ports.Store`
contract on this file, and every method is a short transaction of the writer; the SQL
that is not (history reads, retention) lives in history.py.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import queue
import sqlite3
import threading
import time
from collections.abc import Callable, Sequence
from functools import partial
from pathlib import Path
from typing import Any, TypeVar

from smppbridge.core.callbacks import CallbackEvent, CallbackOutcome
from smppbridge.core.errors import StoreUnavailable
from smppbridge.core.history import (
    MessagePage,
    MessageQuery,
    ReceiptState,
    ReceiptView,
    TimelineEntry,
)
from smppbridge.core.idempotency import IdempotentAnswer
from smppbridge.core.message import OutboundMessage
from smppbridge.core.ports import FinalEntry, Leased, SentEntry
from smppbridge.core.records import (
    DeliveryState,
    PartRecord,
    ReceiptRecord,
    StoredMessage,
)
from smppbridge.observability.metrics import METRICS
from smppbridge.store.common import StoreHealth, settle
from smppbridge.store.sqlite import callbacks as outbox
from smppbridge.store.sqlite import history, idempotency
from smppbridge.store.sqlite.rows import (
    COLUMNS,
    INSERT_MESSAGE,
    index_parts,
    insert_receipts,
    mark_final_rows,
    mark_sent_rows,
    message_row,
    receipt_from_row,
    row_to_message,
)
from smppbridge.store.sqlite.schema import RECEIPT_LEASED, migrate

__all__ = ["SqliteStore"]

T = TypeVar("T")
#: Most operations folded into one transaction; bounds commit latency under load.
_MAX_BATCH = 2000
#: Most messages one writer operation of purge() deletes (each touches ~15 b-trees).
_PURGE_CHUNK = 100
_WRITE_LATENCY = METRICS.store_write

class _Closed(StoreUnavailable):
    pass


class SqliteStore:
    """The :class:`~smppbridge.core.ports.Store` on one SQLite file."""

    #: accept_many(claim=True) marks the rows claimed: the sender gets them in memory
    claims_on_accept = True

    def __init__(self, path: str, *, synchronous: str = "FULL") -> None:
        self.path = path
        self.synchronous = synchronous
        self._queue: queue.SimpleQueue[tuple[Callable[[sqlite3.Connection], Any],
                                             asyncio.Future[Any]] | None] = queue.SimpleQueue()
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._db: sqlite3.Connection | None = None
        self._reader: concurrent.futures.ThreadPoolExecutor | None = None
        self._rdb: sqlite3.Connection | None = None
        self.commits = 0  # transactions committed (observability, tests)
        self.health = StoreHealth("sqlite")

    @classmethod
    def from_url(cls, url: str) -> SqliteStore:
        return cls(url.removeprefix("sqlite:///"))

    def flood_state(self) -> None:
        """One node: the flood windows stay in the process (nothing to share)."""
        return

    def registry(self) -> None:
        """One node: no other node shares this file, so there is none to list."""
        return

    # --- lifecycle -------------------------------------------------------------------

    async def open(self) -> None:
        if self.path != ":memory:":
            Path(self.path).parent.mkdir(parents=True, exist_ok=True)
        self._loop = asyncio.get_running_loop()
        ready: asyncio.Future[None] = self._loop.create_future()
        self._thread = threading.Thread(target=self._run, args=(ready,), daemon=True,
                                        name="sqlite-store")
        self._thread.start()
        await ready
        if self.path != ":memory:":
            self._reader = concurrent.futures.ThreadPoolExecutor(
                max_workers=1, thread_name_prefix="sqlite-reader")

    async def close(self) -> None:
        if self._thread is None:
            return
        reader, self._reader = self._reader, None
        if reader is not None:
            await asyncio.get_running_loop().run_in_executor(reader, self._close_reader)
            reader.shutdown(wait=False)
        self._queue.put(None)
        await asyncio.to_thread(self._thread.join)
        self._thread = None

    async def ready(self) -> bool:
        """True when a write commits: a small write of the meta table through the writer
        (a store that can be read but not written — a full disk — is not ready)."""
        try:
            await self._call(lambda db: db.execute(
                "INSERT OR REPLACE INTO meta VALUES ('probe', ?)", (str(time.time()),)))
        except Exception:
            return False
        return self.health.trouble is None

    async def limit_size(self, pages: int | None) -> int:
        """Cap the file at ``pages`` pages (``PRAGMA max_page_count``; None: the
        default, no cap) and return the cap in force. Past it a write fails as on a full
        disk: an operator can keep a node from filling a shared disk, and the tests make
        a full disk with it."""
        def op(db: sqlite3.Connection) -> int:
            value = pages if pages is not None else 4294967294  # SQLite's largest
            return int(db.execute(f"PRAGMA max_page_count={int(value)}").fetchone()[0])
        return await self._call(op)

    async def page_count(self) -> int:
        """Pages the file has now (``PRAGMA page_count``)."""
        return await self._call(
            lambda db: int(db.execute("PRAGMA page_count").fetchone()[0]))

    def trouble(self) -> str | None:
        """Why writes fail now (the open episode of :class:`StoreHealth`), or None."""
        return self.health.trouble

    # --- the writer thread -----------------------------------------------------------

    def _connect(self) -> sqlite3.Connection:
        db = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
        db.execute("PRAGMA journal_mode=WAL")
        db.execute(f"PRAGMA synchronous={self.synchronous}")
        db.execute("PRAGMA busy_timeout=5000")
        db.execute("PRAGMA foreign_keys=ON")
        migrate(db)
        # Claims do not survive a restart: whatever was being sent is due again (the
        # provider's client-side id makes the resend harmless).
        db.execute("UPDATE messages SET claimed=0 WHERE state='queued' AND claimed=1")
        # Receipts leased to the last process's dispatcher are due again.
        db.execute("UPDATE receipts SET next_at=0 WHERE state='pending' AND next_at>=?",
                   (RECEIPT_LEASED,))
        # ... and so are the callbacks it was sending (same event_id: a duplicate at most).
        db.execute("UPDATE callbacks SET leased=0 WHERE leased=1")
        return db

    def _run(self, ready: asyncio.Future[None]) -> None:
        loop = self._loop
        assert loop is not None
        try:
            db = self._connect()
        except Exception as exc:
            loop.call_soon_threadsafe(settle, ready, None, exc)
            return
        self._db = db
        loop.call_soon_threadsafe(settle, ready, None, None)
        stop = False
        while not stop:
            item = self._queue.get()
            batch = []
            if item is None:
                stop = True
            else:
                batch.append(item)
            while len(batch) < _MAX_BATCH:
                try:
                    more = self._queue.get_nowait()
                except queue.Empty:
                    break
                if more is None:
                    stop = True
                    break
                batch.append(more)
            if batch:
                self._execute(db, batch)
        db.close()

    def _execute(self, db: sqlite3.Connection,
                 batch: list[tuple[Callable[[sqlite3.Connection], Any],
                                   asyncio.Future[Any]]]) -> None:
        loop = self._loop
        assert loop is not None
        started = time.monotonic()
        results: list[tuple[asyncio.Future[Any], Any, BaseException | None]]
        try:
            db.execute("BEGIN IMMEDIATE")
            try:
                # Fast path: no savepoints (they would triple the statements per submit).
                results = [(fut, op(db), None) for op, fut in batch]
            except sqlite3.OperationalError:
                raise  # the database is in trouble (full, locked, I/O): all of it fails
            except Exception:
                # Some op failed: undo the batch and run it again with a savepoint per
                # op, so that one bad op (e.g. a duplicate id) fails alone.
                db.execute("ROLLBACK")
                db.execute("BEGIN IMMEDIATE")
                results = []
                for op, fut in batch:
                    db.execute("SAVEPOINT op")
                    try:
                        results.append((fut, op(db), None))
                        db.execute("RELEASE op")
                    except sqlite3.OperationalError:
                        raise
                    except Exception as exc:  # one bad op must not sink the batch
                        db.execute("ROLLBACK TO op")
                        db.execute("RELEASE op")
                        results.append((fut, None, exc))
            db.execute("COMMIT")
        except sqlite3.Error as exc:
            # The disk is full, an I/O error, the file locked past busy_timeout...: no
            # operation of the batch is done, and each caller gets StoreUnavailable
            # (a submit is answered ESME_RMSGQFUL and retried by the ESME).
            with contextlib.suppress(sqlite3.Error):
                db.execute("ROLLBACK")
            kind, error = _unavailable(exc)
            self.health.failed(kind, str(exc), len(batch))
            results = [(fut, None, error) for _, fut in batch]
        else:
            self.commits += 1
            self.health.succeeded()
            _WRITE_LATENCY.observe(time.monotonic() - started)
        # One wake-up of the event loop for the whole batch, not one per operation.
        loop.call_soon_threadsafe(_settle_all, results)

    async def _call(self, op: Callable[[sqlite3.Connection], T]) -> T:
        if self._thread is None or self._loop is None:
            raise _Closed("store is not open")
        fut: asyncio.Future[T] = self._loop.create_future()
        self._queue.put((op, fut))
        return await fut

    # --- the reader thread -----------------------------------------------------------

    async def _read(self, op: Callable[[sqlite3.Connection], T]) -> T:
        """Run a read on the reader connection (it sees every committed write)."""
        reader = self._reader
        if reader is None:
            return await self._call(op)  # :memory: (one connection), or not open
        return await asyncio.get_running_loop().run_in_executor(reader, self._on_reader, op)

    def _on_reader(self, op: Callable[[sqlite3.Connection], T]) -> T:
        try:
            if self._rdb is None:
                db = sqlite3.connect(self.path, isolation_level=None,
                                     check_same_thread=False)
                db.execute("PRAGMA busy_timeout=5000")
                db.execute("PRAGMA query_only=ON")
                self._rdb = db
            return op(self._rdb)
        except sqlite3.OperationalError as exc:
            _, error = _unavailable(exc)
            raise error from exc

    def _close_reader(self) -> None:
        if self._rdb is not None:
            self._rdb.close()
            self._rdb = None

    # --- ids ---------------------------------------------------------------------------

    async def reserve_ids(self, count: int) -> int:
        def op(db: sqlite3.Connection) -> int:
            row = db.execute("SELECT value FROM meta WHERE key='next_id'").fetchone()
            first = int(row[0]) if row else 1
            db.execute("INSERT OR REPLACE INTO meta VALUES ('next_id', ?)", (str(first + count),))
            return first
        return await self._call(op)

    # --- parts -------------------------------------------------------------------------

    async def save_part(self, part: PartRecord) -> None:
        def op(db: sqlite3.Connection) -> None:
            db.execute("INSERT OR REPLACE INTO parts VALUES (?,?,?,?,?,?,?)",
                       (part.part_id, part.account, part.key, part.pdu, part.arrived_at,
                        part.system_type, part.interface_version))
        await self._call(op)

    async def load_parts(self) -> list[PartRecord]:
        def op(db: sqlite3.Connection) -> list[PartRecord]:
            rows = db.execute("SELECT part_id, account, key, pdu, arrived_at, system_type, "
                              "interface_version FROM parts ORDER BY arrived_at").fetchall()
            return [PartRecord(r[0], r[1], r[2], bytes(r[3]), r[4], r[5], r[6]) for r in rows]
        return await self._call(op)

    async def fail_parts(self, part_ids: Sequence[str],
                         receipts: Sequence[ReceiptRecord]) -> None:
        def op(db: sqlite3.Connection) -> None:
            db.executemany("DELETE FROM parts WHERE part_id=?", [(p,) for p in part_ids])
            insert_receipts(db, receipts)
        await self._call(op)

    # --- messages ----------------------------------------------------------------------

    async def accept(self, message: OutboundMessage, receipts: Sequence[ReceiptRecord] = (),
                     *, final_stat: str = "", final_err: int = 0) -> None:
        m = message

        def op(db: sqlite3.Connection) -> None:
            state = DeliveryState.FINAL if final_stat else DeliveryState.QUEUED
            db.execute(INSERT_MESSAGE, message_row(m, state, final_stat, final_err, False))
            if len(m.part_ids) > 1:
                index_parts(db, m)
            insert_receipts(db, receipts)
        await self._call(op)

    async def accept_mo(self, message: OutboundMessage, receipts: Sequence[ReceiptRecord],
                        callbacks: Sequence[CallbackEvent], *, stat: str,
                        held: Sequence[str] = ()) -> None:
        m = message

        def op(db: sqlite3.Connection) -> None:
            db.execute(INSERT_MESSAGE, message_row(m, DeliveryState.FINAL, stat, 0, False))
            if len(m.part_ids) > 1:
                index_parts(db, m)
            db.executemany("DELETE FROM parts WHERE part_id=?", [(p,) for p in held])
            insert_receipts(db, receipts)
            outbox.insert(db, callbacks)
        await self._call(op)

    async def accept_many(self, messages: Sequence[OutboundMessage], *,
                          claim: bool = False) -> list[Exception | None]:
        """Store queued messages in one transaction (all or none). ``claim``: they are
        claimed for this process's sender at once (handed over in memory), so ``due``
        does not return them; claims end with the process, as for ``due``."""
        def op(db: sqlite3.Connection) -> None:
            queued = DeliveryState.QUEUED
            db.executemany(INSERT_MESSAGE, [message_row(m, queued, "", 0, claim)
                                             for m in messages])
            for m in messages:
                if len(m.part_ids) > 1:
                    index_parts(db, m)
        await self._call(op)
        return [None] * len(messages)

    async def due(self, now: float, limit: int) -> list[StoredMessage]:
        """Claim and return queued messages whose time has come, oldest first; a claimed
        message is not returned again until mark_retry or a restart releases it."""
        def op(db: sqlite3.Connection) -> list[StoredMessage]:
            rows = db.execute(
                f"UPDATE messages SET claimed=1 WHERE rowid IN (SELECT rowid FROM messages "
                "INDEXED BY messages_due WHERE state='queued' AND claimed=0 AND next_at <= ? "
                f"ORDER BY next_at, rowid LIMIT ?) RETURNING {COLUMNS}", (now, limit)).fetchall()
            out = [row_to_message(r) for r in rows]
            out.sort(key=lambda m: (m.next_at, m.message.submitted_at))
            return out
        return await self._call(op)

    async def in_flight(self) -> list[StoredMessage]:
        def op(db: sqlite3.Connection) -> list[StoredMessage]:
            rows = db.execute(f"SELECT {COLUMNS} FROM messages WHERE state='sent'").fetchall()
            return [row_to_message(r) for r in rows]
        return await self._call(op)

    async def mark_sent(self, message_id: str, provider: str, provider_id: str, stat: str,
                        now: float, receipts: Sequence[ReceiptRecord] = ()) -> None:
        await self.mark_sent_many([(message_id, provider, provider_id, stat, now, receipts)])

    async def mark_sent_many(self, sent: Sequence[SentEntry], *,
                             lease: bool = False,
                             callbacks: Sequence[CallbackEvent] = ()) -> Leased:
        """:meth:`mark_sent` for several messages in one operation; each entry is
        (message_id, provider, provider_id, stat, now, receipts). ``lease``: see
        :meth:`mark_final_many`. The row is the timeline's ``sent`` entry (sent_at).
        ``callbacks``: events of messages marked sent here."""
        def op(db: sqlite3.Connection) -> Leased:
            moved = mark_sent_rows(db, [e[:5] for e in sent])
            if callbacks:
                outbox.insert(db, callbacks, moved)
            return insert_receipts(db, [r for e in sent for r in e[5]], lease=lease)
        return await self._call(op)

    async def mark_retry(self, message_id: str, next_at: float, attempts: int,
                         detail: str = "") -> None:
        """Queue a message again for ``next_at``, with a timeline entry (``detail``:
        why) at the store's clock (the call carries no time of its own). A message no
        longer queued (sent, or final) is left as it is."""
        def op(db: sqlite3.Connection) -> None:
            cur = db.execute("UPDATE messages SET next_at=?, attempts=?, claimed=0 "
                             "WHERE id=? AND state='queued'", (next_at, attempts, message_id))
            if cur.rowcount:
                db.execute("INSERT INTO history VALUES (?,?,'queued','',0,?)",
                           (message_id, time.time(), detail))
        await self._call(op)

    async def record_status(self, message_id: str, stat: str, err: int, now: float,
                            detail: str, receipts: Sequence[ReceiptRecord] = ()) -> None:
        """An intermediate status of a message not final: a timeline entry and its
        receipts; the message stays as it is. For a message final (or not stored)
        nothing is written: an ENROUTE receipt after the final one would mislead."""
        def op(db: sqlite3.Connection) -> None:
            cur = db.execute("INSERT INTO history SELECT id, ?, 'sent', ?, ?, ? FROM messages "
                             "WHERE id=? AND state!='final'",
                             (now, stat, err, detail, message_id))
            if cur.rowcount:
                insert_receipts(db, receipts)
        await self._call(op)

    async def mark_final(self, message_id: str, stat: str, err: int, now: float,
                         receipts: Sequence[ReceiptRecord] = (), provider: str = "",
                         provider_id: str = "", detail: str = "",
                         callbacks: Sequence[CallbackEvent] = ()) -> None:
        def op(db: sqlite3.Connection) -> None:
            if provider:
                cur = db.execute(
                    "UPDATE messages SET state='final', stat=?, err=?, done_at=?, "
                    "final_detail=?, provider=?, provider_id=? WHERE id=? AND state!='final'",
                    (stat, err, now, detail, provider, provider_id, message_id))
            else:
                cur = db.execute(_MARK_FINAL, (stat, err, now, detail, message_id))
            if cur.rowcount:
                insert_receipts(db, receipts)
                outbox.insert(db, callbacks)
        await self._call(op)

    async def mark_final_many(self, finals: Sequence[FinalEntry], *,
                              lease: bool = False,
                              callbacks: Sequence[CallbackEvent] = ()) -> Leased:
        """:meth:`mark_final` for several messages in one operation: each entry is
        (message_id, stat, err, done_at, receipts, detail); a message already final
        keeps its first final status, and its receipts are not added.

        ``lease``: the receipts added are leased to this process's dispatcher, which
        was handed them in memory; :meth:`receipts_for` skips them until released
        (:meth:`release_receipts`, :meth:`receipt_retry`, or the next open). Returns
        (seq, receipt) of each receipt added (empty without ``lease``)."""
        def op(db: sqlite3.Connection) -> Leased:
            ended = mark_final_rows(db, [(f[0], f[1], f[2], f[3], f[5]) for f in finals])
            receipts: list[ReceiptRecord] = []
            added: set[str] = set()
            for f in finals:  # each message's receipts once, from its first entry
                if f[0] in ended and f[0] not in added:
                    added.add(f[0])
                    receipts.extend(f[4])
            outbox.insert(db, callbacks, ended)
            return insert_receipts(db, receipts, lease=lease)
        return await self._call(op)

    async def release_receipts(self, seqs: Sequence[int]) -> None:
        """Leased receipts the dispatcher gives back: due now, for :meth:`receipts_for`."""
        await self._call(lambda db: db.executemany(
            "UPDATE receipts SET next_at=0 WHERE seq=? AND state='pending' AND next_at>=?",
            [(s, RECEIPT_LEASED) for s in seqs]))

    async def find(self, message_id: str) -> StoredMessage | None:
        def op(db: sqlite3.Connection) -> StoredMessage | None:
            row = db.execute(f"SELECT {COLUMNS} FROM messages WHERE id=?",
                             (message_id,)).fetchone()
            if row is None:
                row = db.execute(f"SELECT {COLUMNS} FROM messages WHERE id=(SELECT "
                                 "message_id FROM part_ids WHERE part_id=?)",
                                 (message_id,)).fetchone()
            return row_to_message(row) if row else None
        return await self._call(op)

    async def find_by_provider(self, provider: str, provider_id: str
                               ) -> StoredMessage | None:
        def op(db: sqlite3.Connection) -> StoredMessage | None:
            # provider_id != '': the index holds only messages sent (schema.py)
            row = db.execute(f"SELECT {COLUMNS} FROM messages WHERE provider_id=? AND "
                             "provider=? AND provider_id != ''",
                             (provider_id, provider)).fetchone()
            return row_to_message(row) if row else None
        return await self._call(op)

    # --- history -----------------------------------------------------------------------

    async def timeline(self, message_id: str) -> list[TimelineEntry]:
        """Every change of a message (found by its id or any part id), oldest first."""
        return await self._read(lambda db: history.timeline(db, message_id))

    async def receipts_of(self, message_id: str) -> list[ReceiptView]:
        """The receipts of every part of a message (of the id alone when no stored
        message has it: a part of a message never stored whole), in creation order."""
        return await self._read(lambda db: history.receipts_of(db, message_id))

    async def search(self, query: MessageQuery) -> MessagePage:
        return await self._read(lambda db: history.search(db, query))

    async def purge(self, ended_before: float, limit: int) -> int:
        """Delete up to ``limit`` final messages that ended before ``ended_before``, with
        everything they own (history.py); in writer operations of at most
        :data:`_PURGE_CHUNK` messages, so that the writes queued meanwhile go between
        them (a chunk of 100 holds the writer ~10-20 ms at 1,000,000 messages)."""
        purged = 0
        while purged < limit:
            chunk = min(_PURGE_CHUNK, limit - purged)
            n = await self._call(partial(history.purge, ended_before=ended_before,
                                         limit=chunk))
            purged += n
            if n < chunk:
                break
        return purged

    # --- receipts ----------------------------------------------------------------------

    async def add_receipts(self, receipts: Sequence[ReceiptRecord]) -> None:
        await self._call(lambda db: insert_receipts(db, receipts))

    async def receipts_for(self, account: str, now: float, limit: int
                           ) -> list[ReceiptRecord]:
        def op(db: sqlite3.Connection) -> list[ReceiptRecord]:
            rows = db.execute("SELECT seq, message_id, body, expire_at, attempts, next_at "
                              "FROM receipts WHERE "
                              "state='pending' AND account=? AND next_at<=? ORDER BY seq "
                              "LIMIT ?", (account, now, limit)).fetchall()
            return [receipt_from_row(account, mid, body, expire_at, seq=seq,
                                     attempts=attempts, next_at=next_at)
                    for seq, mid, body, expire_at, attempts, next_at in rows]
        return await self._call(op)

    async def receipt_done(self, seqs: Sequence[int], now: float,
                           state: ReceiptState = ReceiptState.DELIVERED) -> None:
        """Receipts delivered or dropped: out of the outbox, kept (for
        :meth:`receipts_of`) with ``state`` and ``now`` until their message is purged."""
        if state is ReceiptState.PENDING:
            msg = "a receipt done with is not pending"
            raise ValueError(msg)
        await self._call(lambda db: db.executemany(
            "UPDATE receipts SET state=?, done_at=? WHERE seq=? AND state='pending'",
            [(state.value, now, s) for s in seqs]))

    async def receipt_retry(self, seq: int, next_at: float, attempts: int) -> None:
        await self._call(lambda db: db.execute(
            "UPDATE receipts SET next_at=?, attempts=? WHERE seq=? AND state='pending'",
            (next_at, attempts, seq)))

    async def expire_receipts(self, now: float) -> int:
        """Receipts past their TTL: out of the outbox, kept as expired at the end of
        their TTL (as the Redis store does; ``now`` is steady time, core.clock)."""
        def op(db: sqlite3.Connection) -> int:
            return db.execute("UPDATE receipts SET state='expired', done_at=expire_at "
                              "WHERE state='pending' AND expire_at<=?", (now,)).rowcount
        return await self._call(op)

    async def accounts_with_receipts(self, now: float) -> list[str]:
        def op(db: sqlite3.Connection) -> list[str]:
            return [r[0] for r in db.execute(
                "SELECT DISTINCT account FROM receipts WHERE state='pending' AND next_at<=?",
                (now,)).fetchall()]
        return await self._call(op)

    async def count_receipts(self, account: str | None = None) -> int:
        """Receipts in the outbox (pending), of ``account`` or of all; finished ones
        are history."""
        def op(db: sqlite3.Connection) -> int:
            if account is None:
                row = db.execute("SELECT count(*) FROM receipts WHERE state='pending'")
            else:
                row = db.execute("SELECT count(*) FROM receipts INDEXED BY receipts_due "
                                 "WHERE state='pending' AND account=?", (account,))
            return int(row.fetchone()[0])
        return await self._read(op)

    # --- status callbacks -------------------------------------------------------------

    async def add_callbacks(self, events: Sequence[CallbackEvent]) -> None:
        await self._call(lambda db: outbox.insert(db, events))

    async def callbacks_due(self, now: float, limit: int) -> list[CallbackEvent]:
        """Lease events due at ``now``, the oldest of each message only
        (store/sqlite/callbacks.py)."""
        return await self._call(lambda db: outbox.lease_due(db, now, limit))

    async def callback_done(self, event: CallbackEvent, at: float,
                            outcome: CallbackOutcome = CallbackOutcome.DELIVERED,
                            detail: str = "") -> None:
        await self._call(lambda db: outbox.finish(db, event, outcome, at, detail))

    async def callback_retry(self, seq: int, next_at: float, attempts: int) -> None:
        await self._call(lambda db: outbox.reschedule(db, seq, next_at, attempts))

    async def count_callbacks(self) -> int:
        return await self._read(outbox.count)

    async def oldest_queued(self) -> float | None:
        """submitted_at of the oldest message waiting to be sent (queued: a few rows)."""
        def op(db: sqlite3.Connection) -> float | None:
            row = db.execute("SELECT min(submitted_at) FROM messages INDEXED BY "
                             "messages_due WHERE state='queued'").fetchone()
            return None if row[0] is None else float(row[0])
        return await self._read(op)

    async def count(self, state: DeliveryState) -> int:
        """Messages in ``state``; on the reader (final ones are most of the history: a
        count of them reads ~1,000,000 index entries, which must not hold the writer)."""
        def op(db: sqlite3.Connection) -> int:
            return int(db.execute("SELECT count(*) FROM messages WHERE state=?",
                                  (state.value,)).fetchone()[0])
        return await self._read(op)

    async def count_submitted(self, account: str, since: float) -> int:
        """Messages of ``account`` submitted at ``since`` or later (a range of the
        account's search index)."""
        return await self._read(lambda db: int(db.execute(
            "SELECT count(*) FROM messages INDEXED BY messages_account "
            "WHERE account=? AND submitted_at>=?", (account, since)).fetchone()[0]))

    # --- idempotency keys (store/sqlite/idempotency.py) ----------------------------------

    async def claim_idempotency(self, account: str, key: str, request_hash: str,
                                now: float, ttl: float) -> IdempotentAnswer | None:
        return await self._call(partial(idempotency.claim, account=account, key=key,
                                        request_hash=request_hash, now=now, ttl=ttl))

    async def save_idempotency(self, account: str, key: str, answer: IdempotentAnswer,
                               now: float, ttl: float) -> None:
        await self._call(partial(idempotency.save, account=account, key=key,
                                 answer=answer, now=now, ttl=ttl))

    async def release_idempotency(self, account: str, key: str) -> None:
        await self._call(partial(idempotency.release, account=account, key=key))


_MARK_FINAL = ("UPDATE messages SET state='final', stat=?, err=?, done_at=?, final_detail=? "
               "WHERE id=? AND state!='final'")


def _settle_all(results: list[tuple[asyncio.Future[Any], Any, BaseException | None]]
                ) -> None:
    for fut, value, err in results:
        settle(fut, value, err)


#: how each SQLite failure is counted (``smppbridge_store_errors_total{kind}``)
_KINDS = (("full", "disk_full"), ("disk i/o", "io_error"), ("locked", "locked"),
          ("busy", "locked"), ("readonly", "read_only"), ("read-only", "read_only"))


def _unavailable(exc: sqlite3.Error) -> tuple[str, StoreUnavailable]:
    """The kind of a failure that made a whole transaction fail, and the error callers
    get for it."""
    text = str(exc).lower()
    kind = next((k for needle, k in _KINDS if needle in text), "other")
    error = StoreUnavailable(f"sqlite: {exc}")
    error.__cause__ = exc
    return kind, error
