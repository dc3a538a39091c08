"""The web UI in a real browser: Debian's chromium driven by Playwright against
a capshare server on loopback. Screenshots go to test-artifacts/browser/."""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlmodel import Session

from app.config import REPO_ROOT
from app.db import make_engine
from models import Organization, Role
from tests.factories import PASSWORD, make_cluster, make_user
from tests.live.conftest import LiveServer

CHROMIUM = Path("/usr/bin/chromium")
ARTIFACTS = REPO_ROOT / "test-artifacts" / "browser"

pytestmark = [pytest.mark.browser, pytest.mark.slow]


@pytest.fixture
def browser_page() -> Iterator[object]:
    if not CHROMIUM.exists():
        if os.environ.get("CI"):
            pytest.fail("CI must install Debian's chromium (.ci/run does)")
        pytest.skip("Debian's chromium is not installed")
    from playwright.sync_api import sync_playwright

    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as pw:
        browser = pw.chromium.launch(
            executable_path=str(CHROMIUM),
            args=["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking"],
        )
        page = browser.new_page()
        try:
            yield page
        finally:
            browser.close()


def shot(page: object, name: str) -> None:
    page.screenshot(path=str(ARTIFACTS / f"{name}.png"), full_page=True)  # type: ignore[attr-defined]


def sign_in(page: object, base: str, email: str) -> None:
    page.goto(f"{base}/login")  # type: ignore[attr-defined]
    page.fill("#email", email)  # type: ignore[attr-defined]
    page.fill("#password", PASSWORD)  # type: ignore[attr-defined]
    with page.expect_navigation():  # type: ignore[attr-defined]
        page.click("main button[type=submit]")  # type: ignore[attr-defined]
    assert "/login" not in page.url, page.content()  # type: ignore[attr-defined]


def test_owner_buyer_operator_in_the_browser(live_server: LiveServer, browser_page: object) -> None:
    page = browser_page
    base = live_server.base_url
    engine = make_engine(live_server.database_url)
    with Session(engine) as session:
        operator = make_user(session, roles=(Role.operator,))
        make_cluster(session, operator_org=session.get(Organization, operator.org_id))
        owner = make_user(session, roles=(Role.owner,))
        buyer = make_user(session, roles=(Role.buyer,))
        session.commit()
        emails = (owner.email, buyer.email, operator.email)
    engine.dispose()

    # zh-CN by default; the switch changes the language and is remembered
    page.goto(base + "/")  # type: ignore[attr-defined]
    assert page.get_attribute("html", "lang") == "zh-CN"  # type: ignore[attr-defined]
    shot(page, "01-home-zh")
    page.click("text=English")  # type: ignore[attr-defined]
    assert page.get_attribute("html", "lang") == "en"  # type: ignore[attr-defined]
    shot(page, "02-home-en")

    # an owner lists a machine with a recurring night-shift window
    sign_in(page, base, emails[0])
    page.click("text=List a machine")  # type: ignore[attr-defined]
    page.fill("#name", "Haas VF-2 #7")  # type: ignore[attr-defined]
    page.select_option("#process_key", "milling_3axis")  # type: ignore[attr-defined]
    page.fill("#materials", "aluminium, steel")  # type: ignore[attr-defined]
    page.fill("#hourly_rate_yuan", "abc")  # type: ignore[attr-defined]
    page.click("main button[type=submit]")  # type: ignore[attr-defined]
    assert page.is_visible("#hourly_rate_yuan-error")  # type: ignore[attr-defined]
    shot(page, "03-owner-machine-error")
    page.fill("#hourly_rate_yuan", "88.5")  # type: ignore[attr-defined]
    page.click("main button[type=submit]")  # type: ignore[attr-defined]
    page.wait_for_selector("text=Machine listed.")  # type: ignore[attr-defined]
    page.click("text=Offer this time")  # Mon–Fri 20:00–08:00 is the form's default  # type: ignore[attr-defined]
    flash = page.text_content(".flash") or ""  # type: ignore[attr-defined]
    assert re.search(r"\d+ windows offered", flash), flash
    assert page.locator("svg rect").count() > 5  # type: ignore[attr-defined]
    shot(page, "04-owner-machine-night-shift")
    page.click("text=Sign out")  # type: ignore[attr-defined]

    # a buyer posts a two-step order
    sign_in(page, base, emails[1])
    page.click("text=Post an order")  # type: ignore[attr-defined]
    page.fill("#title", "Aluminium brackets")  # type: ignore[attr-defined]
    page.select_option("#op0_process", "milling_3axis")  # type: ignore[attr-defined]
    page.fill("#op0_material", "aluminium")  # type: ignore[attr-defined]
    page.fill("#op0_quantity", "50")  # type: ignore[attr-defined]
    page.fill("#op0_minutes", "240")  # type: ignore[attr-defined]
    page.select_option("#op1_process", "anodizing")  # type: ignore[attr-defined]
    page.fill("#op1_material", "aluminium")  # type: ignore[attr-defined]
    page.fill("#op1_minutes", "120")  # type: ignore[attr-defined]
    page.click("text=Post the order")  # type: ignore[attr-defined]
    page.wait_for_selector("text=Order posted.")  # type: ignore[attr-defined]
    assert page.locator("text=anodizing").count() >= 1  # type: ignore[attr-defined]
    shot(page, "05-buyer-order")
    page.click("text=Sign out")  # type: ignore[attr-defined]

    # the operator's dashboard
    sign_in(page, base, emails[2])
    page.wait_for_selector("#booked-hours")  # type: ignore[attr-defined]
    assert page.locator("svg").count() >= 1  # type: ignore[attr-defined]
    shot(page, "06-operator-dashboard")
