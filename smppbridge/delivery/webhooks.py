"""Provider webhooks: ``POST /webhooks/<provider>`` authenticated as the provider's
settings ask, parsed by the provider's own adapter, each status handed to the pipeline
(the same path as a polled status). ``POST /webhooks/<provider>/mo`` takes
mobile-originated messages of the provider types that have an MO parser (http-json),
with the same authentication: each is stored (the MO intake, delivery/mo.py) before
the 200; 503 when the store could not take one."""

from __future__ import annotations

import asyncio
import dataclasses
import hashlib
import hmac
import time
from collections.abc import Awaitable, Callable, Mapping
from typing import TYPE_CHECKING

import structlog

from smppbridge.core.errors import StoreUnavailable
from smppbridge.core.net import ip_in_networks
from smppbridge.http.request import HttpRequest, HttpResponse

if TYPE_CHECKING:
    from smppbridge.core.mo import InboundMo
    from smppbridge.core.ports import Provider
    from smppbridge.core.provider_settings import ProviderSettings
    from smppbridge.delivery.poller import OnUpdate, StatusPoller

__all__ = ["WEBHOOK_SECRET_HEADER", "WEBHOOK_SECRET_QUERY", "WEBHOOK_SIGNATURE_HEADER",
           "Webhooks", "webhook_handler", "webhook_refusal"]

_log = structlog.get_logger("smppbridge.webhooks")
#: a provider type's MO webhook parser: (provider name, body, now) -> the MO in it
MoParser = Callable[[str, bytes, float], "list[InboundMo]"]


#: Where a webhook call carries its credentials (see :func:`webhook_refusal`): names of
#: a header and a query parameter, not secrets.
WEBHOOK_SECRET_HEADER = "x-webhook-secret"  # noqa: S105
WEBHOOK_SECRET_QUERY = "secret"  # noqa: S105
WEBHOOK_SIGNATURE_HEADER = "x-signature"
_HTTP_UNAUTHORIZED = 401
_HTTP_FORBIDDEN = 403


def _same(given: str, expected: str) -> bool:
    # Constant time in the content; only the length can show.
    return hmac.compare_digest(given.encode("utf-8", "surrogateescape"),
                               expected.encode("utf-8", "surrogateescape"))


def webhook_refusal(request: HttpRequest, s: ProviderSettings) -> tuple[int, str] | None:
    """Why this webhook call must be refused, as (HTTP status, reason), or None.

    Checks what the provider's settings ask for, all of it when several are set:
    ``webhook_networks`` (the source address; 403 outside them), ``webhook_secret``
    (header ``X-Webhook-Secret`` or query ``?secret=``, compared in constant time; 401)
    and ``webhook_hmac_key`` (``X-Signature: sha256=<hex HMAC-SHA256 of the body>``;
    401). The reason names what failed, never a value, so it is safe to log.
    """
    if s.webhook_networks and not ip_in_networks(request.client[0], s.webhook_networks):
        return _HTTP_FORBIDDEN, "source address not in webhook_networks"
    if s.webhook_secret:
        given = request.headers.get(WEBHOOK_SECRET_HEADER)
        if given is None:
            given = next(iter(request.query.get(WEBHOOK_SECRET_QUERY, ())), None)
        if given is None:
            return _HTTP_UNAUTHORIZED, "no secret"
        if not _same(given, s.webhook_secret):
            return _HTTP_UNAUTHORIZED, "wrong secret"
    if s.webhook_hmac_key:
        scheme, _, signature = request.headers.get(WEBHOOK_SIGNATURE_HEADER, "").partition("=")
        if scheme.strip().lower() != "sha256" or not signature:
            return _HTTP_UNAUTHORIZED, "no sha256 signature"
        expected = hmac.new(s.webhook_hmac_key.encode(), request.body, hashlib.sha256)
        if not _same(signature.strip().lower(), expected.hexdigest()):
            return _HTTP_UNAUTHORIZED, "wrong signature"
    return None


