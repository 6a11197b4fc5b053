"""One ESME connection on asyncio: moves bytes between the socket and the sans-IO
session, and hands decided-elsewhere work (binds, submits) to the server and handler.

Size: over 500 lines because each request kind (bind, submit, submit_multi, data_sm,
query, cancel, deliver_sm responses) needs its few lines of glue here.

It uses ``asyncio.Protocol`` rather than streams: ``data_received`` feeds the session
directly, responses are written once per loop turn (many submit_sm_resp in one
``write``), and ``pause_writing`` from the transport stops reading a peer that does not
read its responses (back-pressure, memory bounded by the window).
"""

from __future__ import annotations

import asyncio
import contextvars
import dataclasses
import itertools
import time
from typing import TYPE_CHECKING, Any, Protocol, cast

import structlog

from smppbridge.core.errors import StoreUnavailable
from smppbridge.core.session import BindType, SessionContext, SubmitResult
from smppbridge.observability.metrics import METRICS
from smppbridge.smpp import pdu as P
from smppbridge.smpp.constants import CommandStatus
from smppbridge.smpp.errors import LocalProtocolError
from smppbridge.smpp.session import NEED_DATA, Closed, ResponseTimeout, SmscSession

if TYPE_CHECKING:
    from smppbridge.core.accounts import Account
    from smppbridge.core.ports import SubmitHandler
    from smppbridge.server.admission import Admission
    from smppbridge.server.settings import SmppConfig

__all__ = ["SmppConnection"]

#: bind numbers of this process, from 1
_BIND_IDS = itertools.count(1)

_S = CommandStatus
_BIND_TYPES: dict[type[P.Pdu], BindType] = {
    P.BindTransmitter: BindType.TRANSMITTER,
    P.BindReceiver: BindType.RECEIVER,
    P.BindTransceiver: BindType.TRANSCEIVER,
}
_log = structlog.get_logger("smppbridge.server")


class ConnectionHost(Protocol):
    """What a connection needs of the server that accepted it (the listener)."""

    system_id: str
    settings: SmppConfig
    handler: SubmitHandler
    admission: Admission

    @property
    def stopping(self) -> bool: ...

    def admit(self, conn: SmppConnection) -> bool: ...

    def forget(self, conn: SmppConnection) -> None: ...

    def register_bind(self, conn: SmppConnection) -> None: ...


