"""The docs: the generated configuration reference, the MkDocs build, and the built site in a
real browser.

The build runs ``mkdocs build --strict`` (what ``make docs`` runs) into a temp dir.  Without
MkDocs it is skipped, saying how to install it, except in CI (``CI=true``), where that is a
failure.  The browser test drives Debian's headless Chromium the way
``tests/test_report_browser.py`` does (its ``browser_or_skip`` and arguments).
"""

from __future__ import annotations

import functools
import os
import re
import subprocess
import sys
import tempfile
import threading
from collections.abc import Iterator
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import urldefrag, urlparse

import pytest
import yaml
from test_report_browser import chromium_page

from training_plugin import reference

ROOT = Path(__file__).resolve().parents[1]
INSTALL_MKDOCS = "MkDocs is not installed: pip install -e '.[docs]' (make venv installs it)"
README_MAX_LINES = 120


def nav_pages(nav: list) -> list[str]:
    """The Markdown files of the mkdocs.yml nav, in order."""
    pages: list[str] = []
    for entry in nav:
        value = next(iter(entry.values())) if isinstance(entry, dict) else entry
        pages += nav_pages(value) if isinstance(value, list) else [value]
    return pages


def page_url(page: str) -> str:
    """The site path of a nav page (``use_directory_urls``): a/b.md -> a/b/, a/index.md -> a/."""
    stem = page.removesuffix(".md")
    if stem == "index" or stem.endswith("/index"):
        stem = stem.removesuffix("index")
        return stem
    return stem + "/"


def option_names(entry: reference.Entry) -> list[str]:
    """The long option names of a reference entry (``"`--epochs`"`` -> ``["--epochs"]``)."""
    return re.findall(r"`(--[^`]+)`", entry.name)


NAV = nav_pages(yaml.safe_load((ROOT / "mkdocs.yml").read_text(encoding="utf-8"))["nav"])


# ---------------------------------------------------------------------------------------------
# the generated reference
# ---------------------------------------------------------------------------------------------
def test_every_option_ini_key_and_job_table_key_has_help_text() -> None:
    ref = reference.gather()
    assert reference.undocumented(ref) == []
    assert {"`--epochs`", "`--output-dir`", "`--compare`", "`--mlflow`"} <= {
        e.name for e in ref.options}
    assert "`training_paths`" in {e.name for e in ref.ini}
    assert all(e.name.startswith("`training_") for e in ref.ini), [e.name for e in ref.ini]
    assert "`script`" in {e.name for e in ref.table}


def test_an_entry_without_help_text_is_named() -> None:
    entry = reference.Entry("`--quiet-thing`", "switch", "`false`", "  ", "core")
    ref = reference.Reference([entry], [], [])
    assert reference.undocumented(ref) == ["option: `--quiet-thing`"]


def test_reference_lists_exactly_what_pytest_help_shows(pytester: pytest.Pytester) -> None:
    """The reference's registry (a Parser outside pytest) agrees with the real session."""
    result = pytester.runpytest("-p", "training_plugin", "--help")
    text = result.stdout.str()
    section = text.split("training jobs (training_plugin):\n", 1)[1].split("\n\n", 1)[0]
    shown_options = set(re.findall(r"^  (--[\w-]+)", section, re.M))
    shown_ini = set(re.findall(r"^  (training_\w+) \(", text, re.M))
    ref = reference.gather()
    assert {n for e in ref.options for n in option_names(e)} == shown_options
    assert {e.name.strip("`") for e in ref.ini} == shown_ini


def test_reference_page_has_every_entry_with_its_help() -> None:
    ref = reference.gather()
    page = reference.markdown(ref)
    for entry in ref.options + ref.ini + ref.table:
        assert f"| {entry.name} |" in page
    assert "(int &gt;= 1)" in page  # --epochs' help, escaped for Markdown
    assert "%%" not in page


# ---------------------------------------------------------------------------------------------
# the README stays a front door
# ---------------------------------------------------------------------------------------------
def test_the_development_page_names_every_module_of_the_plugin() -> None:
    """The module map on the development page lists each module of training_plugin once,
    and nothing that is not there (it drifts otherwise)."""
    page = (ROOT / "docs" / "development.md").read_text(encoding="utf-8")
    listed = set(re.findall(r"^([a-z_/]+\.(?:py|css))\s", page, flags=re.MULTILINE))
    package = ROOT / "training_plugin"
    present = {p.relative_to(package).as_posix() for p in package.rglob("*")
               if p.suffix in (".py", ".css") and "__pycache__" not in p.parts}
    top_level = {"conftest.py", "run_all_training.py"}
    assert sorted(present - listed) == [], "modules missing from docs/development.md"
    assert sorted(listed - present - top_level) == [], "modules listed but not in the tree"


