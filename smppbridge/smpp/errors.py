"""Protocol errors that carry the SMPP command_status they answer with.

Like h11's ``LocalProtocolError`` / ``RemoteProtocolError`` split: *remote* errors are
the peer's fault and become a response (or generic_nack) with ``status``; *local*
errors are ours (we tried to encode or send something invalid) and are bugs or refusals
raised to the caller.
"""

from __future__ import annotations

from smppbridge.smpp.constants import CommandStatus

__all__ = [
    "AlreadyBound",
    "BodyError",
    "InvalidBindStatus",
    "InvalidCommandId",
    "InvalidCommandLength",
    "LocalProtocolError",
    "RemoteProtocolError",
    "SmppError",
]


class SmppError(Exception):
    """Base class; ``status`` is the command_status that answers the offending PDU."""

    status: CommandStatus = CommandStatus.ESME_RSYSERR

    def __init__(self, message: str, *, status: CommandStatus | None = None) -> None:
        super().__init__(message)
        if status is not None:
            self.status = status


class LocalProtocolError(SmppError):
    """We tried to encode or send something SMPP does not allow."""


class RemoteProtocolError(SmppError):
    """The peer sent something SMPP does not allow.

    ``command_id`` and ``sequence_number`` identify the offending PDU when the header
    could be read, so the session can answer it. ``fatal`` errors close the connection
    because the byte stream can no longer be framed.
    """

    fatal: bool = False

    def __init__(
        self,
        message: str,
        *,
        status: CommandStatus | None = None,
        command_id: int = 0,
        sequence_number: int = 0,
    ) -> None:
        super().__init__(message, status=status)
        self.command_id = command_id
        self.sequence_number = sequence_number


class InvalidCommandLength(RemoteProtocolError):
    """command_length < 16 or over the configured cap: framing is lost (§5.1.1)."""

    status = CommandStatus.ESME_RINVCMDLEN
    fatal = True


class InvalidCommandId(RemoteProtocolError):
    """A command_id we do not know or do not accept from an ESME (§5.1.2)."""

    status = CommandStatus.ESME_RINVCMDID


class BodyError(RemoteProtocolError):
    """The body of a known PDU is malformed; ``status`` names the offending field."""

    status = CommandStatus.ESME_RINVCMDLEN


class InvalidBindStatus(RemoteProtocolError):
    """The command is not allowed in the session's current state (§2.3, Table 2-1)."""

    status = CommandStatus.ESME_RINVBNDSTS


class AlreadyBound(RemoteProtocolError):
    """A bind request arrived on a session that is already bound."""

    status = CommandStatus.ESME_RALYBND
