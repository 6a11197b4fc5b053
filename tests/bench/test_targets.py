"""Servers under test as subprocesses: config, readiness, sampling, stop."""

from __future__ import annotations

import sys

import pytest

from smppbridge.bench.targets import (
    ServerProcess,
    TargetError,
    smppbridge_config,
    start_target,
)
from smppbridge.config import parse_config


def test_smppbridge_config_is_accepted(tmp_path):
    """The temp config passes the server's own validation with the bench account's
    raised limits and the simulator provider."""
    text = smppbridge_config(tmp_path, 27001, 27002, max_binds=2000, window=1000)
    config = parse_config(text, env={})
    account = config.account("bench")
    assert account is not None
    assert (account.max_binds, account.window, account.providers) == (2000, 1000,
                                                                      ("simulator",))
    assert config.smpp.listen is not None
    assert config.smpp.listen.port == 27001
    assert config.smpp.max_connections_per_ip > 2000
    assert config.store.url == f"sqlite:///{(tmp_path / 'bench.db').as_posix()}"


async def test_echo_target_starts_samples_and_stops(tmp_path):
    """The echo process accepts connections once started, /proc sampling works on it,
    and SIGTERM stops it with exit code 0."""
    server = await start_target("echo", tmp_path, loop="asyncio", ready_timeout=20)
    try:
        s = server.sample()
        assert s.rss_bytes > 0
        assert s.cpu_seconds >= 0
    finally:
        code = await server.stop(grace=10)
    assert code == 0


async def test_a_server_that_dies_reports_its_output(tmp_path):
    """A server exiting while starting is a TargetError quoting its exit code and output."""
    argv = [sys.executable, "-c", "import sys; print('no such key: foo'); sys.exit(3)"]
    server = ServerProcess("broken", argv, 1, tmp_path)
    with pytest.raises(TargetError, match=r"exited with 3(.|\n)*no such key: foo"):
        await server.start(ready_timeout=20)


def test_http_provider_targets_write_valid_configs(tmp_path):
    """The scenario (b) targets point the node at the standalone simulator over HTTP:
    mysmpp-xml (batched) and smsfly (one by one); both configs pass validation."""
    from smppbridge.bench.targets import HTTP_PROVIDERS, smppbridge_config
    from smppbridge.config import parse_config

    for kind in HTTP_PROVIDERS.values():
        text = smppbridge_config(tmp_path, 2775, 8080, http_provider=(kind, 9000))
        config = parse_config(text, env={})
        (provider,) = config.providers
        assert provider.type == kind
        assert provider.url.startswith("http://127.0.0.1:9000/")
