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


def draw(out_dir: str | Path, name: str, painter: Callable[..., None], *args: Any, **kwargs: Any) -> Path | None:
    """Run ``painter(ax_factory_result, ...)`` into ``<out_dir>/figures/<name>.png``.

    Returns the path, or None (with a warning on stderr) when drawing failed.
    """
    try:
        plt = _plt()
        folder = Path(out_dir) / "figures"
        folder.mkdir(parents=True, exist_ok=True)
        fig = painter(plt, *args, **kwargs)
        path = folder / f"{name}.png"
        fig.savefig(path, dpi=DPI, bbox_inches="tight")
        plt.close(fig)
        return path
    except Exception as exc:  # a figure never fails training
        log(f"warning: figure {name!r} not drawn: {type(exc).__name__}: {exc}")
        return None


def roc_curve(plt: Any, y: np.ndarray, scores: Sequence[np.ndarray], title: str) -> Any:
    """ROC curve of each repeat's out-of-fold P(positive)."""
    from sklearn.metrics import roc_auc_score, roc_curve as _roc

    fig, ax = plt.subplots(figsize=SIZE)
    for r, s in enumerate(scores):
        fpr, tpr, _ = _roc(y, s)
        ax.plot(fpr, tpr, lw=1, alpha=0.8,
                label=f"repeat {r + 1}: AUC {roc_auc_score(y, s):.3f}" if r < 5 else None)
    ax.plot([0, 1], [0, 1], ls="--", c="grey", lw=0.8)
    ax.set(xlabel="1 - specificity", ylabel="sensitivity", title=title)
    ax.legend(fontsize=7, loc="lower right")
    return fig


def reliability_curve(plt: Any, y: np.ndarray, scores: Sequence[np.ndarray], title: str, bins: int = 10) -> Any:
    """Calibration (reliability) curve: observed share of positives per bin of predicted risk."""
    from sklearn.calibration import calibration_curve

    fig, ax = plt.subplots(figsize=SIZE)
    p = np.concatenate(list(scores))
    yy = np.tile(y, len(scores))
    frac, mean = calibration_curve(yy, p, n_bins=bins, strategy="quantile")
    ax.plot(mean, frac, "o-", lw=1.2, label="out-of-fold (all repeats)")
    ax.plot([0, 1], [0, 1], ls="--", c="grey", lw=0.8, label="ideal")
    ax.set(xlabel="predicted risk", ylabel="observed share positive", xlim=(0, 1), ylim=(0, 1), title=title)
    ax.legend(fontsize=7, loc="upper left")
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
