"""Test tiers. A test is ``integration`` when it opens network sockets, starts processes
or needs a real Redis: every test under the folders and modules listed here, and any
test marked ``@pytest.mark.integration``. ``pytest -m "not integration"`` runs the unit
tier alone, in seconds; in that tier a TCP/UDP socket that connects or binds fails the
test (docs/development.md), so the list cannot silently go stale.
"""

from __future__ import annotations

import socket
from pathlib import Path
from typing import Any

import pytest

_ROOT = Path(__file__).parent
#: folders and modules whose tests are all integration tests
INTEGRATION = (
    "integration", "security", "simulator", "http", "store/redis",
    "bench/test_echo.py", "bench/test_loadgen.py", "bench/test_runner.py",
    "bench/test_targets.py", "providers/test_http_json.py", "providers/test_http_pools.py",
    "providers/test_mysmpp_json.py", "providers/test_mysmpp_xml.py",
    "providers/test_provider_worker.py", "providers/test_smsfly.py",
    "delivery/test_router.py", "delivery/test_runner.py", "test_deploy.py", "test_cli.py",
)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        rel = Path(str(item.path)).relative_to(_ROOT).as_posix()
        if any(rel == p or rel.startswith(p.rstrip("/") + "/") for p in INTEGRATION):
            item.add_marker(pytest.mark.integration)


_NETWORK = (socket.AF_INET, socket.AF_INET6)


@pytest.fixture(autouse=True)
def _unit_tests_open_no_network(request: pytest.FixtureRequest,
                                monkeypatch: pytest.MonkeyPatch) -> None:
    """Outside the integration tier, connecting or binding a TCP/UDP socket fails."""
    if request.node.get_closest_marker("integration") is None:
        for name in ("connect", "connect_ex", "bind"):
            original = getattr(socket.socket, name)

            def guarded(self: socket.socket, *args: Any, _original: Any = original,
                        _name: str = name) -> Any:
                if self.family in _NETWORK:
                    msg = (f"a unit test called socket.{_name}{args}: mark it "
                           "integration (tests/conftest.py)")
                    raise AssertionError(msg)
                return _original(self, *args)

            monkeypatch.setattr(socket.socket, name, guarded)
