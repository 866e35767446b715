"""The dashboard in a real headless Chromium: live progress, live status, the cancel button, the
"retry failed" button.

Needs Chromium (Debian: ``apt-get install chromium``; elsewhere set ``PGQUEUE_CHROMIUM`` to the
executable) and the ``playwright`` package; the browsers Playwright would download are not used.
Skips, saying why, when either is missing.
"""

from __future__ import annotations

import asyncio
import os
import shutil
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from fastapi import FastAPI

from pgqueue import JobContext, PgQueue
from pgqueue.fastapi import create_router
from pgqueue.testing import drain

from .http_helpers import serve

pytestmark = pytest.mark.browser

TIMEOUT_MS = 60_000
CHROMIUM_ARGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
    "--disable-component-update", "--disable-sync", "--no-first-run",
]


def _chromium() -> str | None:
    candidates = [os.environ.get("PGQUEUE_CHROMIUM"), shutil.which("chromium"),
                  shutil.which("chromium-browser"), "/usr/bin/chromium"]
    return next((c for c in candidates if c and Path(c).is_file()), None)


@pytest.fixture
async def dashboard(pgq: PgQueue) -> AsyncIterator[str]:
    """The URL of ``pgq``'s dashboard, served on a free port under a prefix."""
    app = FastAPI()
    app.include_router(create_router(pgq), prefix="/admin/jobs")
    async with serve(app) as url:
        yield f"{url}/admin/jobs/"


@pytest.fixture
async def page(dashboard: str) -> AsyncIterator[Any]:
    """A page of a headless Chromium; fails the test on any JavaScript error."""
    executable = _chromium()
    if executable is None:
        pytest.skip("no Chromium found: install it (Debian: apt-get install chromium) or set "
                    "PGQUEUE_CHROMIUM to its executable")
    playwright_api = pytest.importorskip(
        "playwright.async_api", reason="the playwright package is not installed"
    )
    async with playwright_api.async_playwright() as playwright:
        browser = await playwright.chromium.launch(executable_path=executable, args=CHROMIUM_ARGS)
        page = await browser.new_page(viewport={"width": 1280, "height": 900})
        page.set_default_timeout(TIMEOUT_MS)
        errors: list[str] = []
        page.on("pageerror", lambda error: errors.append(str(error)))
        try:
            yield page
        finally:
            await page.close()  # closes its event streams before the server stops
            await browser.close()
        assert errors == [], f"JavaScript errors on the page: {errors}"


def expect(locator: Any) -> Any:
    from playwright.async_api import expect

    return expect(locator)


async def test_progress_bar_moves_and_status_turns_succeeded(
    pgq: PgQueue, page: Any, dashboard: str
):
    gates = [asyncio.Event(), asyncio.Event()]

    @pgq.task(name="two_steps")
    async def two_steps(ctx: JobContext) -> str:
        await ctx.progress(20, "first step")
        await gates[0].wait()
        await ctx.progress(60, "second step")
        await ctx.log("second step started")
        await gates[1].wait()
        return "ok"

    job = await two_steps.enqueue()
    await page.goto(f"{dashboard}ui/jobs/{job.id}")
    await expect(page.locator("#job-status")).to_have_text("queued")
    await page.evaluate("window.notReloaded = true")
    label = page.locator("#live .progress-lg .progress-label")

    async with pgq.worker():
        await expect(label).to_have_text("20%", timeout=TIMEOUT_MS)
        await expect(page.locator("#job-status")).to_have_text("running")
        await expect(page.locator("#progress-message")).to_have_text("first step")
        gates[0].set()
        await expect(label).to_have_text("60%", timeout=TIMEOUT_MS)
        await expect(page.locator("#job-logs li")).to_contain_text(["second step started"])
        gates[1].set()
        await expect(page.locator("#job-status")).to_have_text("succeeded", timeout=TIMEOUT_MS)

    await expect(label).to_have_text("100%")
    await expect(page.locator("#job-result")).to_contain_text('"ok"')
    assert await page.evaluate("window.notReloaded") is True  # all of it arrived live


