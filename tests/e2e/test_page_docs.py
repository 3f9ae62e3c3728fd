"""/docs renders offline: every asset comes from the app itself (defect 8); /redoc leads there."""

from __future__ import annotations

from ..helpers import HANG_GUARD_MS, opened


def test_swagger_ui_renders_with_no_request_leaving_the_host(server, browser):
    with opened(browser, server, go=False) as (page, log):
        page.goto(f"{server}/docs", wait_until="load")
        assert not log["external"], f"/docs made requests off the host: {log['external']}"
        page.locator(".swagger-ui .info .title").filter(has_text="n2n").wait_for(timeout=HANG_GUARD_MS)
        page.locator(".opblock-summary-path", has_text="/denoise").first.wait_for(timeout=HANG_GUARD_MS)
        assert not log["external"], f"/docs made requests off the host: {log['external']}"
        assert not log["errors"] and not log["page_errors"], (log["errors"], log["page_errors"])


def test_redoc_leads_to_the_offline_docs(server, browser):
    with opened(browser, server, go=False) as (page, log):
        page.goto(f"{server}/redoc", wait_until="load")
        page.locator(".swagger-ui .info .title").filter(has_text="n2n").wait_for(timeout=HANG_GUARD_MS)
        assert not log["external"], f"/redoc made requests off the host: {log['external']}"


def test_the_page_links_to_working_docs(server, browser):
    with opened(browser, server) as (page, log):
        page.click("a[href='/docs']")
        page.locator(".swagger-ui .info .title").filter(has_text="n2n").wait_for(timeout=HANG_GUARD_MS)
        assert not log["external"], log["external"]
