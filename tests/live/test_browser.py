"""The web UI in a real browser: Debian's chromium driven by Playwright against a
capshare server on loopback that drives its payments through the bundled stub.
Screenshots of every page visited go to test-artifacts/browser/."""

from __future__ import annotations

import datetime as dt
import os
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlmodel import Session

from app.config import REPO_ROOT
from app.db import make_engine
from models import Organization, Role
from tests.factories import PASSWORD, make_cluster, make_machine, make_user, make_window
from tests.live.conftest import LiveServer, wait_until

CHROMIUM = Path("/usr/bin/chromium")
ARTIFACTS = REPO_ROOT / "test-artifacts" / "browser"

pytestmark = [pytest.mark.browser, pytest.mark.slow]


@pytest.fixture
def page() -> Iterator[Any]:
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
        try:
            yield browser.new_page(viewport={"width": 1280, "height": 900})
        finally:
            browser.close()


def shot(page: Any, name: str) -> None:
    page.screenshot(path=str(ARTIFACTS / f"{name}.png"), full_page=True)


def sign_in(page: Any, base: str, email: str) -> None:
    page.goto(f"{base}/login")
    page.fill("#email", email)
    page.fill("#password", PASSWORD)
    with page.expect_navigation():
        page.click("main button[type=submit]")
    assert "/login" not in page.url, page.content()


def sign_out(page: Any) -> None:
    with page.expect_navigation():
        page.click("header button[type=submit]")


def hours(page: Any) -> float:
    return float((page.text_content("#booked-hours") or "0").replace(",", ""))


def market(database_url: str) -> dict[str, str]:
    """An operator's cluster with an owner (whose other machines are seeded here)
    and a buyer nearby."""
    engine = make_engine(database_url)
    now = dt.datetime.now(dt.UTC).replace(second=0, microsecond=0)
    with Session(engine) as session:
        operator = make_user(session, roles=(Role.operator,))
        cluster = make_cluster(
            session, operator_org=session.get(Organization, operator.org_id), lat=29.9, lon=121.84
        )
        owner = make_user(session, roles=(Role.owner,))
        buyer_org = Organization(
            name="宁波买家电器有限公司", is_buyer=True, lat=29.95, lon=121.9, city="Ningbo"
        )
        session.add(buyer_org)
        session.flush()
        buyer = make_user(session, org=buyer_org, roles=(Role.buyer,))
        # Cheap but late, dear but right at the buyer, and anodizing (at the buyer) for the
        # second step; the owner's night-shift machine, listed in the browser, is free first.
        seeded = [
            dict(name="Haitian VMC850 #1", hourly_rate_fen=4500, start=120),
            dict(name="Brother S700X2 #2", hourly_rate_fen=15000, start=130, lat=29.95, lon=121.9),
            dict(name="Anodizing line #1", hourly_rate_fen=6000, start=20, process_key="anodizing",
                 materials=["aluminium"], leasable=False, lat=29.95, lon=121.9),
        ]  # fmt: skip
        for spec in seeded:
            start = now + dt.timedelta(hours=int(spec.pop("start")))  # type: ignore[call-overload]
            machine = make_machine(session, owner=owner, cluster_id=cluster.id, **spec)
            make_window(session, machine=machine, start=start, end=start + dt.timedelta(days=6))
        session.commit()
        emails = {"owner": owner.email, "buyer": buyer.email, "operator": operator.email}
    engine.dispose()
    return emails