async def test_cancel_button_stops_a_running_job(pgq: PgQueue, page: Any, dashboard: str):
    started = asyncio.Event()

    @pgq.task(name="endless")
    async def endless() -> None:
        started.set()
        await asyncio.Event().wait()

    job = await endless.enqueue()
    async with pgq.worker():
        await asyncio.wait_for(started.wait(), TIMEOUT_MS / 1000)
        await page.goto(f"{dashboard}ui/jobs/{job.id}")
        await expect(page.locator("#job-status")).to_have_text("running")
        page.once("dialog", lambda dialog: asyncio.ensure_future(dialog.accept()))
        await page.locator("#cancel-job").click()
        await expect(page.locator("#job-status")).to_have_text("cancelled", timeout=TIMEOUT_MS)
        await expect(page.locator("#retry-job")).to_be_visible()
        assert (await pgq.wait(job.id, timeout=TIMEOUT_MS / 1000)).status == "cancelled"


async def test_overview_counts_follow_the_jobs_live(pgq: PgQueue, page: Any, dashboard: str):
    @pgq.task(name="quick")
    def quick() -> None: ...

    await page.goto(dashboard)
    succeeded = page.locator('[data-total="succeeded"]')
    await expect(succeeded).to_have_text("0")
    await expect(page.locator("#live-indicator")).to_have_attribute("data-state", "live")
    jobs = [await quick.enqueue() for _ in range(3)]
    async with pgq.worker():
        await expect(succeeded).to_have_text("3", timeout=TIMEOUT_MS)
    for job in jobs:
        await expect(page.locator(f'tr[data-job-id="{job.id}"] .badge').first).to_have_text(
            "succeeded")


async def test_a_queue_limit_is_changed_from_its_page(pgq: PgQueue, page: Any, dashboard: str):
    await pgq.configure_queue("emails", concurrency=2)
    await page.goto(dashboard)
    await page.get_by_role("link", name="0 / 2 running").click()
    await expect(page.locator("#limits-text")).to_have_text("0 / 2 running")
    await page.locator("input[name=concurrency]").fill("")
    await page.locator("input[name=rate]").fill("100")
    await page.locator("input[name=period]").fill("60")
    await page.get_by_role("button", name="Save limits").click()
    await expect(page.locator("#limits-text")).to_have_text("100 per 60 s")
    assert await pgq.queue_limits("emails") == {
        "concurrency": None, "rate": 100, "period": 60.0, "group_concurrency": None}


async def test_retry_failed_button_retries_one_queues_failed_jobs_after_confirming(
    pgq: PgQueue, page: Any, dashboard: str
):
    @pgq.task(name="doomed", max_attempts=1)
    async def doomed() -> None:
        raise RuntimeError("no luck")

    in_a = [await doomed.using(queue="a").enqueue() for _ in range(2)]
    in_b = await doomed.using(queue="b").enqueue()
    await drain(pgq)
    await page.goto(dashboard)
    button = page.locator('tr[data-queue="a"] button.retry-failed')
    asked: list[str] = []

    def answer(accept: bool) -> Any:
        def on_dialog(dialog: Any) -> None:
            asked.append(dialog.message)
            asyncio.ensure_future(dialog.accept() if accept else dialog.dismiss())
        return on_dialog

    page.once("dialog", answer(False))
    await button.click()
    await expect(page.locator("#toast")).to_be_hidden()
    assert asked == ["Retry all 2 failed jobs of queue a?"]
    assert {(await pgq.get_job(job.id)).status for job in in_a} == {"failed"}

    page.once("dialog", answer(True))
    await button.click()
    await expect(page.locator("#toast")).to_have_text("Retried 2 jobs", timeout=TIMEOUT_MS)
    assert {(await pgq.get_job(job.id)).status for job in in_a} == {"queued"}
    assert (await pgq.get_job(in_b.id)).status == "failed"
    await expect(button).to_have_count(0, timeout=TIMEOUT_MS)  # the page refreshed: none failed
    await expect(page.locator('tr[data-queue="b"] button.retry-failed')).to_be_visible()
