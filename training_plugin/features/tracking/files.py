"""What of a job's output folder goes to MLflow: its log, ``metrics.json``, ``manifest.json``,
``figures/`` and model files.

Only regular files reached without a symbolic link are taken (``schema.link_problem``): a link
in the job's folder (``figures/x.svg -> /etc/shadow``, a linked ``model.pt``, ``train.log`` or
``figures/``) is named in a note and never followed, so nothing outside the folder is copied
into the artifact store.
"""

from __future__ import annotations

import os
from pathlib import Path

from training_plugin import schema

#: Files of a job's output directory logged as artifacts when present.
ARTIFACT_FILES = ("train.log", "metrics.json", "manifest.json")
FIGURES_DIR = "figures"
#: Model files (top level of the output directory) logged as artifacts.
MODEL_SUFFIXES = (".joblib", ".pkl", ".pickle", ".pt", ".pth", ".onnx", ".keras", ".h5")


class JobFiles:
    """The files of one job's folder that may be logged; ``notes``: those left out, and why."""

    def __init__(self, out: Path) -> None:
        self.out = out
        self.notes: list[str] = []

    def plain(self, path: Path) -> bool:
        """Whether ``path`` is a regular file of the job's folder reached without a link (a
        link, or anything else that is there but not such a file, is noted)."""
        problem = schema.link_problem(path, self.out)
        if problem is None:
            return True
        note = f"{problem}; not logged to mlflow"
        if os.path.lexists(path) and note not in self.notes:
            self.notes.append(note)
        return False

    def own(self, path: Path, since: float) -> bool:
        """A plain file of the job's folder written at or after ``since`` (epoch s)."""
        try:
            return self.plain(path) and os.lstat(path).st_mtime >= since
        except OSError:
            return False

    def artifacts(self, log: Path, since: float) -> list[tuple[Path, str | None]]:
        """(file, artifact folder) of the log, ``ARTIFACT_FILES`` and ``figures/`` (files
        written at or after ``since``; the log always)."""
        found: list[tuple[Path, str | None]] = [(log, None)] if self.plain(log) else []
        found += [(self.out / name, None) for name in ARTIFACT_FILES
                  if self.out / name != log and self.own(self.out / name, since)]
        top = self.out / FIGURES_DIR
        if os.path.islink(top):
            self.plain(top)  # notes the linked folder
            return found
        for folder, dirs, names in os.walk(top):  # a linked folder below is listed, not entered
            where = Path(FIGURES_DIR, Path(folder).relative_to(top)).as_posix()
            for name in sorted(names) + sorted(d for d in dirs if os.path.islink(Path(folder, d))):
                if self.own(Path(folder, name), since):
                    found.append((Path(folder, name), where))
        return found

    def models(self, since: float) -> list[Path]:
        """Model files (``MODEL_SUFFIXES``) at the top of the job's folder, written at or after
        ``since``."""
        try:
            candidates = sorted(p for p in self.out.iterdir()
                                if p.suffix.lower() in MODEL_SUFFIXES)
        except OSError:
            return []
        return [p for p in candidates if self.own(p, since)]
