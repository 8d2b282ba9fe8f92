"""Brain MRI slices: loading images from a folder-per-class tree, a small CNN, and its training loop.

No torchvision: images are read with Pillow, converted to grayscale, resized and scaled to [0, 1]
with numpy.  Everything runs on the CPU and is deterministic for a seed (``torch.manual_seed``,
``torch.use_deterministic_algorithms``, no worker processes, an explicit generator for shuffling).
"""

from __future__ import annotations

import copy
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch import nn

from aimedres.training.common import DataError
from aimedres.training.synthetic import ImageSet

#: File suffixes read from a class folder (case-insensitive).
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff")


def load_image_folder(root: Path, size: int = 64, patient_pattern: str | None = None) -> ImageSet:
    """Read a one-folder-per-class image tree into an :class:`ImageSet`, with a patient per image.

    Layouts: ``root/<class>/<image>`` or ``root/<class>/<patient>/<image>``. The patient of an
    image is its ``<patient>`` folder when there is one; else, with ``patient_pattern`` (a regular
    expression), group 1 of its match on the file name (``(P\\d+)_`` reads ``P017`` from
    ``P017_slice12.png``); else the image is its own patient (a warning says that slices of one
    patient could then fall on both sides of the split).

    Class names are the sub-folder names, sorted. Every image is converted to grayscale, resized
    to ``size`` x ``size`` (bilinear) and scaled to [0, 1]. Raises :class:`DataError` when the
    folder is missing, has fewer than two class folders, a class folder has no images, an image
    cannot be read, or a file name does not match ``patient_pattern``.
    """
    import re

    from PIL import Image, UnidentifiedImageError

    root = Path(root)
    if not root.is_dir():
        raise DataError(
            f"--data-dir {root}: no such directory (expected one sub-folder per class, "
            f"e.g. {root}/normal/*.png, {root}/tumor/*.png)"
        )
    class_dirs = sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
    if len(class_dirs) < 2:
        raise DataError(
            f"--data-dir {root}: found {len(class_dirs)} class folder(s); expected at least two "
            f"sub-folders, one per class, each holding images ({', '.join(IMAGE_SUFFIXES)})"
        )
    pattern = re.compile(patient_pattern) if patient_pattern else None
    images: list[np.ndarray] = []
    labels: list[int] = []
    patients: list[str] = []
    by_folder = False
    for k, d in enumerate(class_dirs):
        files = sorted(
            p for p in d.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES
            and not any(part.startswith(".") for part in p.relative_to(d).parts)
        )
        if not files:
            raise DataError(
                f"--data-dir {root}: class folder {d.name!r} holds no images "
                f"({', '.join(IMAGE_SUFFIXES)})"
            )
        for f in files:
            rel = f.relative_to(d)
            if len(rel.parts) > 1:
                patients.append(rel.parts[0])
                by_folder = True
            elif pattern is not None:
                m = pattern.search(f.name)
                if m is None:
                    raise DataError(f"--data-dir {root}: file name {f.name!r} does not match "
                                    f"--patient-pattern {patient_pattern!r}")
                patients.append(m.group(1) if m.groups() else m.group(0))
            else:
                patients.append(f"{d.name}/{f.name}")
            try:
                with Image.open(f) as im:
                    im = im.convert("L").resize((size, size), Image.BILINEAR)
                    arr = np.asarray(im, dtype=np.float32) / 255.0
            except (UnidentifiedImageError, OSError, ValueError) as exc:
                raise DataError(f"--data-dir {root}: cannot read image {f}: {exc}") from exc
            images.append(arr)
            labels.append(k)
    grouped = by_folder or pattern is not None
    return ImageSet(
        images=np.stack(images).astype(np.float32),
        labels=np.asarray(labels, dtype=np.int64),
        classes=[d.name for d in class_dirs],
        source=str(root),
        synthetic=False,
        groups=np.asarray(patients) if grouped else None,
    )


