"""How a refused HTTP message is answered (node/submit_api.py): the HTTP status and code
by command_status, the account's own flood statuses, smpp_status as 0x%08X and the
field named first in the message."""

from __future__ import annotations

import pytest

from smppbridge.core.accounts import Account, FloodRules
from smppbridge.ingest.texts import TextResult
from smppbridge.node.submit_api import refusal
from smppbridge.smpp.constants import CommandStatus

_S = CommandStatus
ACCOUNT = Account("acme", "pw", flood=FloodRules(duplicate_status=0x450, flood_status=0x451))


@pytest.mark.parametrize(("status", "http", "code"), [
    (_S.ESME_RTHROTTLED, 429, "throttled"),
    (_S.ESME_RMSGQFUL, 503, "store_unavailable"),
    (_S.VENDOR_NO_ROUTE, 422, "no_route"),
    (_S.VENDOR_MESSAGE_TOO_LONG, 422, "text_too_long"),
    (_S.VENDOR_INVALID_DATA_CODING, 422, "invalid_encoding"),
    (_S.VENDOR_INVALID_MACRO, 422, "invalid_macro"),
    (_S.ESME_RSYSERR, 500, "internal_error"),
    (0x450, 409, "duplicate"),
    (0x451, 409, "flood"),
    (_S.ESME_RINVDSTADR, 422, "refused"),
])
def test_each_status_has_its_answer(status: int, http: int, code: str) -> None:
    """The account's configured flood statuses are 409 duplicate/flood; the others by
    the table of docs/http.md; anything else 422 refused."""
    got, error = refusal(TextResult(status), ACCOUNT)
    assert (got, error["code"], error["smpp_status"]) == (http, code, f"0x{status:08X}")


def test_the_message_starts_with_the_field() -> None:
    """A reason without its field gets it in front; the field is the parameter."""
    _, error = refusal(TextResult(_S.VENDOR_NO_ROUTE, field="to", reason="no provider"),
                       ACCOUNT)
    assert (error["message"], error["parameter"]) == ("to: no provider", "to")
    _, error = refusal(TextResult(_S.VENDOR_MESSAGE_TOO_LONG, field="text",
                                  reason="text: 3 parts, at most 2"), ACCOUNT)
    assert error["message"] == "text: 3 parts, at most 2"
