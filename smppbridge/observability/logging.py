"""structlog setup: JSON lines by default, a console renderer on a TTY.

Event names are dotted phases (``bind.accepted``, ``submit.refused``). Per-connection
context (peer, system_id, bind type) is bound with contextvars by the connection.
Values under secret-looking keys are masked by :func:`mask_secrets` in every event.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import MutableMapping
from typing import Any

import structlog

__all__ = ["configure_logging", "mask_secrets"]

_SECRET_KEYS = frozenset({"password", "passwd", "secret", "token", "key", "api_key",
                          "authorization"})
_MASK = "***"


def mask_secrets(_logger: Any, _name: str, event: MutableMapping[str, Any]
                 ) -> MutableMapping[str, Any]:
    """Replace values of secret-looking keys, so a careless log call cannot leak them."""
    for k in event:
        if k.lower() in _SECRET_KEYS:
            event[k] = _MASK
    return event


def configure_logging(level: str = "info", fmt: str = "auto") -> None:
    """Configure structlog once for the process."""
    console = fmt == "console" or (fmt == "auto" and sys.stderr.isatty())
    renderer: Any = (structlog.dev.ConsoleRenderer() if console
                     else structlog.processors.JSONRenderer())
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            mask_secrets,
            structlog.processors.format_exc_info,
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(
            logging.getLevelNamesMapping()[level.upper()]),
        logger_factory=structlog.PrintLoggerFactory(file=sys.stderr),
        cache_logger_on_first_use=True,
    )
