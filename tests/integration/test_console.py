"""The web console in a real headless browser: Debian's chromium driven by Playwright,
against a real node on 127.0.0.1 with smpplib ESMEs submitting over SMPP
(docs/console.md). Every flow waits on conditions (Playwright's waits, the ESME's
recorded responses), never on a clock, and saves a screenshot under its tmp_path."""

from __future__ import annotations

import asyncio
import csv
import io
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from playwright.async_api import BrowserContext, Page, Playwright, async_playwright, expect

from smppbridge.config import parse_config
from smppbridge.core.passwords import hash_password
from smppbridge.node.node import Node
from smppbridge.text.encoding import gsm_encode
from tests.integration.esme import Esme

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
                 "--no-first-run", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync"]
ADMIN = "an-admin-token-of-some-length"
#: a zone without summer time, so that the offset on the pages is always +09:00
ZONE = "Asia/Tokyo"
#: Playwright's waits, in ms: far above what a page or a receipt takes here
WAIT_MS = 15_000

expect.set_options(timeout=WAIT_MS)
pytestmark = pytest.mark.skipif(not CHROMIUM.exists(),
                                reason="needs Debian's chromium at /usr/bin/chromium "
                                       "(.ci/run installs it)")


def _config(tmp_path: Path, *, admin_tokens: bool = True) -> str:
    tokens = f'admin_tokens = ["{ADMIN}"]' if admin_tokens else ""
    return f"""
[smpp]
listen = "127.0.0.1:0"
shutdown_grace = 2.0
[http]
listen = "127.0.0.1:0"
timezone = "{ZONE}"
{tokens}
[store]
url = "sqlite:///{tmp_path}/console.db"
[[accounts]]
system_id = "acme"
password = "pw"
providers = ["sim"]
[[accounts]]
system_id = "other"
password = "{hash_password("secret", log2_n=10)}"
providers = ["sim"]
[[providers]]
name = "sim"
type = "simulator"
poll_interval = 0.1
simulator = {{ deliver_after = 0.2 }}
"""


async def _start(tmp_path: Path, **kwargs: Any) -> Node:
    node = Node(parse_config(_config(tmp_path, **kwargs), env={}))
    await node.start()
    return node


@pytest.fixture
async def node(tmp_path: Path) -> AsyncIterator[Node]:
    n = await _start(tmp_path)
    try:
        yield n
    finally:
        await n.stop()


def _base(node: Node) -> str:
    assert node.http_address is not None
    host, port = node.http_address
    return f"http://{host}:{port}"


class Browser:
    """Chromium contexts, each with a fresh user-data dir (no state shared between
    tests or contexts); every one is closed at teardown."""

    def __init__(self, pw: Playwright, tmp_path: Path) -> None:
        self.pw = pw
        self.tmp_path = tmp_path
        self.contexts: list[BrowserContext] = []

    async def open(self, *, javascript: bool = True) -> Page:
        profile = self.tmp_path / f"profile-{len(self.contexts)}"
        context = await self.pw.chromium.launch_persistent_context(
            str(profile), executable_path=str(CHROMIUM), args=CHROMIUM_ARGS, headless=True,
            java_script_enabled=javascript, viewport={"width": 1280, "height": 900})
        context.set_default_timeout(WAIT_MS)
        self.contexts.append(context)
        return context.pages[0] if context.pages else await context.new_page()

    async def close(self) -> None:
        for context in self.contexts:
            await context.close()


@pytest.fixture
async def browser(tmp_path: Path) -> AsyncIterator[Browser]:
    async with async_playwright() as pw:
        b = Browser(pw, tmp_path)
        try:
            yield b
        finally:
            await b.close()


async def _bind(node: Node, system_id: str = "acme", password: str = "pw") -> Esme:
    esme = await asyncio.to_thread(Esme, node.smpp.addresses["smpp"][1], system_id, password)
    esme.thread.start()
    return esme


