"""Every Prometheus metric of smppbridge, in one place, with bounded labels.

Label values come from closed sets (command names, status names, configured accounts
and providers, fixed outcome words), so cardinality is bounded by the config. Children
are bound once (per session or per key) and reused on the hot path.
"""

from __future__ import annotations

from functools import cache

import prometheus_client
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, Info

from smppbridge import __version__
from smppbridge.smpp.constants import CommandId, CommandStatus

__all__ = ["METRICS", "Metrics", "status_name"]

# *_created series double the exposition for nothing an operator uses.
prometheus_client.disable_created_metrics()  # type: ignore[no-untyped-call]

_LATENCY_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 0.5, 1.0,
                    2.5, 5.0)
_HTTP_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)


# Plain dicts, not functools.cache: command_id and command_status come from the peer,
# and a cache keyed by raw values would grow by one entry per value an ESME invents.
_STATUS_NAMES = {s.value: s.name for s in CommandStatus}
_COMMAND_NAMES = {c.value: c.name.lower() for c in CommandId}


def status_name(status: int) -> str:
    """A command_status as its name; statuses we do not know collapse to "other"."""
    return _STATUS_NAMES.get(status, "other")


def command_name(command_id: int) -> str:
    return _COMMAND_NAMES.get(command_id, "unknown")


