"""The HTML report opened in a real browser: Debian's headless Chromium driven by Playwright.

No browser is downloaded: the test drives /usr/bin/chromium (``apt-get install chromium``;
``.ci/run`` installs it).  Without it the test is skipped, except in CI (``CI=true``), where a
missing browser is a failure.
"""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from report_jobs import FLAKY, SEEDED, make_project

from training_plugin.collect.attempts import MSG_PASSED_ON
from training_plugin.results import SUMMARY_FILE
from training_plugin.executors.base import cost_cell

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

        # every job's cost, as the summary writes it, in the session's overview and its extra
        summary = json.loads((pytester.path / "training-results" / SUMMARY_FILE).read_text())
        for job in summary["jobs"]:
            cell = cost_cell(job["cost"])
            assert cell.startswith("cpu ") and ", peak " in cell
            row = page.locator(".tp-overview tr", has=page.locator(f'a:text-is("{job["id"]}")'))
            assert row.locator(".tp-cost").is_visible()
            assert row.locator(".tp-cost").inner_text() == cell
            run_box = page.locator(f'.tp-job[data-job="{job["id"]}"] .tp-run .tp-cost')
            assert run_box.is_visible() and run_box.inner_text() == cell
        assert page.locator(".tp-cost-total").inner_text().startswith("cpu ")

        page.screenshot(path=str(tmp_path / "report.png"), full_page=True)
    assert not errors, errors
    assert (tmp_path / "report.png").stat().st_size > 10_000


@pytest.mark.slow
def test_report_in_chromium_pivot_best_configuration_seeds_on_hover_and_attempts(
    pytester: pytest.Pytester, tmp_path: Path,
) -> None:
    browser_or_skip()
    pytester.makeini("[pytest]\n")
    pytester.makepyfile(train_mri=SEEDED, train_flaky=FLAKY)
    result = pytester.runpytest_subprocess(
        "-p", "training_plugin", "-p", "no:randomly", "--sweep", "lr=0.1,0.2", "--repeats", "2",
        "--retries", "1", "--html=report.html", "--self-contained-html")
    result.assert_outcomes(passed=7)  # 4 cells, the flaky job, 2 configurations

    errors: list[str] = []
    with chromium_page(tmp_path, errors) as (_context, page):
        page.goto((pytester.path / "report.html").as_uri())
        page.wait_for_load_state("load")
        pivot = page.locator(".tp-pivot")
        pivot.wait_for()
        assert pivot.locator("h2").inner_text() == "Configurations (2)"
        # only the parameter that varies is a column; lr 0.2 scores higher: marked best
        heads = pivot.locator("thead th").all_inner_texts()
        assert "lr" in heads and "seed" not in heads
        best = pivot.locator("tr.tp-best")
        assert best.count() == 1 and best.is_visible()
        assert best.locator("td").first.inner_text() == "mri[lr_0.2] ★ best"
        other = pivot.locator("tbody tr:not(.tp-best)")
        assert other.locator("td").first.inner_text() == "mri[lr_0.1]"
        # each seed's value: hidden until the pointer is over the mean, then listed
        value = best.locator("td.tp-pivot-value").first
        seeds = value.locator(".tp-seeds")
        assert value.inner_text().startswith("0.7425 ± 0.0007071")
        assert not seeds.is_visible()
        value.hover()
        assert seeds.is_visible()
        assert seeds.locator("li").all_inner_texts() == ["seed 42: 0.742", "seed 43: 0.743"]
        page.mouse.move(0, 0)
        assert not seeds.is_visible()
        value.focus()  # and from the keyboard
        assert seeds.is_visible()

        # the job that passed on its second attempt says so, in its extra and the overview
        passed_on = MSG_PASSED_ON.format(n=2, earlier="attempt 1: killed by SIGKILL")[:-1]
        attempts = page.locator('.tp-job[data-job="flaky"] .tp-attempts')
        assert attempts.is_visible() and attempts.inner_text().startswith(passed_on)
        row = page.locator(".tp-overview tr", has=page.locator('a:text-is("flaky")'))
        assert row.locator(".tp-story-cell").inner_text().startswith(passed_on)
        page.screenshot(path=str(tmp_path / "pivot.png"), full_page=True)
    assert not errors, errors
