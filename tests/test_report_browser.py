"""The HTML report opened in a real browser: Debian's headless Chromium driven by Playwright.

No browser is downloaded: the test drives /usr/bin/chromium (``apt-get install chromium``;
``.ci/run`` installs it).  Without it the test is skipped, except in CI (``CI=true``), where a
missing browser is a failure.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from report_jobs import make_project

pytest_plugins = ["pytester"]

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
]
INSTALL = ("the browser test needs Debian's Chromium at /usr/bin/chromium and Playwright: "
           "apt-get install chromium  and  pip install -e '.[browser]'")


def browser_or_skip() -> Any:
    """Playwright's sync API, or a skip (a failure in CI) saying how to install what lacks."""
    missing = []
    if not CHROMIUM.exists():
        missing.append(f"{CHROMIUM} not found")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        missing.append("playwright not installed")
        sync_playwright = None
    if missing:
        message = f"{'; '.join(missing)}: {INSTALL}"
        if os.environ.get("CI") == "true":
            pytest.fail(message, pytrace=False)
        pytest.skip(message)
    return sync_playwright


@contextlib.contextmanager
def chromium_page(tmp_path: Path, errors: list[str]) -> Iterator[tuple[Any, Any]]:
    """(context, page) of a headless Chromium with a fresh profile; console errors and page
    errors are appended to ``errors``.  Skips (fails in CI) without a browser."""
    sync_playwright = browser_or_skip()
    with sync_playwright() as playwright:
        context = playwright.chromium.launch_persistent_context(
            tempfile.mkdtemp(dir=tmp_path, prefix="profile-"), executable_path=str(CHROMIUM),
            headless=True, args=CHROMIUM_ARGS, viewport={"width": 1400, "height": 900},
        )
        try:
            page = context.new_page()
            page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
            page.on("pageerror", lambda exc: errors.append(str(exc)))
            yield context, page
        finally:
            context.close()


@pytest.mark.slow
def test_report_in_chromium_rows_images_badge_story_and_no_console_errors(
    pytester: pytest.Pytester, tmp_path: Path,
) -> None:
    browser_or_skip()
    make_project(pytester)
    result = pytester.runpytest_subprocess(
        "-p", "training_plugin", "--html=report.html", "--self-contained-html"
    )
    result.assert_outcomes(passed=2, failed=1)
    report = pytester.path / "report.html"

    errors: list[str] = []
    with chromium_page(tmp_path, errors) as (_context, page):
        page.goto(report.as_uri())
        page.wait_for_load_state("load")
        page.wait_for_selector(".tp-job")

        # every job has a row with the right outcome
        rows = {job: page.locator(f'tbody[id$="::{job}"] td.col-result').inner_text()
                for job in ("real", "synth", "broken")}
        assert rows == {"real": "Passed", "synth": "Passed", "broken": "Failed"}

        # every embedded image loaded (the figures: a downscaled PNG and an SVG)
        images = page.evaluate(
            """[...document.querySelectorAll('img[src^="data:"]')].map(
                   i => [i.alt, i.complete, i.naturalWidth])""")
        assert sorted(alt for alt, _, _ in images) == ["calibration.svg", "roc.png"]
        assert all(done and width > 0 for _, done, width in images), images

        # the SYNTHETIC badge is visible, in the synthetic job's row and its extra
        badge = page.locator('tbody[id$="::synth"] td.col-data .tp-synthetic')
        assert badge.is_visible() and badge.inner_text() == "SYNTHETIC"
        assert page.locator('.tp-job[data-job="synth"] .tp-banner').is_visible()
        assert page.locator('tbody[id$="::real"] .tp-synthetic').count() == 0

        # the failed job shows its story
        story = page.locator('.tp-job[data-job="broken"] .tp-story')
        assert story.is_visible()
        assert "exit code 3" in story.inner_text()
        assert "CUDA out of memory (simulated)" in story.inner_text()

        page.screenshot(path=str(tmp_path / "report.png"), full_page=True)
    assert not errors, errors
    assert (tmp_path / "report.png").stat().st_size > 10_000
