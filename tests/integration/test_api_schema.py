"""schemathesis against a live node: every operation of /api/v1/openapi.json, with
generated parameters (coverage, fuzzing and stateful phases), as an operator and as an
account. No answer is a 5xx and every answer matches the schema (status code, content
type, headers, body); malformed input is refused.

One check is left out: ``positive_data_acceptance`` says every request the schema
allows must be accepted, but a cursor is opaque — only a cursor this API gave is valid,
which no schema can state — and ``since``/``until`` take ISO 8601 or UNIX seconds in a
plain string, so schema-valid garbage there is rightly a 422.

``POST /api/v1/messages`` (submit) is left out of this run: it creates messages, and
whether one is accepted depends on what came before it (the flood rules' windows, the
account's throughput), which no schema states. Its schema is pinned by
tests/integration/test_http_submit.py (the OpenAPI document and every answer)."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import smpplib.client

from smppbridge.text.encoding import gsm_encode
from tests.integration.conftest import free_port

ADMIN = "schemathesis-admin-token"
_IDENTITIES = {"operator": f"Authorization: Bearer {ADMIN}",
               "account": "Authorization: Basic YWNtZTpwdw=="}  # acme:pw


@pytest.fixture(scope="module")
def live_node(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A node in its own process (`smppbridge serve`), with a few messages submitted."""
    tmp = tmp_path_factory.mktemp("schema")
    smpp_port, http_port = free_port(), free_port()
    (tmp / "node.toml").write_text(f"""
[smpp]
listen = "127.0.0.1:{smpp_port}"
[http]
listen = "127.0.0.1:{http_port}"
admin_tokens = ["{ADMIN}"]
[store]
url = "sqlite:///{tmp}/schema.db"
[[accounts]]
system_id = "acme"
password = "pw"
providers = ["sim"]
[[providers]]
name = "sim"
type = "simulator"
poll_interval = 0.2
simulator = {{ deliver_after = 0.2 }}
""")
    env = dict(os.environ, SMPPBRIDGE_LOG_LEVEL="warning")
    log = (tmp / "node.log").open("wb")
    proc = subprocess.Popen([sys.executable, "-m", "smppbridge", "serve", "--config",
                             str(tmp / "node.toml")], env=env, stdout=log, stderr=log)
    base = f"http://127.0.0.1:{http_port}"
    try:
        deadline = time.monotonic() + 20
        while True:
            try:
                if httpx.get(f"{base}/readyz", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if proc.poll() is not None or time.monotonic() > deadline:
                pytest.fail("the node did not start: " + (tmp / "node.log").read_text())
            time.sleep(0.05)
        _submit_some(smpp_port)
        yield base
    finally:
        proc.terminate()
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.close()


def _submit_some(port: int) -> None:
    client = smpplib.client.Client("127.0.0.1", port, timeout=5,
                                   allow_unknown_opt_params=True)
    client.set_message_sent_handler(lambda **_: None)
    client.connect()
    try:
        client.bind_transmitter(system_id="acme", password="pw")
        for i in range(5):
            client.send_message(source_addr="Shop", destination_addr=f"7900777000{i}",
                                short_message=gsm_encode(f"schema {i}\n~~~\ncomment {i}"),
                                registered_delivery=1)
            client.read_once()
        client.unbind()
    finally:
        client.disconnect()


@pytest.mark.parametrize("who", sorted(_IDENTITIES))
def test_every_operation_answers_by_its_schema(live_node: str, who: str,
                                               tmp_path: Path) -> None:
    """schemathesis' checks on every operation, as an operator and as an account: it
    exits 0 (nothing found) and tested all 8 operations."""
    result = subprocess.run(
        [str(Path(sys.executable).parent / "schemathesis"), "run",
         f"{live_node}/api/v1/openapi.json", "--header", _IDENTITIES[who],
         "--checks", "all", "--exclude-checks", "positive_data_acceptance",
         "--exclude-method", "POST",
         "--max-examples", "30", "--seed", "1", "--no-color"],
        capture_output=True, text=True, timeout=600, check=False, cwd=tmp_path)
    report = result.stdout + result.stderr
    assert result.returncode == 0, report[-6000:]
    assert "Tested: 8" in report, report[-3000:]
