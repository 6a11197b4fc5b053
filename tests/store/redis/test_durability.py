"""The Redis store checks Redis's persistence when it opens: ``appendonly yes`` with
``appendfsync always`` or ``everysec`` (docs/cluster.md, Durability) sets
``smppbridge_store_durable{store="redis"}`` to 1 and logs nothing; anything else sets 0
and logs one ``store.redis_not_durable`` warning with what it found and what the docs
prescribe; a Redis that refuses ``CONFIG`` (renamed away, as managed services do) sets
-1 and warns once that it could not check. Each case runs on a private redis-server
started with those settings (the default test Redis is not touched)."""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import AsyncIterator, Awaitable, Callable, MutableMapping
from pathlib import Path
from typing import Any

import pytest
from structlog.testing import capture_logs

from smppbridge.observability.metrics import METRICS
from smppbridge.store.redis.store import RedisStore
from tests.integration.cluster import free_port, stop, wait_port

#: Starts a private redis-server with these extra arguments and returns its URL.
RedisWith = Callable[..., Awaitable[str]]

_DOCS = "docs/cluster.md#durability-redis-persistence-settings"


@pytest.fixture
async def redis_with(tmp_path: Path) -> AsyncIterator[RedisWith]:
    """Private redis-servers (on free ports, in the test's directory), each started with
    the arguments given; all stopped at the end."""
    exe = shutil.which("redis-server")
    if exe is None:
        pytest.fail("redis-server is not on PATH (these tests start private ones)",
                    pytrace=False)
    procs: list[subprocess.Popen[bytes]] = []

    async def start(*args: str) -> str:
        port = free_port()
        where = tmp_path / f"redis-{port}"
        where.mkdir()
        log = where / "redis.log"
        log.touch()
        proc = subprocess.Popen(
            [exe, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--dir",
             str(where), "--logfile", str(log), *args],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        procs.append(proc)
        await wait_port(port, proc, log)
        return f"redis://127.0.0.1:{port}/0"

    yield start
    for proc in procs:
        stop(proc)


async def _open(url: str) -> tuple[RedisStore, list[MutableMapping[str, Any]]]:
    """Open a store on ``url``; its durability warnings."""
    store = RedisStore(url, prefix="durability:", node_id="n1")
    with capture_logs() as logs:
        await store.open()
    return store, [e for e in logs if e["event"] == "store.redis_not_durable"]


def _gauge() -> float | None:
    return METRICS.registry.get_sample_value("smppbridge_store_durable", {"store": "redis"})


@pytest.mark.parametrize("fsync", ["always", "everysec"])
async def test_the_documented_settings_are_durable(redis_with: RedisWith, fsync: str) -> None:
    """AOF with appendfsync always or everysec: gauge 1, no warning."""
    store, warnings = await _open(await redis_with("--appendonly", "yes",
                                                   "--appendfsync", fsync))
    try:
        assert warnings == []
        assert _gauge() == 1
    finally:
        await store.close()


@pytest.mark.parametrize(("args", "found"), [
    (("--appendonly", "no"), "appendonly no, appendfsync everysec"),
    (("--appendonly", "yes", "--appendfsync", "no"), "appendonly yes, appendfsync no"),
])
async def test_other_settings_give_one_warning_and_gauge_0(
        redis_with: RedisWith, args: tuple[str, ...], found: str) -> None:
    """No AOF, or an AOF that Redis leaves to the OS to flush: one warning naming what
    was found and what the docs prescribe, gauge 0; the store works all the same."""
    store, warnings = await _open(await redis_with(*args))
    try:
        assert len(warnings) == 1
        (warning,) = warnings
        assert warning["log_level"] == "warning"
        assert warning["found"] == found
        assert warning["prescribed"].startswith("appendonly yes, appendfsync always")
        assert warning["docs"] == _DOCS
        assert _gauge() == 0
        assert await store.ready()
    finally:
        await store.close()


async def test_a_redis_refusing_config_could_not_be_checked(redis_with: RedisWith) -> None:
    """CONFIG renamed away (a managed Redis): one warning that it could not check,
    gauge -1, and the store opens and works."""
    store, warnings = await _open(await redis_with("--appendonly", "yes",
                                                   "--rename-command", "CONFIG", ""))
    try:
        assert len(warnings) == 1
        assert warnings[0]["found"].startswith("could not check: CONFIG GET refused")
        assert _gauge() == -1
        assert await store.ready()
    finally:
        await store.close()


async def test_each_open_checks_again(redis_with: RedisWith) -> None:
    """The gauge follows the Redis of the latest open: a node that moved from a Redis
    without AOF to one with it reads 1."""
    first, _ = await _open(await redis_with("--appendonly", "no"))
    await first.close()
    assert _gauge() == 0
    second, warnings = await _open(await redis_with("--appendonly", "yes",
                                                    "--appendfsync", "always"))
    try:
        assert warnings == []
        assert _gauge() == 1
    finally:
        await second.close()