def test_owner_buyer_operator_scenario(live_server_with_payments: LiveServer, page: Any) -> None:
    base = live_server_with_payments.base_url
    who = market(live_server_with_payments.database_url)

    # zh-CN by default; the switch changes the language and is remembered
    page.goto(base + "/")
    assert page.get_attribute("html", "lang") == "zh-CN"
    assert page.is_visible("text=演示账号")
    shot(page, "01-home-zh")
    page.click("text=English")
    assert page.get_attribute("html", "lang") == "en"
    shot(page, "02-home-en")

    # the operator's dashboard before any work
    sign_in(page, base, who["operator"])
    page.goto(base + "/operator")
    booked_before = hours(page)
    shot(page, "03-operator-dashboard-before")
    sign_out(page)

    # an owner lists a machine with a recurring night-shift window
    sign_in(page, base, who["owner"])
    page.click("text=List a machine")
    page.fill("#name", "Haas VF-2 #7")
    page.select_option("#process_key", "milling_3axis")
    page.fill("#materials", "aluminium, steel")
    page.fill("#hourly_rate_yuan", "abc")
    page.click("main button[type=submit]")
    assert page.is_visible("#hourly_rate_yuan-error")  # the error stands beside its field
    shot(page, "04-owner-machine-field-error")
    page.fill("#hourly_rate_yuan", "88.5")
    page.click("main button[type=submit]")
    page.wait_for_selector("text=Machine listed.")
    page.click("text=Offer this time")  # Mon–Fri 20:00–08:00 is the form's default
    flash = page.text_content(".flash") or ""
    assert re.search(r"\d+ windows offered", flash), flash
    assert page.locator("svg rect").count() > 5
    shot(page, "05-owner-machine-night-shift")
    sign_out(page)

    # a buyer posts a two-step order with a drawing, sees the quote options, confirms
    sign_in(page, base, who["buyer"])
    page.click("text=Post an order")
    page.fill("#title", "Aluminium brackets")
    page.fill("#budget_yuan", "5000")
    page.select_option("#op0_process", "milling_3axis")
    page.fill("#op0_material", "aluminium")
    page.fill("#op0_quantity", "50")
    page.fill("#op0_minutes", "240")
    page.select_option("#op1_process", "anodizing")
    page.fill("#op1_material", "aluminium")
    page.fill("#op1_minutes", "120")
    page.set_input_files(
        "#attachment",
        files=[
            {"name": "bracket.pdf", "mimeType": "application/pdf", "buffer": b"%PDF-1.7 bracket"}
        ],
    )
    with page.expect_navigation():
        page.click("text=See instant quotes")
    cards = page.locator(".quote-option")
    labels = " ".join(page.locator(".quote-option h2").all_text_contents())
    assert cards.count() == 3, labels
    for label in ("cheapest", "earliest", "nearest"):
        assert label in labels, labels
    shot(page, "06-buyer-quote-options")
    with page.expect_navigation():
        cards.first.locator("button[type=submit]").click()
    assert page.text_content("#order-status") == "open"
    order_url = page.url
    shot(page, "07-buyer-order-confirmed")
    sign_out(page)

    # the operator runs a match
    sign_in(page, base, who["operator"])
    page.click("header >> text=Match runs")
    page.fill("#time_limit_s", "3")
    with page.expect_navigation():
        page.click("text=Run the matcher")
    shot(page, "08-operator-match-run-in-flight")  # queued or running: the page follows it
    wait_until(lambda: not page.locator("#run-progress").count(), "the run page shows the results")
    assert int(page.text_content("#run-proposals") or "0") == 2, page.content()
    shot(page, "08-operator-match-run")
    sign_out(page)

    # the owner accepts the proposals
    sign_in(page, base, who["owner"])
    page.click("header >> text=Proposals")
    for _ in range(2):
        with page.expect_navigation():
            page.locator("text=Accept").first.click()
        shot(page, "09-owner-proposal-accepted")
    assert page.is_visible("text=No proposals waiting.")
    sign_out(page)

    # the buyer sees the order confirmed and paid (authorized)
    sign_in(page, base, who["buyer"])
    page.goto(order_url)
    assert page.locator(".booking-state").all_text_contents() == ["confirmed", "confirmed"]

    def authorized() -> bool:  # the authorizations are tasks after the owner's answers
        page.goto(order_url)
        states: list[str] = page.locator(".money-status").all_text_contents()
        return states == ["authorized", "authorized"]

    wait_until(authorized, "both steps authorized")
    assert page.is_visible("text=bracket.pdf")
    shot(page, "10-buyer-order-paid")
    sign_out(page)

    # the operator's booked hours went up
    sign_in(page, base, who["operator"])
    page.goto(base + "/operator")
    assert hours(page) > booked_before
    shot(page, "11-operator-dashboard-after")