async def _submit(esme: Esme, text: str, to: str) -> str:
    """One submit_sm asking for a receipt; its message_id."""
    before = len(esme.resps)
    await asyncio.to_thread(
        esme.client.send_message, source_addr_ton=5, source_addr="Shop", dest_addr_ton=1,
        dest_addr_npi=1, destination_addr=to, short_message=gsm_encode(text),
        registered_delivery=1)
    assert await asyncio.to_thread(esme.wait, lambda e: len(e.resps) > before, 5)
    return str(esme.resps[before].message_id.decode())


async def _receipts(esme: Esme, n: int) -> None:
    assert await asyncio.to_thread(esme.wait, lambda e: len(e.receipts) >= n, 10), \
        "the receipts did not come"


async def _listed(page: Page) -> list[str]:
    """The message ids of the results table, in its order."""
    return await page.locator("#results tbody a[href^='/messages/']").all_inner_texts()


async def _login_operator(page: Page, base: str) -> None:
    await page.goto(f"{base}/login")
    await page.fill("#operator-login input[name=token]", ADMIN)
    await page.click("#operator-login button[type=submit]")
    await page.wait_for_url(f"{base}/")


async def _login_account(page: Page, base: str, system_id: str, password: str) -> None:
    await page.goto(f"{base}/login")
    await page.fill("#account-login input[name=system_id]", system_id)
    await page.fill("#account-login input[name=password]", password)
    await page.click("#account-login button[type=submit]")


async def test_the_operator_logs_in_and_the_chart_follows_the_traffic(
        node: Node, browser: Browser, tmp_path: Path) -> None:
    """An operator logs in with an admin token and lands on the overview, whose chart
    (uPlot over /api/v1/stats, read with the session cookie) is drawn; while an ESME
    submits, the chart redraws with the new submits and the live tiles (htmx) count
    them and the open bind."""
    base = _base(node)
    page = await browser.open()
    await page.goto(f"{base}/")
    await page.wait_for_url("**/login?next=%2F")  # a login is needed
    await _login_operator(page, base)
    assert await page.inner_text("#who") == "operator"
    chart = page.locator("#chart")
    await page.wait_for_selector("#chart canvas")
    await expect(chart).not_to_have_attribute("data-points", "0")
    before = int(await chart.get_attribute("data-submitted") or "0")
    pixels = await page.eval_on_selector("#chart canvas", "c => c.toDataURL()")
    esme = await _bind(node)
    try:
        for i in range(6):
            await _submit(esme, f"traffic {i}", f"7900100000{i}")
        await expect(chart).to_have_attribute("data-submitted", str(before + 6))
        assert await page.eval_on_selector("#chart canvas", "c => c.toDataURL()") != pixels
        await expect(page.locator("#submitted-15m")).to_have_text("6")
        await expect(page.locator("#binds-open")).to_have_text("1")
        await page.wait_for_selector("#panel td.ok")  # the provider's health or breaker
        await page.screenshot(path=tmp_path / "overview.png", full_page=True)
    finally:
        await asyncio.to_thread(esme.close)


async def test_a_message_found_by_destination_shows_its_receipt_and_comment(
        node: Node, browser: Browser, tmp_path: Path) -> None:
    """A message sent with smpplib is found by its destination in the search form
    (htmx swaps the results in place, the address bar follows), and its detail page
    shows DELIVRD, its comment (the text after ~~~), the timeline with the provider
    and the receipt delivered to the account, every time in the configured zone with
    its offset."""
    esme = await _bind(node)
    try:
        message_id = await _submit(esme, "hello console\n~~~\norder 42", "79001112233")
        await _submit(esme, "another one", "79001112299")
        await _receipts(esme, 2)
    finally:
        await asyncio.to_thread(esme.close)
    base = _base(node)
    page = await browser.open()
    await _login_operator(page, base)
    await page.click("nav >> text=Messages")
    await page.evaluate("window.sameDocument = true")
    await page.fill("#search input[name=to]", "79001112233")
    await page.click("#search button[type=submit]")
    await page.wait_for_url("**/messages?to=79001112233**")
    rows = page.locator("#results tbody tr")
    await rows.filter(has_text="79001112299").wait_for(state="detached")
    assert await rows.count() == 1
    assert await page.evaluate("window.sameDocument") is True  # htmx swapped the results
    assert "order 42" in await rows.first.inner_text()
    await page.click(f"#results a:text-is('{message_id}')")
    await page.wait_for_url(f"{base}/messages/{message_id}")
    fields = await page.inner_text("#fields")
    assert "DELIVRD" in fields
    assert "+09:00" in fields
    assert await page.inner_text("#message-comment") == "order 42"
    assert await page.inner_text("#message-text") == "hello console"
    timeline = await page.inner_text("#timeline")
    assert "sent to sim" in timeline
    assert "accepted" in timeline
    receipts = await page.inner_text("#receipts")
    assert "delivered" in receipts
    assert "acme" in receipts
    await page.screenshot(path=tmp_path / "message.png", full_page=True)


