"""The Grafana dashboard (conf/grafana/smppbridge.json) matches the metrics we export."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from prometheus_client import CollectorRegistry

from smppbridge.observability.metrics import METRICS, Metrics

DASHBOARD = Path(__file__).parent.parent / "conf" / "grafana" / "smppbridge.json"
_METRIC_NAME = re.compile(r"smppbridge_[a-z_]+")

#: Sample-name suffixes each family type exposes in the text format. Labelled families
#: without children yet expose no samples, so the names are derived from the type too.
_SUFFIXES = {
    "counter": ("_total",),
    "gauge": ("",),
    "histogram": ("_bucket", "_count", "_sum"),
    "summary": ("", "_count", "_sum"),
    "info": ("_info",),
}


def _load() -> dict[str, Any]:
    dashboard: dict[str, Any] = json.loads(DASHBOARD.read_text())
    return dashboard


def _panels(dashboard: dict[str, Any]) -> Iterator[dict[str, Any]]:
    for panel in dashboard["panels"]:
        yield panel
        yield from panel.get("panels", [])  # collapsed rows nest their panels


def _expressions(dashboard: dict[str, Any]) -> list[str]:
    """Every PromQL text: panel targets and template-variable queries."""
    exprs = [t["expr"] for p in _panels(dashboard) for t in p.get("targets", [])]
    for var in dashboard["templating"]["list"]:
        query = var.get("query")
        if var["type"] == "query":
            exprs.append(query["query"] if isinstance(query, dict) else query)
    return exprs


def _exported_names(registry: CollectorRegistry) -> set[str]:
    names: set[str] = set()
    for family in registry.collect():
        names.update(family.name + suffix for suffix in _SUFFIXES[family.type])
        names.update(sample.name for sample in family.samples)
    return names


def _referenced_names() -> set[str]:
    return {name for expr in _expressions(_load()) for name in _METRIC_NAME.findall(expr)}


def test_every_metric_the_dashboard_queries_is_exported() -> None:
    """Each ``smppbridge_*`` name in the dashboard's PromQL is a sample name the process
    registry exposes (``_total``, ``_bucket``, ``_count``, ``_sum`` included), so no
    panel silently shows "No data" after a rename."""
    referenced = _referenced_names()
    assert referenced, "the dashboard queries no smppbridge metric"
    missing = referenced - _exported_names(METRICS.registry)
    assert not missing, f"dashboard queries unknown metrics: {sorted(missing)}"


def test_every_metric_family_is_on_the_dashboard() -> None:
    """Every family defined in metrics.py is charted somewhere: a new metric needs a
    panel (or this test says which one is missing)."""
    referenced = _referenced_names()
    registry = CollectorRegistry()
    families = {f.name: f.type for f in Metrics(registry).registry.collect()}
    uncharted = [name for name, kind in families.items()
                 if not any(name + s in referenced for s in _SUFFIXES[kind])]
    assert not uncharted, f"metric families with no panel: {sorted(uncharted)}"


def test_dashboard_uses_a_prometheus_datasource_variable() -> None:
    """The dashboard imports into any Grafana: a ``datasource`` variable of type
    prometheus, and every panel and query uses it rather than a fixed uid."""
    dashboard = _load()
    variables = {v["name"]: v for v in dashboard["templating"]["list"]}
    assert variables["datasource"]["type"] == "datasource"
    assert variables["datasource"]["query"] == "prometheus"
    expected = {"type": "prometheus", "uid": "${datasource}"}
    for panel in _panels(dashboard):
        if panel["type"] == "row":
            continue
        assert panel["datasource"] == expected, panel["title"]
        for target in panel["targets"]:
            assert target["datasource"] == expected, panel["title"]


def test_dashboard_structure_is_valid() -> None:
    """Panel ids are unique, every panel has a grid position inside the 24-column grid
    and a title, and every query has a distinct refId within its panel."""
    dashboard = _load()
    assert dashboard["uid"] == "smppbridge"
    assert isinstance(dashboard["schemaVersion"], int)
    ids = [p["id"] for p in _panels(dashboard)]
    assert len(ids) == len(set(ids))
    for panel in _panels(dashboard):
        pos = panel["gridPos"]
        assert panel["title"]
        assert pos["x"] >= 0, panel["title"]
        assert pos["x"] + pos["w"] <= 24, panel["title"]
        assert pos["h"] > 0
        refs = [t["refId"] for t in panel.get("targets", [])]
        assert len(refs) == len(set(refs)), panel["title"]


@pytest.mark.parametrize("metric", [
    "smppbridge_submits_total", "smppbridge_pdus_total", "smppbridge_flood_refusals_total",
    "smppbridge_submit_ack_seconds_bucket", "smppbridge_provider_requests_total",
    "smppbridge_provider_request_seconds_bucket", "smppbridge_provider_breaker_open",
    "smppbridge_receipts_waiting", "smppbridge_receipts_total", "smppbridge_messages",
    "smppbridge_binds", "smppbridge_connections", "smppbridge_store_write_seconds_bucket",
    "smppbridge_long_message_parts_waiting",
])
def test_operations_panels_are_present(metric: str) -> None:
    """The panels operations asked for (throughput, refusals, latency quantiles,
    providers, receipt backlog, store, sessions) each query their metric."""
    assert metric in _referenced_names()


def test_latency_panels_use_histogram_quantiles() -> None:
    """Submit→ack latency is charted as p50 and p99 via ``histogram_quantile`` over the
    bucket rates, not as an average only."""
    exprs = [e for e in _expressions(_load()) if "smppbridge_submit_ack_seconds_bucket" in e]
    quantiles = {m.group(1) for e in exprs
                 for m in [re.match(r"histogram_quantile\((0\.\d+),", e)] if m}
    assert {"0.5", "0.99"} <= quantiles
