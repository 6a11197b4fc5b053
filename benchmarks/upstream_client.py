"""Which ESME client for the smpp provider: aiosmpplib or a session on our own codec.

Starts the bare-echo SMSC (``python -m smppbridge.bench.echo``, raw engine: a
submit_sm_resp and a DELIVRD receipt deliver_sm with receipted_message_id and
message_state TLVs for every submit_sm) in its own process, then sends ``--messages``
submit_sm through each client, one bind, and prints submit/s (first submit → last
submit_sm_resp), receipts/s and whether the client hands over the receipt TLVs.

    .venv/bin/python benchmarks/upstream_client.py --messages 20000 --window 100

aiosmpplib has no window of its own (it writes as fast as its broker yields and
``drain`` allows); the script bounds it to ``--window`` outstanding submits with a
semaphore released by its hook, so both clients run the same window.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import subprocess
import sys
import time
from typing import Any

from smppbridge.smpp import client as CL
from smppbridge.smpp import pdu as P
from smppbridge.smpp.constants import Tag
from smppbridge.smpp.receipts import read_receipt


def _free_port() -> int:
    import socket
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def ours(port: int, total: int, window: int) -> dict[str, Any]:
    loop = asyncio.get_running_loop()
    done = loop.create_future()
    state = {"acked": 0, "receipts": 0, "tlv": False, "sent": 0, "first": 0.0, "last": 0.0}

    class Proto(asyncio.Protocol):
        def connection_made(self, transport: asyncio.BaseTransport) -> None:
            assert isinstance(transport, asyncio.Transport)
            self.t = transport
            self.s = CL.EsmeSession(CL.ClientConfig(window=window), time.monotonic())
            self.s.bind(CL.BindKind.TRANSCEIVER, system_id="bench", password="bench",
                        now=time.monotonic())
            self.t.write(self.s.data_to_send())

        def fill(self) -> None:
            now = time.monotonic()
            while self.s.can_submit and state["sent"] < total:
                state["sent"] += 1
                self.s.submit(P.SubmitSm(source_addr="Bench", destination_addr=
                                         f"79{state['sent']:09d}",
                                         short_message=b"upstream bench",
                                         registered_delivery=1), now)

        def data_received(self, data: bytes) -> None:
            now = time.monotonic()
            self.s.receive_data(data, now)
            while (ev := self.s.next_event()) is not None:
                if isinstance(ev, CL.Bound):
                    state["first"] = time.perf_counter()
                elif isinstance(ev, CL.SubmitAnswered):
                    state["acked"] += 1
                    state["last"] = time.perf_counter()
                elif isinstance(ev, P.DeliverSm):
                    r = read_receipt(ev)
                    state["receipts"] += r is not None
                    state["tlv"] = state["tlv"] or ev.tlv(Tag.RECEIPTED_MESSAGE_ID) is not None
                    self.s.answer_deliver(ev)
            self.fill()
            self.t.write(self.s.data_to_send())
            if state["receipts"] >= total and not done.done():
                done.set_result(None)

    transport, _ = await loop.create_connection(Proto, "127.0.0.1", port)
    try:
        await asyncio.wait_for(done, 120)
    finally:
        transport.close()
    elapsed = state["last"] - state["first"]
    return {"client": "own codec (smpp/client.py)", "submit_per_s": state["acked"] / elapsed,
            "receipts": state["receipts"], "receipt_tlvs": state["tlv"]}


async def aiosmpp(port: int, total: int, window: int) -> dict[str, Any]:
    import logging

    import aiosmpplib
    from aiosmpplib.hook import AbstractHook

    slots = asyncio.Semaphore(window)
    state = {"acked": 0, "receipts": 0, "tlv": False, "first": 0.0, "last": 0.0}
    done = asyncio.get_running_loop().create_future()

    class Hook(AbstractHook):
        async def sending(self, smpp_message: Any, pdu: bytes, client_id: str) -> None:
            if not state["first"] and isinstance(smpp_message, aiosmpplib.SubmitSm):
                state["first"] = time.perf_counter()

        async def received(self, smpp_message: Any, pdu: bytes, client_id: str) -> None:
            if isinstance(smpp_message, aiosmpplib.SubmitSmResp):
                state["acked"] += 1
                state["last"] = time.perf_counter()
                slots.release()
            elif isinstance(smpp_message, aiosmpplib.DeliverSm):
                state["receipts"] += smpp_message.is_receipt()
                params = getattr(smpp_message, "optional_params", None) or []
                state["tlv"] = state["tlv"] or any(
                    getattr(p, "tag", None) == Tag.RECEIPTED_MESSAGE_ID for p in params)
                if state["receipts"] >= total and not done.done():
                    done.set_result(None)

        async def send_error(self, smpp_message: Any, error: Exception, client_id: str) -> None:
            slots.release()

    broker = aiosmpplib.broker.SimpleBroker(maxsize=window * 2)
    esme = aiosmpplib.ESME("127.0.0.1", port, "bench", "bench", hook=Hook(), broker=broker,
                           log_level=logging.WARNING)
    runner = asyncio.create_task(esme.start())
    try:
        for i in range(total):
            await slots.acquire()
            await broker.enqueue(aiosmpplib.SubmitSm(
                short_message="upstream bench", source=aiosmpplib.PhoneNumber("Bench"),
                destination=aiosmpplib.PhoneNumber(f"79{i:09d}"), log_id=str(i)))
        await asyncio.wait_for(done, 120)
    finally:
        with contextlib.suppress(Exception):
            await asyncio.wait_for(esme.stop(), 5)
        runner.cancel()
        with contextlib.suppress(BaseException):
            await runner
    elapsed = state["last"] - state["first"]
    return {"client": f"aiosmpplib {aiosmpplib.__dict__.get('__version__', '0.7.4')}",
            "submit_per_s": state["acked"] / elapsed, "receipts": state["receipts"],
            "receipt_tlvs": state["tlv"]}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--messages", type=int, default=20_000)
    ap.add_argument("--window", type=int, default=100)
    args = ap.parse_args()
    port = _free_port()
    echo = subprocess.Popen([sys.executable, "-m", "smppbridge.bench.echo", "--listen",
                             f"127.0.0.1:{port}"])
    try:
        time.sleep(1.0)  # the echo process starts listening (a script, not a test)
        for run in (ours, aiosmpp):
            r = asyncio.run(run(port, args.messages, args.window))
            print(f"{r['client']:32} {r['submit_per_s']:9.0f} submit/s  "
                  f"receipts {r['receipts']}/{args.messages}  "
                  f"receipt TLVs readable: {r['receipt_tlvs']}", flush=True)
    finally:
        echo.terminate()
        echo.wait(10)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