class SmallCNN(nn.Module):
    """A stride-2 5x5 stem, then conv blocks (conv-BN-ReLU-maxpool), global average pooling, linear head.

    With the default widths (16, 32, 64) about 25 k parameters; the stem halves the resolution
    first, so a 64 x 64 slice costs about 3 M multiply-adds (fast on one CPU core).
    Input (N, 1, H, W); output class logits (N, n_classes).
    """

    def __init__(self, n_classes: int, widths: tuple[int, ...] = (16, 32, 64), dropout: float = 0.2):
        super().__init__()
        layers: list[nn.Module] = [
            nn.Conv2d(1, widths[0], kernel_size=5, stride=2, padding=2, bias=False),
            nn.BatchNorm2d(widths[0]),
            nn.ReLU(inplace=True),
            nn.MaxPool2d(2),
        ]
        c_in = widths[0]
        for c_out in widths[1:]:
            layers += [
                nn.Conv2d(c_in, c_out, kernel_size=3, padding=1, bias=False),
                nn.BatchNorm2d(c_out),
                nn.ReLU(inplace=True),
                nn.MaxPool2d(2),
            ]
            c_in = c_out
        self.features = nn.Sequential(*layers)
        self.head = nn.Sequential(nn.Dropout(dropout), nn.Linear(c_in, n_classes))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Logits (N, n_classes) for images (N, 1, H, W); each image is standardised first."""
        mean = x.mean(dim=(1, 2, 3), keepdim=True)
        std = x.std(dim=(1, 2, 3), keepdim=True).clamp_min(1e-6)
        x = (x - mean) / std
        return self.head(self.features(x).mean(dim=(2, 3)))


@dataclass
class TrainConfig:
    """Settings of :func:`train_cnn` (saved with the model checkpoint)."""

    epochs: int = 12  # passes over the training split
    batch_size: int = 64  # images per optimiser step
    lr: float = 3e-3  # AdamW learning rate (cosine-annealed to 0)
    weight_decay: float = 1e-4  # AdamW weight decay
    patience: int = 5  # stop after this many epochs without a better validation loss
    seed: int = 42  # seeds weights, shuffling and augmentation
    widths: tuple[int, ...] = (16, 32, 64)  # conv channels per block
    flip: bool = True  # random left-right flips of training images (brains are ~symmetric)


@dataclass
class TrainResult:
    """The best model (by validation loss) and the per-epoch history."""

    model: SmallCNN
    best_epoch: int
    epochs_run: int
    history: list[dict[str, float]] = field(default_factory=list)


#: torch intra-op threads while training and predicting. One, whatever ``--n-jobs`` says: with
#: more threads the order of floating-point reductions (convolutions, batch norm) depends on the
#: thread count, and so do the weights after a few hundred steps and the reported metrics.
TRAIN_THREADS = 1


def set_determinism(seed: int, n_threads: int | None = None) -> None:
    """Seed torch, make its CPU kernels deterministic and run them on :data:`TRAIN_THREADS`
    thread(s); ``n_threads`` is accepted for the command line's sake and does not change it."""
    torch.set_num_threads(TRAIN_THREADS)
    torch.manual_seed(seed)
    torch.use_deterministic_algorithms(True)


def _to_tensor(images: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(images, dtype=np.float32)).unsqueeze(1)


@torch.no_grad()
def predict_proba(model: nn.Module, images: np.ndarray, batch_size: int = 256) -> np.ndarray:
    """Class probabilities (N, n_classes) for images (N, H, W), model in eval mode."""
    model.eval()
    x = _to_tensor(images)
    out = [torch.softmax(model(x[i : i + batch_size]), dim=1) for i in range(0, len(x), batch_size)]
    return torch.cat(out).double().numpy()


def _eval_loss(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> tuple[float, float]:
    model.eval()
    with torch.no_grad():
        logits = torch.cat([model(x[i : i + 256]) for i in range(0, len(x), 256)])
        loss = nn.functional.cross_entropy(logits, y).item()
        acc = (logits.argmax(1) == y).double().mean().item()
    return loss, acc


def save_checkpoint(path: Path, state: dict) -> None:
    """Write a checkpoint atomically: a temporary file beside ``path``, then ``os.replace`` (a
    reader, or a resumed run, sees the last complete epoch's checkpoint, never half of one)."""
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "wb") as fh:
        torch.save(state, fh)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)