class Metrics:
    """The metric families; one instance per registry (tests make their own)."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        r = registry if registry is not None else CollectorRegistry(auto_describe=True)
        self.registry = r
        self.build_info = Info("smppbridge_build", "Build information", registry=r)
        self.build_info.info({"version": __version__})
        self.config_reload = Gauge("smppbridge_config_reload_timestamp_seconds",
                                   "When the config now in force was loaded (start or "
                                   "SIGHUP)", registry=r)
        self.config_info = Gauge("smppbridge_config_info",
                                 "1 for the SHA-256 of the config file in force",
                                 ["sha256"], registry=r)
        self.binds = Gauge("smppbridge_binds", "Open binds", ["account", "bind_type"],
                           registry=r)
        self.connections = Gauge("smppbridge_connections", "Open SMPP connections",
                                 registry=r)
        self.pdus = Counter("smppbridge_pdus", "PDUs by direction, command and status",
                            ["direction", "command", "status"], registry=r)
        self.submits = Counter("smppbridge_submits", "submit_sm by account and outcome",
                               ["account", "outcome"], registry=r)
        self.http_submits = Counter("smppbridge_http_submits",
                                    "Messages submitted over HTTP by account, door (http, "
                                    "jasmin, kannel) and outcome",
                                    ["account", "door", "outcome"], registry=r)
        self.submit_latency = Histogram("smppbridge_submit_ack_seconds",
                                        "submit_sm received → submit_sm_resp queued",
                                        buckets=_LATENCY_BUCKETS, registry=r)
        self.provider_requests = Counter("smppbridge_provider_requests",
                                         "Provider HTTP requests by provider and outcome",
                                         ["provider", "outcome"], registry=r)
        self.provider_latency = Histogram("smppbridge_provider_request_seconds",
                                          "Provider HTTP request latency", ["provider"],
                                          buckets=_HTTP_BUCKETS, registry=r)
        self.provider_id_conflicts = Counter(
            "smppbridge_provider_id_conflicts",
            "Provider ids given to a second live message (a provider reusing ids)",
            ["provider"], registry=r)
        self.worker_exits = Counter("smppbridge_provider_worker_exits",
                                    "Provider worker processes that ended unasked",
                                    ["provider"], registry=r)
        self.breaker = Gauge("smppbridge_provider_breaker_open",
                             "1 while a provider's circuit breaker is open", ["provider"],
                             registry=r)
        self.provider_balance = Gauge("smppbridge_provider_balance",
                                      "A provider account's balance, where its API tells it",
                                      ["provider"], registry=r)
        # The smpp provider: one label set per configured upstream session (provider
        # name, session number 0..binds-1), statuses by name (a closed set).
        self.upstream_binds = Gauge("smppbridge_upstream_binds_up",
                                    "1 while an upstream SMSC session is bound",
                                    ["provider", "session"], registry=r)
        self.upstream_submits = Counter("smppbridge_upstream_submits",
                                        "submit_sm sent to an upstream SMSC, by answer "
                                        "(a status name, timeout, lost)",
                                        ["provider", "session", "status"], registry=r)
        self.upstream_window = Gauge("smppbridge_upstream_window_in_use",
                                     "submit_sm waiting for the upstream's answer",
                                     ["provider", "session"], registry=r)
        self.upstream_receipts = Counter("smppbridge_upstream_receipts",
                                         "Receipts from an upstream SMSC: matched, early "
                                         "(before submit_sm_resp, then matched), "
                                         "unmatched (handed to the store lookup), invalid",
                                         ["provider", "result"], registry=r)
        self.upstream_deliveries = Counter("smppbridge_upstream_deliver_sm",
                                           "deliver_sm from an upstream SMSC that are not "
                                           "receipts (mobile-originated; see "
                                           "smppbridge_mo_total)", ["provider"], registry=r)
        self.mo = Counter("smppbridge_mo", "mobile-originated messages received, by "
                          "outcome: routed (stored for an account), unroutable (stored, "
                          "no route), not_stored (store error; the provider is asked to "
                          "send it again)", ["provider", "outcome"], registry=r)
        self.upstream_errors = Counter("smppbridge_upstream_session_errors",
                                       "Upstream sessions lost or refused, by reason "
                                       "(connect, bind, closed, garbage)",
                                       ["provider", "reason"], registry=r)
        self.queue_age = Gauge("smppbridge_queue_oldest_age_seconds",
                               "Age of the oldest message waiting to be sent (0: none)",
                               registry=r)
        self.messages = Gauge("smppbridge_messages", "Stored messages by state", ["state"],
                              registry=r)
        self.sent = Counter("smppbridge_messages_sent", "Messages a provider took",
                            ["provider"], registry=r)
        self.finals = Counter("smppbridge_messages_final",
                              "Messages that reached their final status, by stat", ["stat"],
                              registry=r)
        self.receipts = Counter("smppbridge_receipts",
                                "Receipt deliveries: sent, retried, dropped, expired",
                                ["event"], registry=r)
        self.receipts_waiting = Gauge("smppbridge_receipts_waiting",
                                      "Receipts stored, not yet delivered", registry=r)
        self.callbacks = Counter("smppbridge_callbacks",
                                 "Status callback attempts' outcomes by account: sent "
                                 "(2xx), retried, failed (given up at once), expired "
                                 "(callback_ttl ended)", ["account", "outcome"], registry=r)
        self.callbacks_waiting = Gauge("smppbridge_callbacks_waiting",
                                       "Status callbacks in the outbox (not yet delivered, "
                                       "failed or expired)", registry=r)
        self.callback_latency = Histogram("smppbridge_callback_seconds",
                                          "Status callback attempt latency (resolve, "
                                          "connect, request, answer)",
                                          buckets=_HTTP_BUCKETS, registry=r)
        self.flood_refusals = Counter("smppbridge_flood_refusals",
                                      "Messages refused by a flood rule", ["rule"],
                                      registry=r)
        self.parts_waiting = Gauge("smppbridge_long_message_parts_waiting",
                                   "Parts of long messages waiting for the rest", registry=r)
        self.store_errors = Counter("smppbridge_store_errors",
                                    "Store operations that failed, by kind (disk_full, "
                                    "io_error, locked, out_of_memory, read_only, cluster, "
                                    "unreachable, other)", ["kind"], registry=r)
        self.store_failing = Gauge("smppbridge_store_failing",
                                   "1 while the store refuses writes", registry=r)
        # Labelled so that a node on SQLite exposes no sample (an unlabelled gauge
        # would read 0, "not durable", on every node that has no Redis).
        self.store_durable = Gauge("smppbridge_store_durable",
                                   "Redis persistence as docs/cluster.md prescribes, checked "
                                   "at start: 1 yes (appendonly yes, appendfsync always or "
                                   "everysec), 0 no, -1 could not check (CONFIG refused)",
                                   ["store"], registry=r)
        self.store_write = Histogram("smppbridge_store_write_seconds",
                                     "Durable store write (group commit) latency",
                                     buckets=_LATENCY_BUCKETS, registry=r)
        #: (direction, command_id, command_status) → child, for known values only
        self._pdu_by_number: dict[tuple[str, int, int], Counter] = {}

    def pdu(self, direction: str, command_id: int, status: int) -> Counter:
        """The bound child for one (direction, command, status)."""
        key = (direction, command_id, status)
        child = self._pdu_by_number.get(key)
        if child is None:
            # Cached by label *names*: the raw numbers are the peer's to choose; only
            # known command ids and statuses (a closed set) are cached by number too.
            child = self._pdu_child(direction, command_name(command_id),
                                    status_name(status))
            if command_id in _COMMAND_NAMES and status in _STATUS_NAMES:
                self._pdu_by_number[key] = child
        return child

    @cache  # noqa: B019 - one Metrics per process (or per test); children live as long
    def _pdu_child(self, direction: str, command: str, status: str) -> Counter:
        return self.pdus.labels(direction, command, status)

    @cache  # noqa: B019 - see above
    def submit(self, account: str, status: int) -> Counter:
        outcome = "accepted" if status == CommandStatus.ESME_ROK else status_name(status)
        return self.submits.labels(account, outcome)


    @cache  # noqa: B019 - see above
    def http_submit(self, account: str, door: str, status: int) -> Counter:
        """A message of an HTTP door: ``outcome`` as for submit_sm (accepted, or the
        name of the command_status a submit_sm of it would get)."""
        outcome = "accepted" if status == CommandStatus.ESME_ROK else status_name(status)
        return self.http_submits.labels(account, door, outcome)

#: The process-wide metrics, served at /metrics.
METRICS = Metrics()
