"""What a reload reports: the changes per account, provider and section by key name
(never a value), and the metrics that tell which file a node runs."""

from __future__ import annotations

from smppbridge.config import parse_config
from smppbridge.node.reload import config_changes, mark_loaded
from smppbridge.observability.metrics import METRICS

BASE = """
[smpp]
listen = "127.0.0.1:2775"
[[accounts]]
system_id = "acme"
password = "old-pw"
throughput = 10
[[accounts]]
system_id = "gone"
password = "pw"
[[providers]]
name = "fly"
type = "smsfly"
url = "http://127.0.0.1:9001/api"
key = "first-secret-key"
"""


def test_changes_name_accounts_providers_and_keys_without_values() -> None:
    """An account's changed password and throughput are named as keys; an account
    added and one removed are named; a provider's changed key is named; no value
    (least of all a secret) appears in the report."""
    new_text = (BASE.replace('password = "old-pw"', 'password = "new-pw"')
                .replace("throughput = 10", "throughput = 20")
                .replace('system_id = "gone"', 'system_id = "fresh"')
                .replace("first-secret-key", "second-secret-key")
                .replace('listen = "127.0.0.1:2775"', 'listen = "127.0.0.1:2775"\nwindow = 7'))
    old, new = parse_config(BASE, env={}), parse_config(new_text, env={})
    changes = config_changes(old, new)
    assert changes["accounts"] == {"acme": ["password", "throughput"], "fresh": "added",
                                   "gone": "removed"}
    assert changes["providers"] == {"fly": ["key"]}
    assert changes["smpp"] == ["window"]
    text = repr(changes)
    for secret in ("old-pw", "new-pw", "first-secret-key", "second-secret-key"):
        assert secret not in text
    assert config_changes(old, parse_config(BASE, env={})) == {}


def test_config_metrics_tell_the_file_in_force() -> None:
    """smppbridge_config_info carries the SHA-256 of the file in force (one series only,
    the old one removed on reload), and the reload timestamp is set."""
    first, second = parse_config(BASE, env={}), parse_config(BASE + "\n# edited\n", env={})
    assert first.sha256 != second.sha256
    mark_loaded(first)
    mark_loaded(second)
    series = [(s.labels["sha256"], s.value) for m in METRICS.config_info.collect()
              for s in m.samples]
    assert series == [(second.sha256, 1.0)]
    assert METRICS.config_reload.collect()[0].samples[0].value > 0