class Webhooks:
    """``POST /webhooks/<provider name>``: authenticates the call as the provider's
    settings ask (:func:`webhook_refusal`), parses it with the provider's
    ``parse_webhook``, reports each update, and stops polling messages made final.

    ``providers`` and ``settings`` are the node's own dicts (a reload swaps their
    contents in place)."""

    def __init__(self, providers: Mapping[str, Provider], on_update: OnUpdate, *,
                 poller: StatusPoller | None = None,
                 settings: Mapping[str, ProviderSettings] | None = None,
                 on_mo: Callable[[InboundMo], Awaitable[object]] | None = None,
                 mo_parsers: Mapping[str, MoParser] | None = None) -> None:
        self.providers = providers
        self.on_update = on_update
        self.poller = poller
        self.settings = settings if settings is not None else {}
        self.on_mo = on_mo
        #: by provider type
        self.mo_parsers = mo_parsers if mo_parsers is not None else {}

    async def handle(self, name: str, request: HttpRequest) -> HttpResponse:
        mo = name.endswith("/mo") and name not in self.providers
        if mo:
            name = name[:-3]
        provider = self.providers.get(name)
        if provider is None:
            return HttpResponse.text("unknown provider\n", status=404)
        s = self.settings.get(name)
        refusal = webhook_refusal(request, s) if s is not None else None
        if refusal is not None:
            status, reason = refusal
            _log.warning("status.webhook_refused", provider=name, reason=reason,
                         client=request.client[0])
            return HttpResponse.text("unauthorized\n" if status == _HTTP_UNAUTHORIZED
                                     else "forbidden\n", status=status)
        if mo:
            return await self._mo(name, s, request)
        try:
            updates = provider.parse_webhook(request)
        except ValueError as exc:
            _log.warning("status.webhook_invalid", provider=name, error=str(exc))
            return HttpResponse.text(f"invalid: {exc}\n", status=400)
        updates = [dataclasses.replace(u, source="webhook") for u in updates]
        for update in updates:
            if self.poller is not None and update.final:
                self.poller.forget(name, update.provider_id)
        # Concurrently, so that the updates' store writes share a group commit.
        results = await asyncio.gather(*(self.on_update(name, update) for update in updates),
                                       return_exceptions=True)
        failed = [r for r in results if isinstance(r, BaseException)]
        if any(not isinstance(r, StoreUnavailable) for r in failed):
            raise next(r for r in failed if not isinstance(r, StoreUnavailable))
        if failed:
            # Not (all) written: 503 asks the provider to send the call again later.
            return HttpResponse.text("store unavailable, try again later\n", status=503)
        return HttpResponse.text("OK")

    async def _mo(self, name: str, s: ProviderSettings | None,
                  request: HttpRequest) -> HttpResponse:
        parser = self.mo_parsers.get(s.type) if s is not None else None
        if parser is None or self.on_mo is None:
            return HttpResponse.text("this provider takes no MO webhook\n", status=404)
        try:
            mos = parser(name, request.body, time.time())
        except ValueError as exc:
            _log.warning("mo.webhook_invalid", provider=name, error=str(exc))
            return HttpResponse.text(f"invalid: {exc}\n", status=400)
        results = await asyncio.gather(*(self.on_mo(m) for m in mos),
                                       return_exceptions=True)
        failed = [r for r in results if isinstance(r, BaseException)]
        if any(not isinstance(r, StoreUnavailable) for r in failed):
            raise next(r for r in failed if not isinstance(r, StoreUnavailable))
        if failed:
            # Some stored, some not: the provider sends the call again (a duplicate
            # of the stored ones, never a loss).
            return HttpResponse.text("store unavailable, try again later\n", status=503)
        return HttpResponse.text("OK")


def webhook_handler(providers: Mapping[str, Provider], on_update: OnUpdate, *,
                    poller: StatusPoller | None = None,
                    settings: Mapping[str, ProviderSettings] | None = None,
                    prefix: str = "/webhooks/"
                    ) -> Callable[[HttpRequest], Awaitable[HttpResponse]]:
    """:class:`Webhooks` as one handler of a whole request whose path is
    ``<prefix><provider name>``."""
    hooks = Webhooks(providers, on_update, poller=poller, settings=settings)

    async def handle(request: HttpRequest) -> HttpResponse:
        return await hooks.handle(request.path[len(prefix):].strip("/"), request)

    return handle