def train_cnn(
    train: tuple[np.ndarray, np.ndarray],
    val: tuple[np.ndarray, np.ndarray],
    n_classes: int,
    cfg: TrainConfig,
    log: Callable[[str], None] = print,
    checkpoint: Path | None = None,
    resume: bool = False,
) -> TrainResult:
    """Train :class:`SmallCNN` on ``train`` and select the epoch with the lowest validation loss.

    ``train`` and ``val`` are (images (N, H, W), labels (N,)).  Early stopping and model selection
    use the validation split only; the caller keeps the test split away from this function.

    ``checkpoint``: after every epoch, the model, optimiser, schedule, both random states, the
    epoch and the selection state are saved there (atomically).  ``resume``: when that file
    exists, training continues after its epoch, and ends as an uninterrupted run would.
    """
    torch.manual_seed(cfg.seed)
    gen = torch.Generator().manual_seed(cfg.seed)
    model = SmallCNN(n_classes, widths=tuple(cfg.widths))
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    steps_per_epoch = max(1, -(-len(train[0]) // cfg.batch_size))
    sched = torch.optim.lr_scheduler.OneCycleLR(
        opt, max_lr=cfg.lr, total_steps=cfg.epochs * steps_per_epoch, pct_start=0.2
    )
    x_tr, y_tr = _to_tensor(train[0]), torch.from_numpy(train[1].astype(np.int64))
    x_va, y_va = _to_tensor(val[0]), torch.from_numpy(val[1].astype(np.int64))

    best_loss, best_state, best_epoch, stale = float("inf"), None, 0, 0
    history: list[dict[str, float]] = []
    epoch = first = 0
    if resume and checkpoint is not None and checkpoint.exists():
        saved = torch.load(checkpoint, weights_only=False)
        model.load_state_dict(saved["model"])
        opt.load_state_dict(saved["optimizer"])
        sched.load_state_dict(saved["scheduler"])
        gen.set_state(saved["generator"])
        torch.set_rng_state(saved["torch_rng"])
        first = epoch = saved["epoch"]
        best_loss, best_state, best_epoch = saved["best_loss"], saved["best_state"], saved["best_epoch"]
        stale, history = saved["stale"], saved["history"]
        log(f"resumed from {checkpoint} after epoch {first}")
        if saved["stopped"]:
            first = cfg.epochs  # it had stopped early: nothing left to train
    for epoch in range(first + 1, cfg.epochs + 1):
        model.train()
        perm = torch.randperm(len(x_tr), generator=gen)
        total = 0.0
        for i in range(0, len(perm), cfg.batch_size):
            idx = perm[i : i + cfg.batch_size]
            xb, yb = x_tr[idx], y_tr[idx]
            if cfg.flip:
                flip = torch.rand(len(idx), generator=gen) < 0.5
                xb = torch.where(flip[:, None, None, None], xb.flip(-1), xb)
            opt.zero_grad(set_to_none=True)
            loss = nn.functional.cross_entropy(model(xb), yb)
            loss.backward()
            opt.step()
            sched.step()
            total += loss.item() * len(idx)
        val_loss, val_acc = _eval_loss(model, x_va, y_va)
        history.append(
            {"epoch": epoch, "train_loss": total / len(x_tr), "val_loss": val_loss, "val_accuracy": val_acc}
        )
        log(
            f"epoch {epoch:3d}/{cfg.epochs}  train_loss {total / len(x_tr):.4f}  "
            f"val_loss {val_loss:.4f}  val_accuracy {val_acc:.4f}"
        )
        if val_loss < best_loss:
            best_loss, best_state, best_epoch, stale = val_loss, copy.deepcopy(model.state_dict()), epoch, 0
        else:
            stale += 1
        stop = stale >= cfg.patience
        if checkpoint is not None:
            save_checkpoint(checkpoint, {
                "model": model.state_dict(), "optimizer": opt.state_dict(),
                "scheduler": sched.state_dict(), "generator": gen.get_state(),
                "torch_rng": torch.get_rng_state(), "epoch": epoch, "best_loss": best_loss,
                "best_state": best_state, "best_epoch": best_epoch, "stale": stale,
                "history": history, "stopped": stop})
        if stop:
            log(f"early stop: no better validation loss for {cfg.patience} epochs")
            break
    assert best_state is not None
    model.load_state_dict(best_state)
    model.eval()
    return TrainResult(model=model, best_epoch=best_epoch, epochs_run=epoch, history=history)