class SmppConnection(asyncio.Protocol):
    """asyncio glue for one :class:`SmscSession`."""

    def __init__(self, server: ConnectionHost, *, tls: bool = False) -> None:
        self.server = server
        self.tls = tls
        self.loop = asyncio.get_running_loop()
        self.session: SmscSession | None = None
        self.transport: asyncio.Transport | None = None
        self.ctx: SessionContext | None = None
        self.peer = ("", 0)
        self.log: Any = _log
        self._flush_scheduled = False
        self._timer: asyncio.TimerHandle | None = None
        self._timer_at: float | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self._waiters: dict[int, asyncio.Future[P.Pdu]] = {}
        self._admitted = False
        self.closed = asyncio.Event()
        #: the bind's number in this process (the operator API's id); 0 until bound
        self.bind_id = 0
        #: wall time of the bind
        self.bound_at = 0.0
        #: message-carrying requests received (submit_sm, data_sm, submit_multi)
        self.submitted = 0
        #: structlog context (peer, system_id, bind type) for every task of this
        #: connection, so events logged deeper in the pipeline carry it too
        self._log_context = contextvars.copy_context()
        #: PDUs seen since the last flush, by (direction, command_id, status): the
        #: counters are bumped once per loop turn, not per PDU (a locked inc per PDU,
        #: four per message with its receipt, was ~2 % of a node's CPU)
        self._pdu_counts: dict[tuple[str, int, int], int] = {}

    # --- asyncio.Protocol ----------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports implement the interface without subclassing it.
        self.transport = cast("asyncio.Transport", transport)
        transport = self.transport
        peer = transport.get_extra_info("peername") or ("", 0)
        self.peer = (str(peer[0]), int(peer[1]))
        self.log = _log.bind(peer=f"{self.peer[0]}:{self.peer[1]}", tls=self.tls)
        self._log_context.run(structlog.contextvars.bind_contextvars,
                              peer=f"{self.peer[0]}:{self.peer[1]}")
        if not self.server.admit(self):
            self.log.warning("connection.refused", reason="connection limit")
            self.closed.set()
            transport.abort()
            return
        self._admitted = True
        cfg = self.server.settings
        transport.set_write_buffer_limits(high=cfg.write_buffer_high)
        self.session = SmscSession(cfg.session_config(), self.loop.time())
        self.session.observer = self._count_pdu
        self.log.debug("connection.opened")
        self._arm_timer()

    def data_received(self, data: bytes) -> None:
        session = self.session
        if session is None:
            return
        session.receive_data(data, self.loop.time())
        self._process()

    def eof_received(self) -> bool | None:
        return None  # close our side too

    def connection_lost(self, exc: Exception | None) -> None:
        self._publish_counts()
        if self._timer:
            self._timer.cancel()
        if self.session is not None and not self.session.closed:
            self.session.close("connection lost")
        for fut in self._waiters.values():
            if not fut.done():
                fut.set_exception(ConnectionError("SMPP connection lost"))
        self._waiters.clear()
        for task in self._tasks:
            task.cancel()
        if self._admitted:
            self.server.forget(self)
            reason = self.session.close_reason if self.session else "refused"
            self.log.info("connection.closed", reason=reason)
        self.closed.set()

    def pause_writing(self) -> None:
        # The peer is not reading our responses: stop reading its requests until it
        # catches up (uvicorn flow_control.py). Memory stays bounded by the window.
        if self.transport is not None:
            self.transport.pause_reading()

    def resume_writing(self) -> None:
        if self.transport is not None and not self.transport.is_closing():
            self.transport.resume_reading()

    # --- events --------------------------------------------------------------------

    def _process(self) -> None:
        session = self.session
        assert session is not None
        #: submit_sm of this read that passed the throttle: handled as one batch
        submits: list[P.SubmitSm] = []
        while True:
            event = session.next_event()
            if event is NEED_DATA:
                break
            if type(event) is P.SubmitSm:
                if self._admit_submit(event, P.SubmitSmResp):
                    submits.append(event)
            elif isinstance(event, P.DataSm):
                if self._admit_submit(event, P.DataSmResp):
                    self._spawn(self._submit(event, P.DataSmResp))
            elif isinstance(event, Closed):
                self._on_closed(event)
            elif isinstance(event, P.BindTransmitter | P.BindReceiver | P.BindTransceiver):
                self._spawn(self._bind(event))
            elif isinstance(event, P.SubmitMulti):
                self._spawn(self._submit_multi(event))
            elif isinstance(event, P.QuerySm):
                self._spawn(self._query(event))
            elif isinstance(event, P.CancelSm):
                self._spawn(self._cancel(event))
            elif isinstance(event, P.ReplaceSm):
                # Replacing a stored message is not offered: it would race the provider
                # send. Documented in docs/smpp.md (PDUs).
                self._respond(P.ReplaceSmResp(sequence_number=event.sequence_number,
                                              command_status=_S.ESME_RREPLACEFAIL))
            elif isinstance(event, ResponseTimeout):
                fut = self._waiters.pop(event.request.sequence_number, None)
                if fut is not None and not fut.done():
                    fut.set_exception(TimeoutError("no response within response_timeout"))
            elif isinstance(event, P.Pdu) and event.is_response:
                fut = self._waiters.pop(event.sequence_number, None)
                if fut is not None and not fut.done():
                    fut.set_result(event)
        if submits:
            self.submitted += len(submits)
            self._spawn(self._submit_batch(submits))
        self._flush_soon()
        self._arm_timer()

    def _on_closed(self, event: Closed) -> None:
        self.log.debug("session.closed", reason=event.reason)
        self._flush()
        if self.transport is not None:
            self.transport.close()

    def _spawn(self, coro: Any) -> None:
        task = self.loop.create_task(coro, context=self._log_context)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def _respond(self, pdu: P.Pdu, *, arm: bool = True) -> None:
        session = self.session
        if session is None or session.closed:
            return  # the ESME went away; nothing to answer
        try:
            session.send(pdu, self.loop.time())
        except LocalProtocolError as exc:
            self.log.error("response.invalid", error=str(exc), command=pdu.command_id.name)
            resp_cls = type(pdu)
            session.send(resp_cls(sequence_number=pdu.sequence_number,
                                  command_status=_S.ESME_RSYSERR), self.loop.time())
        self._flush_soon()
        # A response can change the next deadline (a bind moves OPEN's bind deadline to
        # the bound state's probe and inactivity deadlines).
        if arm:
            self._arm_timer()

    # --- bind ----------------------------------------------------------------------

    async def _bind(self, pdu: P.BindTransmitter | P.BindReceiver | P.BindTransceiver) -> None:
        resp_cls = P.RESPONSE_CLASS[type(pdu)]
        bind_type = _BIND_TYPES[type(pdu)]
        status, account = await self.server.admission.authenticate(pdu, self.peer[0])
        if status != _S.ESME_ROK or account is None or self.session is None \
                or self.session.closed:
            # An unknown system_id is not logged: an ESME that swapped its fields would
            # put its password there.
            known = self.server.admission.knows(pdu.system_id)
            self.log.info("bind.refused", system_id=pdu.system_id if known else None,
                          bind_type=bind_type.value, status=f"0x{status:08X}")
            self._respond(resp_cls(sequence_number=pdu.sequence_number, command_status=status))
            return
        self.bind_id = next(_BIND_IDS)
        self.bound_at = time.time()
        self.ctx = SessionContext(
            session_id=self.bind_id, account=account, bind_type=bind_type,
            system_type=pdu.system_type, interface_version=pdu.interface_version,
            peer=f"{self.peer[0]}:{self.peer[1]}")
        window = account.window or self.server.settings.window
        self.session.config = self.server.settings.session_config(window)
        self.server.register_bind(self)
        self.log = self.log.bind(system_id=account.system_id, bind_type=bind_type.value)
        # This task runs in the connection's log context: bind into it directly.
        structlog.contextvars.bind_contextvars(system_id=account.system_id,
                                               bind_type=bind_type.value)
        self._respond(resp_cls(sequence_number=pdu.sequence_number,  # type: ignore[call-arg]
                               system_id=self.server.system_id))
        self.log.info("bind.accepted", interface_version=f"0x{pdu.interface_version:02X}",
                      system_type=pdu.system_type)

    def update_account(self, account: Account) -> None:
        """Config reload: the bind keeps going under the account's new settings."""
        if self.ctx is not None:
            self.ctx = dataclasses.replace(self.ctx, account=account)

    # --- message requests ------------------------------------------------------------

    def _throttled(self) -> bool:
        assert self.ctx is not None
        return not self.server.admission.take_token(self.ctx.account.system_id,
                                                    self.loop.time())

    def _admit_submit(self, pdu: P.SubmitSm | P.DataSm,
                      resp_cls: type[P.SubmitSmResp] | type[P.DataSmResp]) -> bool:
        """False when the request was answered at once (stopping, throttled)."""
        if self.server.stopping:
            self._respond(resp_cls(sequence_number=pdu.sequence_number,
                                   command_status=_S.ESME_RSYSERR))
            return False
        if self._throttled():
            assert self.ctx is not None
            METRICS.submit(self.ctx.system_id, _S.ESME_RTHROTTLED).inc()
            self._respond(resp_cls(sequence_number=pdu.sequence_number,
                                   command_status=_S.ESME_RTHROTTLED))
            return False
        return True

    async def _submit_batch(self, pdus: list[P.SubmitSm]) -> None:
        """Every submit_sm of one read: one call into the pipeline (one store
        transaction for the single-part ones), answers written together."""
        assert self.ctx is not None
        ctx = self.ctx
        started = self.loop.time()
        results = [self._result(r) for r in await self.server.handler.submit_many(ctx, pdus)]
        elapsed = self.loop.time() - started
        observe = METRICS.submit_latency.observe
        accepted = 0
        for pdu, result in zip(pdus, results, strict=True):
            observe(elapsed)
            if result.ok:
                accepted += 1
            else:
                METRICS.submit(ctx.system_id, result.status).inc()
                self.log.debug("submit.refused", status=f"0x{result.status:08X}",
                               destination=pdu.destination_addr)
            self._respond(P.SubmitSmResp(sequence_number=pdu.sequence_number,
                                         command_status=result.status,
                                         message_id=result.message_id if result.ok else ""),
                          arm=False)
        if accepted:
            METRICS.submit(ctx.system_id, _S.ESME_ROK).inc(accepted)
        self._arm_timer()

    async def _handle_submit(self, pdu: P.SubmitSm) -> SubmitResult:
        assert self.ctx is not None
        try:
            return await self.server.handler.submit(self.ctx, pdu)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            return self._result(exc)

    def _result(self, outcome: SubmitResult | Exception) -> SubmitResult:
        """The answer to a submit whose handling returned ``outcome``."""
        if isinstance(outcome, SubmitResult):
            return outcome
        if isinstance(outcome, StoreUnavailable):
            # Temporary: peers retry RMSGQFUL as they retry RTHROTTLED (docs/smpp.md).
            self.log.debug("submit.store_unavailable")
            return SubmitResult(outcome.status)
        self.log.error("submit.failed", exc_info=outcome)
        return SubmitResult(_S.ESME_RSYSERR)

    async def _submit(self, pdu: P.SubmitSm | P.DataSm,
                      resp_cls: type[P.SubmitSmResp] | type[P.DataSmResp]) -> None:
        self.submitted += 1
        started = self.loop.time()
        sm = pdu if isinstance(pdu, P.SubmitSm) else _data_sm_as_submit(pdu)
        result = await self._handle_submit(sm)
        assert self.ctx is not None
        METRICS.submit(self.ctx.system_id, result.status).inc()
        METRICS.submit_latency.observe(self.loop.time() - started)
        if not result.ok:
            self.log.debug("submit.refused", status=f"0x{result.status:08X}",
                           destination=sm.destination_addr)
        self._respond(resp_cls(sequence_number=pdu.sequence_number,
                               command_status=result.status,
                               message_id=result.message_id if result.ok else ""))

    async def _submit_multi(self, pdu: P.SubmitMulti) -> None:
        self.submitted += 1
        if self.server.stopping or self._throttled():
            status = _S.ESME_RSYSERR if self.server.stopping else _S.ESME_RTHROTTLED
            self._respond(P.SubmitMultiResp(sequence_number=pdu.sequence_number,
                                            command_status=status))
            return
        assert self.ctx is not None
        smes = [d for d in pdu.dest_addresses if d.dest_flag == 1]
        # Every destination at once: their store writes share a group commit.
        results = await asyncio.gather(*(self._handle_submit(_multi_as_submit(pdu, d))
                                         for d in smes))
        first_id = next((r.message_id for r in results if r.ok), "")
        failures = [P.UnsuccessSme(d.dest_addr_ton, d.dest_addr_npi, d.destination_addr,
                                   r.status) for d, r in zip(smes, results, strict=True)
                    if not r.ok]
        for r in results:
            METRICS.submit(self.ctx.system_id, r.status).inc()
        # We keep no distribution lists (SMPP 3.4 §4.5.1: dest_flag 2). The name is
        # echoed only when it can be encoded back (ASCII, within its 21-octet field).
        failures += [P.UnsuccessSme(0, 0, d.dl_name if _echoable(d.dl_name) else "",
                                    _S.ESME_RINVDLNAME)
                     for d in pdu.dest_addresses if d.dest_flag != 1]
        self._respond(P.SubmitMultiResp(sequence_number=pdu.sequence_number,
                                        message_id=first_id, unsuccess_smes=tuple(failures)))

    async def _query(self, pdu: P.QuerySm) -> None:
        assert self.ctx is not None
        r = await self.server.handler.query(self.ctx, pdu.message_id, pdu.source_addr)
        if r.status:
            self._respond(P.QuerySmResp(sequence_number=pdu.sequence_number,
                                        command_status=r.status))
            return
        self._respond(P.QuerySmResp(sequence_number=pdu.sequence_number,
                                    message_id=pdu.message_id, final_date=r.final_date,
                                    message_state=r.message_state, error_code=r.error_code))

    async def _cancel(self, pdu: P.CancelSm) -> None:
        assert self.ctx is not None
        status = await self.server.handler.cancel(self.ctx, pdu.message_id, pdu.source_addr)
        self._respond(P.CancelSmResp(sequence_number=pdu.sequence_number,
                                     command_status=status))

    # --- our requests ----------------------------------------------------------------

    def send_request(self, pdu: P.Pdu) -> asyncio.Future[P.Pdu]:
        """Send a request (deliver_sm) and return a future for its response.

        The future fails with TimeoutError after the response timer and with
        ConnectionError when the link drops (asyncpg's waiter pattern).
        """
        session = self.session
        fut: asyncio.Future[P.Pdu] = self.loop.create_future()
        if session is None or session.closed:
            fut.set_exception(ConnectionError("SMPP connection closed"))
            return fut
        seq = session.send(pdu, self.loop.time())
        self._waiters[seq] = fut
        self._flush_soon()
        self._arm_timer()
        return fut

    @property
    def interface_version(self) -> int:
        return self.ctx.interface_version if self.ctx is not None else 0x34

    @property
    def window(self) -> int:
        return self.session.config.window if self.session is not None else 1

    def start_unbind(self) -> None:
        """Graceful shutdown: ask the ESME to unbind."""
        if self.session is not None and not self.session.closed:
            self.session.start_unbind(self.loop.time())
            self._process()

    def disconnect(self, grace: float) -> None:
        """An operator's disconnect: send unbind; the session ends at the ESME's
        unbind_resp, or after ``grace`` seconds when it does not answer (many ESMEs
        never do)."""
        self.start_unbind()
        self.loop.call_later(grace, self._close_now)

    def _close_now(self) -> None:
        if self.transport is not None and not self.transport.is_closing():
            self.log.info("connection.disconnected", reason="unbind not answered")
            self.transport.close()

    def abort(self) -> None:
        if self.transport is not None:
            self.transport.abort()

    async def drain(self) -> None:
        """Wait until every request received so far has been answered."""
        while self._tasks:
            await asyncio.gather(*list(self._tasks), return_exceptions=True)
        self._flush()

    # --- writing and timers ----------------------------------------------------------

    def _flush_soon(self) -> None:
        if not self._flush_scheduled:
            self._flush_scheduled = True
            self.loop.call_soon(self._flush)

    def _count_pdu(self, direction: str, command_id: int, status: int) -> None:
        key = (direction, command_id, status)
        counts = self._pdu_counts
        counts[key] = counts.get(key, 0) + 1

    def _publish_counts(self) -> None:
        counts = self._pdu_counts
        if counts:
            for (direction, command_id, status), n in counts.items():
                METRICS.pdu(direction, command_id, status).inc(n)
            counts.clear()

    def _flush(self) -> None:
        self._flush_scheduled = False
        self._publish_counts()
        if self.session is None or self.transport is None or self.transport.is_closing():
            return
        data = self.session.data_to_send()
        if data:
            self.transport.write(data)

    def _arm_timer(self) -> None:
        session = self.session
        if session is None:
            return
        when = session.get_timer()
        if when is None:
            return
        # Deadlines only move later as traffic arrives, so a timer armed for an earlier
        # deadline stays valid; it re-arms itself when it fires early.
        if self._timer_at is not None and self._timer_at <= when:
            return
        if self._timer:
            self._timer.cancel()
        self._timer_at = when
        self._timer = self.loop.call_at(when, self._on_timer)

    def _on_timer(self) -> None:
        self._timer = None
        self._timer_at = None
        session = self.session
        if session is None or session.closed:
            return
        session.handle_timer(self.loop.time())
        self._process()


