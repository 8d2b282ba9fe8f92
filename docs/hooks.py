"""MkDocs hooks (``hooks:`` in mkdocs.yml): pages generated from the repository at build time.

- ``configuration/reference.md``: every option, ini key and job-table key, from the code
  (``training_plugin.reference.markdown``), so the reference cannot drift from the parser.
- ``changelog.md``: the repository's CHANGELOG.md, so the history has one source.
"""

from __future__ import annotations

from pathlib import Path

from mkdocs.structure.files import File, Files

from training_plugin import reference

REFERENCE_PAGE = "configuration/reference.md"
CHANGELOG_PAGE = "changelog.md"


def on_files(files: Files, config) -> Files:
    """Add the generated pages to the site's files (before the nav is built)."""
    root = Path(config["config_file_path"]).parent
    files.append(File.generated(config, REFERENCE_PAGE, content=reference.markdown()))
    changelog = (root / "CHANGELOG.md").read_text(encoding="utf-8")
    files.append(File.generated(config, CHANGELOG_PAGE, content=changelog))
    return files
