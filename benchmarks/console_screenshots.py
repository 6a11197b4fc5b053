"""The README's console screenshots, taken from a real run.

Starts a node on 127.0.0.1 (a temporary SQLite file, the simulator as its provider:
numbers 7999… undeliverable, 7998… expired), binds an smpplib ESME and submits for
``--seconds`` (default 90) at a rate that rises and falls, with some messages to the
failing numbers and some repeated ones that the flood rules refuse, so that the chart
has all four lines. Then headless Chromium (Debian's, driven by Playwright) logs in as
the operator and saves:

* ``docs/img/console-overview.png`` — the overview: the chart, the tiles, providers;
* ``docs/img/console-message.png`` — a delivered message's page with its comment,
  timeline and receipt.

Usage::

    .venv/bin/python benchmarks/console_screenshots.py              # into docs/img/
    .venv/bin/python benchmarks/console_screenshots.py --out /tmp/shots --seconds 20
    .venv/bin/python benchmarks/console_screenshots.py --dark       # the dark theme
"""

from __future__ import annotations

import argparse
import asyncio
import math
import tempfile
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import smpplib.client
import smpplib.exceptions
from playwright.async_api import async_playwright, expect

from smppbridge.config import parse_config
from smppbridge.node.node import Node
from smppbridge.observability.logging import configure_logging
from smppbridge.text.encoding import gsm_encode

ROOT = Path(__file__).resolve().parent.parent
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
                 "--no-first-run", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync"]
TOKEN = "a-screenshot-admin-token"
ZONE = "Europe/Kyiv"


def config(path: str) -> str:
    return f"""
[smpp]
listen = "127.0.0.1:0"
shutdown_grace = 2.0
[http]
listen = "127.0.0.1:0"
admin_tokens = ["{TOKEN}"]
timezone = "{ZONE}"
[store]
url = "sqlite:///{path}"
[[accounts]]
system_id = "acme"
password = "pw"
providers = ["sms-gate"]
[[providers]]
name = "sms-gate"
type = "simulator"
poll_interval = 0.5
simulator = {{ deliver_after = 1.5, rules = [
  {{ pattern = "7999*", outcome = "undeliverable" }},
  {{ pattern = "7998*", outcome = "expired" }} ] }}
"""


class Esme:
    """An smpplib transceiver with its read loop in a thread (responses, receipts)."""

    def __init__(self, port: int) -> None:
        self.client = smpplib.client.Client("127.0.0.1", port, timeout=5,
                                            allow_unknown_opt_params=True)
        self.ids: list[str] = []
        self.receipts = 0
        self.client.set_message_sent_handler(self._sent)
        self.client.set_message_received_handler(self._received)
        self.client.set_error_pdu_handler(lambda pdu: None)
        self.client.connect()
        self.client.bind_transceiver(system_id="acme", password="pw")
        self._stop = False
        self.thread = threading.Thread(target=self._loop, daemon=True)
        self.thread.start()

    def _sent(self, pdu: Any, **_: Any) -> None:
        if pdu.status == 0:
            self.ids.append(pdu.message_id.decode())

    def _received(self, pdu: Any, **_: Any) -> int:
        self.receipts += 1
        return 0

    def _loop(self) -> None:
        self.client._socket.settimeout(0.2)
        while not self._stop:
            try:
                self.client.read_once(auto_send_enquire_link=False)
            except (TimeoutError, OSError):
                continue
            except smpplib.exceptions.ConnectionError:
                return

    def send(self, to: str, text: str) -> None:
        self.client.send_message(source_addr_ton=5, source_addr="Shop", dest_addr_ton=1,
                                 dest_addr_npi=1, destination_addr=to,
                                 short_message=gsm_encode(text), registered_delivery=1)

    def close(self) -> None:
        self._stop = True
        self.thread.join(2)
        self.client.unbind()
        self.client.disconnect()


FIRST = "79001112233"


def traffic(esme: Esme, stop: threading.Event) -> None:
    """Submit until ``stop`` at a rate that rises and falls; the first message (to
    :data:`FIRST`) has a comment and is delivered."""
    esme.send(FIRST, "Your order 4711 has shipped and arrives tomorrow.\n~~~\n"
                     "order 4711, campaign winter")
    n = 0
    start = time.monotonic()
    second = 0
    while not stop.is_set():
        rate = round(6 + 5 * math.sin(second / 9))
        for k in range(rate):
            n += 1
            if n % 11 == 0:
                to = f"7999{n:07d}"      # undeliverable
            elif n % 17 == 0:
                to = f"7998{n:07d}"      # expired
            else:
                to = f"7900{n:07d}"
            text = f"Code {n % 9000 + 1000} for your login.\n~~~\notp {n}"
            esme.send(to, text)
            if k == 0 and second % 4 == 0:
                esme.send(to, text)  # the same again: refused by the flood rules
        second += 1
        # a traffic generator's pacing: one batch a second
        stop.wait(max(0.0, start + second - time.monotonic()))


async def shoot(base: str, message_id: str, out: Path, dark: bool, profile: Path) -> None:
    async with async_playwright() as pw:
        context = await pw.chromium.launch_persistent_context(
            str(profile), executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True,
            viewport={"width": 1280, "height": 860}, device_scale_factor=1,
            color_scheme="dark" if dark else "light")
        try:
            page = context.pages[0] if context.pages else await context.new_page()
            await page.goto(f"{base}/login")
            await page.fill("#operator-login input[name=token]", TOKEN)
            await page.click("#operator-login button[type=submit]")
            await page.wait_for_url(f"{base}/")
            await page.wait_for_selector("#chart canvas")
            await expect(page.locator("#chart")).not_to_have_attribute("data-points", "0")
            suffix = "-dark" if dark else ""
            await page.screenshot(path=out / f"console-overview{suffix}.png", full_page=True)
            await page.goto(f"{base}/messages/{message_id}")
            await page.screenshot(path=out / f"console-message{suffix}.png", full_page=True)
        finally:
            await context.close()


async def run(args: argparse.Namespace) -> None:
    tmp = Path(tempfile.mkdtemp(prefix="console-shots-"))
    node = Node(parse_config(config(str(tmp / "shots.db")), env={}))
    await node.start()
    try:
        esme = await asyncio.to_thread(Esme, node.smpp.addresses["smpp"][1])
        stop = threading.Event()
        sender = threading.Thread(target=traffic, args=(esme, stop), daemon=True)
        sender.start()
        try:
            await asyncio.sleep(args.seconds)  # the traffic the chart shows
            first = esme.ids[0]
            assert node.http_address is not None
            host, port = node.http_address
            args.out.mkdir(parents=True, exist_ok=True)
            await shoot(f"http://{host}:{port}", first, args.out, args.dark,
                        tmp / "profile")
        finally:
            stop.set()
            await asyncio.to_thread(sender.join, 5)
            await asyncio.to_thread(esme.close)
    finally:
        await node.stop()
    print(f"saved {args.out}/console-overview*.png and console-message*.png")


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    ap.add_argument("--out", type=Path, default=ROOT / "docs" / "img")
    ap.add_argument("--seconds", type=int, default=90, help="seconds of traffic")
    ap.add_argument("--dark", action="store_true", help="the dark theme")
    return ap.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> None:
    configure_logging("warning", "console")
    asyncio.run(run(parse_args(argv)))


if __name__ == "__main__":
    main()
