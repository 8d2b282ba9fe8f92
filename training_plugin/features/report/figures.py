"""A job's ``figures/`` in the report: which files belong to this run, and each one embedded
as a data URI (raster images downscaled with Pillow, imported only when there is one).  Only
regular files reached without a symbolic link are read (``schema.link_problem``); a link is
named in a note, never followed."""

from __future__ import annotations

import base64
import io
from pathlib import Path

from training_plugin import schema
from training_plugin.features.report.format import esc

#: Where a job leaves images for the report (inside its output directory).
FIGURES_DIR = "figures"
#: Image types embedded from ``figures/``, by suffix.
FIGURE_TYPES = {".png": "image/png", ".svg": "image/svg+xml", ".jpg": "image/jpeg",
                ".jpeg": "image/jpeg"}
#: Raster figures are downscaled to fit this many pixels on their longer side.
MAX_FIGURE_PX = 640
#: At most this many figures per job are embedded (the others are named).
MAX_FIGURES = 24
#: A figure still larger than this (bytes, after downscaling) is named, not embedded.
MAX_FIGURE_BYTES = 600_000


def downscale(path: Path, max_px: int = MAX_FIGURE_PX) -> tuple[bytes, str, int, int]:
    """The bytes, MIME type and size of a raster figure, downscaled to ``max_px`` and
    re-encoded (256-colour PNG, or JPEG for photographs) when that is smaller."""
    from PIL import Image

    raw = path.read_bytes()
    with Image.open(io.BytesIO(raw)) as image:
        image.load()
        fmt_in = image.format
        width, height = image.size
        resized = max(width, height) > max_px
        if resized:
            image.thumbnail((max_px, max_px), Image.Resampling.LANCZOS)
        candidates: list[tuple[bytes, str]] = []
        if not resized and fmt_in in ("PNG", "JPEG"):
            candidates.append((raw, "image/png" if fmt_in == "PNG" else "image/jpeg"))
        rgba = image.convert("RGBA")
        buffer = io.BytesIO()
        rgba.quantize(256, method=Image.Quantize.FASTOCTREE).save(buffer, "PNG", optimize=True)
        candidates.append((buffer.getvalue(), "image/png"))
        if fmt_in == "JPEG" or (resized and fmt_in != "PNG"):
            buffer = io.BytesIO()
            image.convert("RGB").save(buffer, "JPEG", quality=85, optimize=True)
            candidates.append((buffer.getvalue(), "image/jpeg"))
        data, mime = min(candidates, key=lambda c: len(c[0]))
        return data, mime, image.size[0], image.size[1]


def figure_files(folder: Path, since: float | None,
                 root: Path | None = None) -> tuple[list[Path], list[str], list[str]]:
    """The figures in ``folder`` (sorted by name) written at or after ``since`` (epoch s;
    None: all), the names of the older ones, which an earlier run left, and why each figure
    that is not a plain file of ``root`` (the job's folder; default: ``folder``'s parent) is
    left out ("figures/x.svg is a symbolic link (to ...)")."""
    root = folder.parent if root is None else root
    try:
        found = sorted(p for p in folder.iterdir() if p.suffix.lower() in FIGURE_TYPES)
    except OSError:
        return [], [], []
    files, notes = [], []
    for path in found:
        problem = schema.link_problem(path, root)
        if problem is None:
            files.append(path)
        elif path.is_symlink() or "symbolic link" in problem:
            notes.append(f"{problem}; not embedded")
    linked = list(dict.fromkeys(notes))  # a linked figures/ names itself once
    if since is None:
        return files, [], linked
    fresh, stale = [], []
    for path in files:
        try:
            (fresh if path.stat().st_mtime >= since else stale).append(path)
        except OSError:
            pass
    return fresh, [p.name for p in stale], linked


def figure_html(path: Path) -> tuple[str, int]:
    """An ``<img>`` (data URI) with caption for one figure, and the bytes embedded; a note
    instead when the file cannot be read or stays too large."""
    caption = f"<figcaption>{esc(path.stem.replace('_', ' '))}</figcaption>"
    try:
        if path.suffix.lower() == ".svg":
            data, mime, size = path.read_bytes(), "image/svg+xml", ""
        else:
            data, mime, width, height = downscale(path)
            size = f' width="{width}" height="{height}"'
    except Exception as exc:  # a broken figure is named in the report, never fatal
        return (f'<figure class="tp-fig tp-fig-bad"><div>{esc(path.name)} could not be read: '
                f"{esc(type(exc).__name__)}: {esc(exc)}</div>{caption}</figure>", 0)
    if len(data) > MAX_FIGURE_BYTES:
        return (f'<figure class="tp-fig tp-fig-bad"><div>{esc(path.name)} is '
                f"{len(data) // 1024} KiB even when downscaled; not embedded</div>"
                f"{caption}</figure>", 0)
    uri = f"data:{mime};base64,{base64.b64encode(data).decode('ascii')}"
    return (f'<figure class="tp-fig"><img src="{uri}"{size} alt="{esc(path.name)}" '
            f'title="{esc(path.name)}">{caption}</figure>', len(uri))


def figures_html(folder: Path, since: float | None,
                 root: Path | None = None) -> tuple[str, int]:
    """Every figure of ``folder`` written at or after ``since``, embedded (the older ones
    named, links noted: see ``figure_files``); and the bytes embedded."""
    fresh, stale, linked = figure_files(folder, since, root)
    if not fresh and not stale and not linked:
        return "", 0
    parts, total = [], 0
    for path in fresh[:MAX_FIGURES]:
        text, size = figure_html(path)
        parts.append(text)
        total += size
    notes = []
    if len(fresh) > MAX_FIGURES:
        notes.append(f"{len(fresh) - MAX_FIGURES} more figures not embedded: "
                     + ", ".join(p.name for p in fresh[MAX_FIGURES:]))
    if stale:
        notes.append(f"not shown, left by an earlier run: {', '.join(stale)}")
    notes += linked
    note = "".join(f'<div class="tp-muted">{esc(n)}</div>' for n in notes)
    return (f'<section class="tp-figures"><h4>Figures</h4><div class="tp-fig-grid">'
            f'{"".join(parts)}</div>{note}</section>', total)