#: dest_address / unsuccess_sme addresses are C-octet strings of 21 octets (§4.5.1).
_MAX_ADDRESS = 20


def _echoable(value: str) -> bool:
    return value.isascii() and len(value) <= _MAX_ADDRESS


def _data_sm_as_submit(pdu: P.DataSm) -> P.SubmitSm:
    """data_sm carries the text in message_payload; the pipeline sees it as submit_sm."""
    return P.SubmitSm(
        sequence_number=pdu.sequence_number, tlvs=pdu.tlvs, service_type=pdu.service_type,
        source_addr_ton=pdu.source_addr_ton, source_addr_npi=pdu.source_addr_npi,
        source_addr=pdu.source_addr, dest_addr_ton=pdu.dest_addr_ton,
        dest_addr_npi=pdu.dest_addr_npi, destination_addr=pdu.destination_addr,
        esm_class=pdu.esm_class, registered_delivery=pdu.registered_delivery,
        data_coding=pdu.data_coding)


def _multi_as_submit(pdu: P.SubmitMulti, dest: P.DestAddress) -> P.SubmitSm:
    return P.SubmitSm(
        sequence_number=pdu.sequence_number, tlvs=pdu.tlvs, service_type=pdu.service_type,
        source_addr_ton=pdu.source_addr_ton, source_addr_npi=pdu.source_addr_npi,
        source_addr=pdu.source_addr, dest_addr_ton=dest.dest_addr_ton,
        dest_addr_npi=dest.dest_addr_npi, destination_addr=dest.destination_addr,
        esm_class=pdu.esm_class, protocol_id=pdu.protocol_id, priority_flag=pdu.priority_flag,
        schedule_delivery_time=pdu.schedule_delivery_time,
        validity_period=pdu.validity_period, registered_delivery=pdu.registered_delivery,
        replace_if_present_flag=pdu.replace_if_present_flag, data_coding=pdu.data_coding,
        sm_default_msg_id=pdu.sm_default_msg_id, short_message=pdu.short_message)