def test_readme_is_short_and_its_links_resolve() -> None:
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    assert len(text.splitlines()) <= README_MAX_LINES
    assert "make train" in text and "make test" in text and "SYNTHETIC" in text
    links = re.findall(r"\]\(([^)#\s]+)(?:#[^)]*)?\)", text)
    local = [link for link in links if not urlparse(link).scheme]
    assert any(link.startswith("docs/") for link in local)
    missing = [link for link in local if not (ROOT / link).exists()]
    assert not missing, missing
    docs_pages = [link.removeprefix("docs/") for link in local
                  if link.startswith("docs/") and link.endswith(".md")]
    assert set(docs_pages) <= set(NAV), set(docs_pages) - set(NAV)


# ---------------------------------------------------------------------------------------------
# the site
# ---------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def site() -> Iterator[Path]:
    """The site, built as ``make docs`` builds it (``mkdocs build --strict``), in a temp dir."""
    try:
        import mkdocs  # noqa: F401
        import material  # noqa: F401
    except ImportError:
        if os.environ.get("CI") == "true":
            pytest.fail(INSTALL_MKDOCS, pytrace=False)
        pytest.skip(INSTALL_MKDOCS)
    with tempfile.TemporaryDirectory(prefix="site-") as tmp:
        out = Path(tmp) / "site"
        build = subprocess.run(
            [sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(out)],
            cwd=ROOT, capture_output=True, text=True, timeout=300,
            env={**os.environ, "NO_MKDOCS_2_WARNING": "1"},
        )
        assert build.returncode == 0, build.stdout + build.stderr
        yield out


def test_mkdocs_build_strict_makes_every_nav_page(site: Path) -> None:
    for page in NAV:
        assert (site / page_url(page) / "index.html").is_file(), page
    text = (site / "configuration/reference/index.html").read_text(encoding="utf-8")
    for entry in reference.gather().options:
        for name in option_names(entry):
            assert f"<code>{name}</code>" in text, name
    assert not (site / "hooks.py").exists()


class _QuietHandler(SimpleHTTPRequestHandler):
    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def served(site: Path) -> Iterator[str]:
    """The site over HTTP on a free loopback port (bound once and kept: no port race)."""
    handler = functools.partial(_QuietHandler, directory=str(site))
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=10)


@pytest.mark.slow
def test_site_in_chromium_every_page_loads_and_every_internal_link_resolves(
    served: str, tmp_path: Path,
) -> None:
    errors: list[str] = []
    bad: list[str] = []
    with chromium_page(tmp_path, errors) as (context, page):
        page.on("response", lambda r: bad.append(f"{r.status} {r.url}")
                if r.status >= 400 and r.url.startswith(served) else None)

        todo = [served + page_url(p) for p in NAV]
        seen: set[str] = set()
        anchors: list[tuple[str, str, str]] = []  # (from page, target page, fragment)
        ids: dict[str, set[str]] = {}
        while todo:
            url = todo.pop(0)
            if url in seen:
                continue
            seen.add(url)
            if not url.endswith(("/", ".html")):  # a file: fetched, not opened
                status = context.request.get(url).status
                assert status == 200, f"{status} {url}"
                continue
            response = page.goto(url)
            assert response is not None and response.status == 200, url
            page.wait_for_load_state("load")
            assert page.locator("article h1").count() >= 1, f"no heading on {url}"
            ids[url] = set(page.evaluate(
                "[...document.querySelectorAll('[id]')].map(e => e.id)"))
            for href in page.evaluate(
                    "[...document.querySelectorAll('a[href]')].map(a => a.href)"):
                target, fragment = urldefrag(href)
                if not target.startswith(served):
                    continue  # external: not fetched (no network here)
                todo.append(target)
                if fragment:
                    anchors.append((url, target, fragment))

        for nav_page in NAV:
            assert served + page_url(nav_page) in ids, nav_page
        missing = [f"{src} -> {target}#{frag}" for src, target, frag in anchors
                   if target in ids and frag not in ids[target]]
        assert not missing, missing

        page.goto(served + "configuration/reference/")
        page.wait_for_load_state("load")
        assert page.locator("td code", has_text="--epochs").count() >= 1
        page.screenshot(path=str(tmp_path / "docs.png"), full_page=False)
    assert not bad, bad
    assert not errors, errors
    assert len(seen) >= len(NAV)
    assert (tmp_path / "docs.png").stat().st_size > 10_000
