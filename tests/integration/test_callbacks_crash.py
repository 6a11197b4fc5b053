"""kill -9 of a real ``smppbridge serve`` with status callbacks in flight (the receiver
holds them unanswered): after a restart every event is delivered, a duplicate with the
same event_id at most — on SQLite and on Redis (where the dead node's leases run out
and the restarted node takes them over)."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import redis.asyncio as aioredis

from tests.integration.callback_receiver import CallbackReceiver
from tests.integration.cluster import Bridge, Esme, free_port

SECRET = "s3cret"
MESSAGES = 20
REDIS_URL = "redis://127.0.0.1:6379/15"


def _config(store_url: str, smpp_port: int, receiver: CallbackReceiver) -> str:
    return f"""
[smpp]
listen = "127.0.0.1:{smpp_port}"
[http]
listen = ""
callback_allow_networks = ["127.0.0.0/8"]
[store]
url = "{store_url}"
[log]
level = "warning"
format = "json"
[[accounts]]
system_id = "http1"
password = "pw"
providers = ["sim"]
receipts = "http"
receipt_url = "{receiver.url('cb')}"
callback_secret = "{SECRET}"
[[providers]]
name = "sim"
type = "simulator"
poll_interval = 0.1
simulator = {{ deliver_after = 0.2 }}
"""


@pytest.fixture(params=["sqlite", "redis"])
async def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[str]:
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path}/crash.db"
        return
    prefix = f"test:{uuid.uuid4().hex}:"
    # a short lease: the restarted node (a new node id) takes the dead one's over soon
    yield f"{REDIS_URL}?prefix={prefix}&callback_lease=3"
    raw = aioredis.Redis.from_url(REDIS_URL, decode_responses=True)
    keys = [k async for k in raw.scan_iter(match=prefix + "*", count=1000)]
    if keys:
        await raw.delete(*keys)
    await raw.aclose()


async def test_kill9_with_callbacks_in_flight_loses_none(
        tmp_path: Path, receiver: CallbackReceiver, store_url: str) -> None:
    receiver.set_mode("hang")
    port = free_port()
    bridge = Bridge(tmp_path, "bridge", _config(store_url, port, receiver), port)
    await bridge.start()
    esme = Esme()
    try:
        assert await esme.bind(port, "http1", "pw") == 0
        resps = await asyncio.gather(*(esme.submit(f"7900000{i:04d}", f"m{i}", rd=0)
                                       for i in range(MESSAGES)))
        ids = {r.message_id for r in resps}  # type: ignore[attr-defined]
        assert len(ids) == MESSAGES
        # callbacks reach the receiver, which holds them: in flight when killed
        assert await receiver.wait(lambda r: r.arrivals >= 8, 20)
        bridge.kill()
        await esme.close()
        # What the dead process had in flight is answered now but counts for nothing:
        # the restarted bridge must deliver every event itself.
        receiver.epoch = 1
        receiver.set_mode("ok")
        await bridge.start()

        def after(c: object) -> bool:
            return getattr(c, "epoch", 0) == 1

        def all_in(r: CallbackReceiver) -> bool:
            return ids <= {c.fields["message_id"] for c in r.delivered(after)}

        assert await receiver.wait(all_in, 60), bridge.log.read_text()[-2000:]
        event_ids: dict[str, set[str]] = {}
        for c in receiver.delivered():
            event_ids.setdefault(c.fields["message_id"], set()).add(c.fields["event_id"])
        assert all(len(v) == 1 for v in event_ids.values()), "a message's final event twice"
        assert all(c.signed for c in receiver.calls)
        assert all(c.fields["status"] == "delivered" for c in receiver.delivered())
        held = {c.fields["event_id"] for c in receiver.delivered(lambda c: c.epoch == 0)}
        assert len(held) >= 8  # in flight at the kill, and delivered again since
        assert held <= {c.fields["event_id"] for c in receiver.delivered(after)}
    finally:
        await esme.close()
        await asyncio.to_thread(bridge.stop)
