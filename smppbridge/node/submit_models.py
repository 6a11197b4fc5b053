"""The JSON shapes of ``POST /api/v1/messages`` (docs/http.md, Submit over HTTP):
pydantic models, strict (a number is not a string, ``"true"`` is not a boolean) and
closed (an unknown field is refused by name, so a typo is not silently ignored)."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

__all__ = ["MAX_BATCH", "SubmitAccepted", "SubmitBatch", "SubmitError", "SubmitErrorBody",
           "SubmitItems", "SubmitMessage"]

#: the most messages of one request
MAX_BATCH = 1000


class SubmitMessage(BaseModel):
    """One message to send."""

    model_config = ConfigDict(strict=True, extra="forbid", populate_by_name=True)

    to: str = Field(description="the destination: 1-20 digits, an optional leading +")
    from_: str = Field(alias="from", description="the sender: 1-20 digits, or a name of "
                       "1-11 characters")
    text: str = Field(description="the text; macros (__VIBER__, __HLR__, ...) and a "
                      "comment after a line ~~~ as over SMPP (docs/content.md)")
    client_ref: str | None = Field(None, max_length=256,
                                   description="your reference, echoed in callbacks")
    callback_url: str | None = Field(None, max_length=2048,
                                     description="where this message's status callbacks "
                                     "go (http/https, no private address)")
    encoding: Literal["gsm7", "ucs2", "latin1"] | None = Field(
        None, description="default: gsm7 when every character is in GSM 03.38, else ucs2")
    validity: int | None = Field(None, ge=1, le=30 * 86400,
                                 description="seconds the message may wait for delivery")
    schedule_at: str | None = Field(None, description="ISO 8601: send no earlier than this "
                                    "(a time without a zone is UTC)")
    flash: bool = Field(False, description="a flash SMS (message class 0)")


class SubmitBatch(BaseModel):
    """Up to 1,000 messages in one request (each answered on its own)."""

    model_config = ConfigDict(strict=True, extra="forbid")

    messages: list[SubmitMessage] = Field(min_length=1, max_length=MAX_BATCH)


class SubmitError(BaseModel):
    code: str = Field(description="a stable word: throttled, text_too_long, no_route, "
                      "duplicate, flood, invalid_encoding, invalid_macro, store_unavailable, ...")
    smpp_status: str | None = Field(None, description="the command_status a submit_sm of "
                                    "this message would get, 0x%08X")
    message: str = Field(description="what was refused; starts with the field at fault")
    parameter: str | None = Field(None, description="the field at fault, if one is")


class SubmitErrorBody(BaseModel):
    error: SubmitError


class SubmitAccepted(BaseModel):
    """A message stored (durably) on its way to a provider."""

    id: str = Field(description="the message id (GET /api/v1/messages/{id}); the id of "
                    "its last part, as over SMPP")
    parts: int = Field(description="how many SMS parts it takes (each has its own id)")


class SubmitItem(BaseModel):
    """One message of a batch: accepted (``id``, ``parts``) or refused (``error``)."""

    id: str | None = None
    parts: int | None = None
    error: SubmitError | None = None


class SubmitItems(BaseModel):
    items: list[SubmitItem] = Field(description="one per message, in order")
