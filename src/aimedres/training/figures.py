"""Figures drawn from a job's out-of-fold predictions, saved as small PNGs under
``<output dir>/figures/`` (the plugin's HTML report embeds every image found there).

matplotlib (Agg backend) is imported only when a figure is drawn. A figure that fails is a
warning on stderr, never a failed training run: :func:`draw` catches the error.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np

from aimedres.training.data import log

SIZE = (5, 4)  # inches
DPI = 80


def _plt() -> Any:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def mark(fig: Any, text: str) -> None:
    """Stamp ``text`` across the figure (a diagonal watermark) and before its title (the first
    axes' title, or a figure title when that axes has none)."""
    fig.text(0.5, 0.5, text, ha="center", va="center", rotation=30, fontsize=26, color="red",
             alpha=0.25, weight="bold", transform=fig.transFigure, zorder=10)
    first = fig.axes[0] if fig.axes else None
    if first is not None and first.get_title():
        first.set_title(f"{text}: {first.get_title()}", fontsize=9, color="darkred")
    else:
        fig.suptitle(text, fontsize=9, color="darkred")


def draw(out_dir: str | Path, name: str, painter: Callable[..., None], *args: Any,
         watermark: str | None = None, **kwargs: Any) -> Path | None:
    """Run ``painter(plt, ...)`` into ``<out_dir>/figures/<name>.png``; ``watermark`` (e.g.
    ``"SYNTHETIC DATA"``) is stamped across it and before its title.

    Returns the path, or None (with a warning on stderr) when drawing failed.
    """
    try:
        plt = _plt()
        folder = Path(out_dir) / "figures"
        folder.mkdir(parents=True, exist_ok=True)
        fig = painter(plt, *args, **kwargs)
        if watermark:
            mark(fig, watermark)
        path = folder / f"{name}.png"
        fig.savefig(path, dpi=DPI, bbox_inches="tight")
        plt.close(fig)
        return path
    except Exception as exc:  # a figure never fails training
        log(f"warning: figure {name!r} not drawn: {type(exc).__name__}: {exc}")
        return None


def roc_curve(plt: Any, y: np.ndarray, scores: Sequence[np.ndarray], title: str) -> Any:
    """ROC curve of each repeat's out-of-fold P(positive) (scikit-learn's RocCurveDisplay)."""
    from sklearn.metrics import RocCurveDisplay

    fig, ax = plt.subplots(figsize=SIZE)
    for r, s in enumerate(scores):
        RocCurveDisplay.from_predictions(y, s, ax=ax, name=f"repeat {r + 1}" if r < 5 else None,
                                         plot_chance_level=r == 0, curve_kwargs={"lw": 1, "alpha": 0.8})
    ax.set(xlabel="1 - specificity", ylabel="sensitivity", title=title)
    ax.legend(fontsize=7, loc="lower right")
    return fig


def calibration_curve(plt: Any, y: np.ndarray, p: np.ndarray, band: dict[str, list[float]],
                      metrics: dict[str, float], title: str) -> Any:
    """Loess calibration curve with its bootstrap band and the ideal line, above a histogram of the
    predicted risks (events up, non-events down)."""
    fig, (ax, hist) = plt.subplots(2, 1, figsize=(5, 5), sharex=True, gridspec_kw={"height_ratios": [3, 1]})
    risk = np.asarray(band["risk"])
    ax.fill_between(risk, band["lo"], band["hi"], alpha=0.25, label="95% bootstrap band (subjects)")
    ax.plot(risk, band["observed"], lw=1.5, label="loess (observed | predicted)")
    ax.plot([0, 1], [0, 1], ls="--", c="grey", lw=0.8, label="ideal")
    text = (f"slope {metrics.get('calibration_slope', float('nan')):.2f}, intercept "
            f"{metrics.get('calibration_intercept', float('nan')):.2f}, ICI {metrics.get('ici', float('nan')):.3f}")
    ax.set(ylabel="observed risk", xlim=(0, 1), ylim=(0, 1), title=title)
    ax.text(0.98, 0.03, text, ha="right", va="bottom", fontsize=7, transform=ax.transAxes)
    ax.legend(fontsize=7, loc="upper left")
    bins = np.linspace(0, 1, 41)
    y = np.asarray(y).astype(int)
    hist.hist(p[y == 1], bins=bins, color="C3", alpha=0.7, label="events")
    counts, _ = np.histogram(p[y == 0], bins=bins)
    hist.bar(bins[:-1], -counts, width=np.diff(bins), align="edge", color="C0", alpha=0.7, label="non-events")
    hist.axhline(0, c="black", lw=0.5)
    hist.set(xlabel="predicted risk", ylabel="count")
    hist.legend(fontsize=6, loc="upper right")
    return fig


def decision_curve(plt: Any, dc: dict[str, Any], title: str) -> Any:
    """Net benefit of the model, of treating all and of treating none, over the threshold range;
    shaded: where the model beats both."""
    t = np.asarray(dc["thresholds"])
    model, treat_all = np.asarray(dc["net_benefit_model"]), np.asarray(dc["net_benefit_treat_all"])
    fig, ax = plt.subplots(figsize=SIZE)
    ax.plot(t, model, lw=1.5, label="model")
    ax.plot(t, treat_all, lw=1, ls="--", label="treat all")
    ax.axhline(0, c="black", lw=0.8, label="treat none")
    for lo, hi in dc.get("useful", []):
        ax.axvspan(lo, hi, color="green", alpha=0.08)
    top = max(float(np.nanmax(model)), float(np.nanmax(treat_all)), 0.01)
    ax.set(xlabel="threshold probability", ylabel="net benefit", ylim=(-0.05 * top - 0.01, top * 1.15),
           title=title)
    ax.legend(fontsize=7, loc="upper right")
    return fig


def confusion(plt: Any, y: np.ndarray, pred: np.ndarray, classes: Sequence[str], title: str) -> Any:
    """Confusion matrix (counts) of true against predicted classes."""
    from sklearn.metrics import confusion_matrix

    cm = confusion_matrix(y, pred, labels=list(range(len(classes))))
    fig, ax = plt.subplots(figsize=SIZE)
    ax.imshow(cm, cmap="Blues")
    for i in range(cm.shape[0]):
        for j in range(cm.shape[1]):
            ax.text(j, i, str(cm[i, j]), ha="center", va="center",
                    color="white" if cm[i, j] > cm.max() / 2 else "black")
    ax.set_xticks(range(len(classes)), classes, rotation=30, ha="right")
    ax.set_yticks(range(len(classes)), classes)
    ax.set(xlabel="predicted", ylabel="true", title=title)
    return fig


def predicted_vs_observed(plt: Any, y: np.ndarray, pred: np.ndarray, title: str, unit: str = "") -> Any:
    """Scatter of out-of-fold predictions against observed values, with the identity line."""
    fig, ax = plt.subplots(figsize=SIZE)
    ax.scatter(y, pred, s=6, alpha=0.5)
    lo, hi = float(min(y.min(), pred.min())), float(max(y.max(), pred.max()))
    ax.plot([lo, hi], [lo, hi], ls="--", c="grey", lw=0.8)
    ax.set(xlabel=f"observed {unit}".strip(), ylabel=f"predicted {unit}".strip(), title=title)
    return fig


def sample_images(plt: Any, images: np.ndarray, labels: np.ndarray, classes: Sequence[str],
                  per_class: int = 3) -> Any:
    """A few images of each class (rows: classes)."""
    fig, axes = plt.subplots(len(classes), per_class, figsize=(1.4 * per_class, 1.4 * len(classes)),
                             squeeze=False)
    for k, name in enumerate(classes):
        idx = np.flatnonzero(labels == k)[:per_class]
        for j in range(per_class):
            ax = axes[k, j]
            ax.axis("off")
            if j < len(idx):
                ax.imshow(images[idx[j]], cmap="gray", vmin=0, vmax=1)
            if j == 0:
                ax.set_title(name, fontsize=8, loc="left")
    return fig


def leaderboard(plt: Any, rows: Sequence[dict[str, Any]], metric: str = "roc_auc") -> Any:
    """Grouped bars: each model's metric on each data set, with the interval where given."""
    datasets = sorted({r["dataset"] for r in rows})
    models = list(dict.fromkeys(r["model"] for r in rows))
    width = 0.8 / max(1, len(models))
    fig, ax = plt.subplots(figsize=(6, 4))
    for m_i, model in enumerate(models):
        xs, hs, errs = [], [], [[], []]
        for d_i, d in enumerate(datasets):
            row = next((r for r in rows if r["dataset"] == d and r["model"] == model), None)
            if row is None:
                continue
            xs.append(d_i + (m_i - (len(models) - 1) / 2) * width)
            hs.append(row[metric])
            lo, hi = row.get(f"{metric}_ci_lo", row[metric]), row.get(f"{metric}_ci_hi", row[metric])
            errs[0].append(row[metric] - lo)
            errs[1].append(hi - row[metric])
        ax.bar(xs, hs, width=width, label=model, yerr=errs, capsize=2)
    ax.set_xticks(range(len(datasets)), datasets, rotation=20, ha="right")
    ax.set(ylabel=metric, ylim=(0.4, 1.0), title=f"baselines: {metric} (repeated CV)")
    ax.legend(fontsize=7, loc="lower left")
    return fig