async def test_an_operator_disconnects_a_bind(node: Node, browser: Browser,
                                              tmp_path: Path) -> None:
    """The binds page lists the ESME's bind; its Disconnect button (a POST form with
    the CSRF token) sends unbind: the page says so, the ESME's session ends, and the
    self-refreshing table (htmx) shows no bind."""
    esme = await _bind(node)
    try:
        base = _base(node)
        page = await browser.open()
        await _login_operator(page, base)
        await page.goto(f"{base}/binds")
        row = page.locator("#binds tbody tr", has_text="acme")
        assert "transceiver" in await row.inner_text()
        await page.screenshot(path=tmp_path / "binds.png", full_page=True)
        await row.locator("button:text('Disconnect')").click()
        await page.wait_for_selector("#binds-notice")
        assert "Unbind sent" in await page.inner_text("#binds-notice")
        await asyncio.to_thread(esme.thread.join, 15)
        assert not esme.thread.is_alive(), "the ESME is still bound"
        await page.wait_for_selector("#binds td.empty")
        await page.screenshot(path=tmp_path / "binds-after.png", full_page=True)
    finally:
        await asyncio.to_thread(esme.close)


async def test_an_account_sees_only_its_own(node: Node, browser: Browser,
                                            tmp_path: Path) -> None:
    """Account acme logs in with its SMPP credentials: its messages list has its own
    message only, another account's message opened by its URL answers a 404 page (as
    if it did not exist), asking for the other account by filter is 404 too, and the
    operators' pages answer 403."""
    mine_esme = await _bind(node)
    theirs_esme = await _bind(node, "other", "secret")
    try:
        mine = await _submit(mine_esme, "mine", "79002220001")
        theirs = await _submit(theirs_esme, "theirs", "79002220002")
    finally:
        await asyncio.to_thread(mine_esme.close)
        await asyncio.to_thread(theirs_esme.close)
    base = _base(node)
    page = await browser.open()
    await _login_account(page, base, "acme", "pw")
    await page.wait_for_url(f"{base}/")
    assert await page.inner_text("#who") == "account acme"
    assert await page.locator("nav >> text=Binds").count() == 0
    await page.goto(f"{base}/messages")
    assert await _listed(page) == [mine]
    response = await page.goto(f"{base}/messages/{theirs}")
    assert response is not None
    assert response.status == 404
    assert "No such message" in await page.inner_text("h1")
    assert "theirs" not in await page.content()
    await page.screenshot(path=tmp_path / "not-found.png", full_page=True)
    response = await page.goto(f"{base}/messages?account=other")
    assert response is not None
    assert response.status == 404
    response = await page.goto(f"{base}/binds")
    assert response is not None
    assert response.status == 403
    response = await page.goto(f"{base}/messages/{mine}")
    assert response is not None
    assert response.status == 200


async def test_a_wrong_login_is_told_and_logout_ends_the_session(
        node: Node, browser: Browser, tmp_path: Path) -> None:
    """A wrong password and a wrong token each get a clear message on the login page
    (401); after a good login, Log out ends the session: the pages ask for a login
    again, and the old cookie, put back, no longer opens them."""
    base = _base(node)
    page = await browser.open()
    await _login_account(page, base, "acme", "wrong")
    assert "Wrong system_id or password" in await page.inner_text("#login-error")
    assert await page.input_value("#account-login input[name=system_id]") == "acme"
    await page.fill("#operator-login input[name=token]", "not-the-token-at-all")
    await page.click("#operator-login button[type=submit]")
    assert "Wrong admin token" in await page.inner_text("#login-error")
    await page.screenshot(path=tmp_path / "wrong-login.png", full_page=True)
    await _login_operator(page, base)
    cookies = await page.context.cookies(base)
    (session,) = [c for c in cookies if c["name"] == "smppbridge_session"]
    assert session["httpOnly"]
    assert session["sameSite"] == "Strict"
    await page.click("#logout")
    await page.wait_for_url("**/login?out=1")
    assert "logged out" in await page.inner_text("main")
    await page.goto(f"{base}/messages")
    await page.wait_for_url("**/login?next=%2Fmessages")
    await page.context.add_cookies([{"name": "smppbridge_session",
                                     "value": session["value"], "url": base}])
    await page.goto(f"{base}/providers")
    await page.wait_for_url("**/login?next=%2Fproviders")
    await page.screenshot(path=tmp_path / "logged-out.png", full_page=True)


async def test_search_paging_and_detail_work_without_javascript(
        node: Node, browser: Browser, tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch) -> None:
    """With JavaScript off, the login, the search form (a plain GET), the older-page
    link (the cursor) and the detail page all work: htmx only enhances."""
    monkeypatch.setattr("smppbridge.node.console.routes.PAGE_SIZE", 2)
    esme = await _bind(node)
    try:
        ids = [await _submit(esme, f"no js {i}\n~~~\nnote {i}", "79003330001")
               for i in range(3)]
        await _receipts(esme, 3)
    finally:
        await asyncio.to_thread(esme.close)
    base = _base(node)
    page = await browser.open(javascript=False)
    await _login_operator(page, base)
    await page.goto(f"{base}/messages")
    await page.fill("#search input[name=to]", "79003330001")
    await page.click("#search button[type=submit]")
    await page.wait_for_url("**/messages?to=79003330001**")
    assert await _listed(page) == [ids[2], ids[1]]
    await page.click("#next-page")
    await page.wait_for_url("**cursor=**")
    assert await _listed(page) == [ids[0]]
    await page.click(f"#results a:text-is('{ids[0]}')")
    await page.wait_for_url(f"{base}/messages/{ids[0]}")
    assert "DELIVRD" in await page.inner_text("#fields")
    assert await page.inner_text("#message-comment") == "note 0"
    await page.screenshot(path=tmp_path / "no-js.png", full_page=True)


async def test_a_post_without_the_csrf_token_is_refused(node: Node, browser: Browser,
                                                         tmp_path: Path) -> None:
    """The disconnect form with its token removed, a logout without a token and one
    with another token are refused (403): the bind stays, the session stays."""
    esme = await _bind(node)
    try:
        base = _base(node)
        page = await browser.open()
        await _login_operator(page, base)
        await page.goto(f"{base}/binds")
        await page.eval_on_selector_all("#binds input[name=csrf]",
                                        "inputs => inputs.forEach(i => i.remove())")
        async with page.expect_navigation():
            await page.locator("#binds button:text('Disconnect')").first.click()
        assert "Form refused" in await page.inner_text("h1")
        await page.screenshot(path=tmp_path / "csrf.png", full_page=True)
        assert len(node.local_binds()) == 1
        assert esme.thread.is_alive()
        for form in ({}, {"csrf": "a-token-of-another-session"}):
            r = await page.request.post(f"{base}/logout", form=form, max_redirects=0)
            assert r.status == 403
        response = await page.goto(f"{base}/providers")
        assert response is not None
        assert response.status == 200  # still logged in
    finally:
        await asyncio.to_thread(esme.close)


async def test_texts_and_comments_are_shown_as_text_never_as_html(
        node: Node, browser: Browser, tmp_path: Path) -> None:
    """A message whose text and comment are markup (a script, an image with onerror)
    is shown literally in the list and on its page: nothing of it runs or becomes an
    element."""
    evil = "<script>window.pwned=1</script><img src=x onerror=window.pwned=2>"
    esme = await _bind(node)
    try:
        message_id = await _submit(esme, f"{evil}\n~~~\n<b>bold</b>", "79004440001")
    finally:
        await asyncio.to_thread(esme.close)
    base = _base(node)
    page = await browser.open()
    dialogs: list[str] = []
    page.on("dialog", lambda d: dialogs.append(d.message))
    await _login_operator(page, base)
    for path in ("/messages", f"/messages/{message_id}"):
        await page.goto(base + path)
        assert await page.evaluate("window.pwned") is None
        assert await page.locator("main img, main b, main script").count() == 0
    assert await page.inner_text("#message-text") == evil
    assert await page.inner_text("#message-comment") == "<b>bold</b>"
    raw = await (await page.request.get(f"{base}/messages/{message_id}")).text()
    assert "&lt;script&gt;window.pwned=1&lt;/script&gt;" in raw
    assert "<script>window.pwned" not in raw
    assert dialogs == []
    await page.screenshot(path=tmp_path / "escaped.png", full_page=True)


async def test_the_csv_link_works_with_the_session_but_an_api_delete_does_not(
        node: Node, browser: Browser, tmp_path: Path) -> None:
    """The CSV link of a search (to /api/v1/messages.csv, same filters) answers with
    the console's cookie alone, with the account's own messages only; the API's DELETE
    does not take the cookie (401: it needs a header credential)."""
    esme = await _bind(node)
    other = await _bind(node, "other", "secret")
    try:
        mine = await _submit(esme, "for the csv", "79005550001")
        await _submit(esme, "not this one", "79005550002")
        await _submit(other, "not mine", "79005550001")
        base = _base(node)
        page = await browser.open()
        await _login_account(page, base, "acme", "pw")
        await page.wait_for_url(f"{base}/")
        await page.goto(f"{base}/messages?to=79005550001")
        href = await page.get_attribute("#csv-link", "href")
        assert href == "/api/v1/messages.csv?to=79005550001"
        r = await page.request.get(base + href)
        assert r.status == 200
        assert r.headers["content-type"].startswith("text/csv")
        rows = list(csv.DictReader(io.StringIO(await r.text())))
        assert [row["id"] for row in rows] == [mine]
        operator = await browser.open()
        await _login_operator(operator, base)
        (bind,) = [b for b in node.local_binds() if b.system_id == "acme"]
        r = await operator.request.delete(f"{base}/api/v1/binds/{bind.id}")
        assert r.status == 401
        assert len(node.local_binds()) == 2
        r = await operator.request.get(f"{base}/api/v1/binds")
        assert r.status == 200
        await page.screenshot(path=tmp_path / "csv.png", full_page=True)
    finally:
        await asyncio.to_thread(esme.close)
        await asyncio.to_thread(other.close)


async def test_the_demo_console_is_open_without_tokens_on_loopback(
        tmp_path: Path, browser: Browser) -> None:
    """With no admin tokens and a loopback listener (the demo) the console opens as an
    operator without a login, and still offers a login link; its forms carry a CSRF
    token all the same (a visitor session)."""
    node = await _start(tmp_path, admin_tokens=False)
    try:
        base = _base(node)
        page = await browser.open()
        await page.goto(f"{base}/")
        assert "open console" in await page.inner_text("#who")
        assert await page.get_attribute("#login-link", "href") == "/login?next=%2F"
        await page.wait_for_selector("#chart canvas")
        esme = await _bind(node)
        try:
            await page.goto(f"{base}/binds")
            token = await page.get_attribute("#binds input[name=csrf]", "value")
            assert token
            await page.locator("#binds button:text('Disconnect')").click()
            await page.wait_for_selector("#binds-notice")
            await asyncio.to_thread(esme.thread.join, 15)
            assert not esme.thread.is_alive()
        finally:
            await asyncio.to_thread(esme.close)
        await page.screenshot(path=tmp_path / "open.png", full_page=True)
        async with httpx.AsyncClient(base_url=base) as client:
            # without the visitor's cookie and token, the same POST is refused
            r = await client.post("/binds/disconnect", data={"id": "x:1", "csrf": token})
            assert r.status_code == 403
    finally:
        await node.stop()
