"""Brain MRI slice classification with a small CNN (PyTorch, CPU).

Default data: a seeded SYNTHETIC set of MRI-like 64 x 64 axial slices in four classes (normal,
tumor, atrophy, stroke; generator documented in :mod:`aimedres.training.synthetic`), announced as
synthetic in the log, in metrics.json (``data.synthetic: true``) and in the data source string.
``--data-dir DIR`` trains on real images instead, one sub-folder per class (PNG/JPG/...; read with
Pillow, converted to grayscale and resized) -- never a silent fallback.

Split by patient on real data: all slices of one patient stay on one side of every split. The
patient of an image is its folder in ``DIR/<class>/<patient>/<image>``, or, for a flat
``DIR/<class>/<image>`` layout, group 1 of ``--patient-pattern REGEX`` matched on the file name
(``"(P\\d+)_"`` reads ``P017`` from ``P017_slice12.png``). A flat layout without a pattern treats
every image as its own patient and warns that slices of one patient could straddle the split.

Protocol: ONE stratified split into train / validation / test (60 / 20 / 20 % per class, seeded;
stratified by patient with StratifiedGroupKFold when patients are known), so there is no
``--folds`` flag.  The network trains on the training split; early stopping and the
choice of the saved epoch use the validation split only; every reported metric (accuracy,
balanced_accuracy, f1_macro, roc_auc one-vs-rest macro; primary: accuracy) is measured once on
the held-out test split, which training never sees.

Metrics are per patient (the mean of a patient's slice probabilities; without patient ids each
image is its own patient), and the 95 % intervals in metrics.json (``metrics_ci``) are a
percentile bootstrap over the test patients. A test split that lacks a class or has fewer than 10
patients is a warning. Determinism: torch trains on one intra-op thread whatever ``--n-jobs``
says (the reduction order of a multi-threaded convolution depends on the thread count), so a seed
gives the same metrics standalone and under the plugin -- on one machine with one build of torch
and numpy; other CPUs and builds can move the figures in the third decimal.

Outputs: metrics.json, predictions.csv (the test split: row, fold, repeat, y_true, score = P(predicted
class), y_pred, one p_<class> column per class), figures/ (sample slices per class, confusion
matrix), model.pt (state dict + architecture + training config + class names + the per-epoch
history), manifest.json, checkpoint.pt (after every epoch, written atomically: model, optimiser,
schedule, random states, epoch; ``--resume`` or ``TRAINING_RESUME=1`` continues after its epoch
and ends with the metrics of an uninterrupted run).

    python src/aimedres/training/train_brain_mri.py                       # synthetic slices
    python src/aimedres/training/train_brain_mri.py --data-dir scans/     # scans/<class>/*.png
    python src/aimedres/training/train_brain_mri.py --epochs 1            # smoke run
"""

from __future__ import annotations

import argparse
import dataclasses
import io
import os
import sys
import time
from pathlib import Path

if __package__ in (None, ""):  # run as a script: make `aimedres` importable from src/
    sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

import numpy as np

from aimedres.training import common, synthetic

JOB = "brain_mri"
# ---- settings (defaults give a >= 0.90 held-out accuracy on the synthetic set in ~1 min on 1 core)
DEFAULT_EPOCHS = 30  # passes over the training split (early stopping on validation loss)
DEFAULT_BATCH_SIZE = 64  # images per optimiser step
DEFAULT_LR = 3e-3  # peak AdamW learning rate (one-cycle schedule)
DEFAULT_N_SAMPLES = 2000  # synthetic slices (balanced over the classes)
DEFAULT_IMAGE_SIZE = 64  # images are resized to SIZE x SIZE
PATIENCE = 8  # early-stopping patience in epochs (validation loss)
VAL_FRACTION = 0.2  # per class, for model selection
TEST_FRACTION = 0.2  # per class, held out for the reported metrics


def _positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1, got {value}")
    return value


def _positive_float(text: str) -> float:
    value = float(text)
    if not value > 0:
        raise argparse.ArgumentTypeError(f"must be > 0, got {value}")
    return value


#: The checkpoint in the output folder, rewritten (atomically) after every epoch.
CHECKPOINT = "checkpoint.pt"


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Command line of the brain MRI job (no --folds: one stratified train/val/test split)."""
    parser = argparse.ArgumentParser(
        description="Brain MRI slice classification with a small CNN. Default data: seeded SYNTHETIC "
        "MRI-like slices; --data-dir for real images (one sub-folder per class). One stratified "
        "train/validation/test split; metrics on the held-out test split only.",
    )
    # The single-flag helpers, not add_common_args(folds=None): the orchestrator learns a script's
    # flags statically and must see that this one has no --folds.
    common.add_epochs_arg(parser, DEFAULT_EPOCHS)
    common.add_seed_output_args(parser)
    common.add_n_jobs_arg(parser)
    parser.add_argument(
        "--data-dir",
        type=Path,
        default=None,
        metavar="DIR",
        help="real images: DIR/<class name>/<image>.png|jpg|... (at least two classes, >= 3 images "
        "each); converted to grayscale and resized. Default: the synthetic slices.",
    )
    parser.add_argument(
        "--patient-pattern",
        default=None,
        metavar="REGEX",
        help="with --data-dir in a flat DIR/<class>/<image> layout: a regular expression whose group 1, "
        "matched on the file name, is the patient id (e.g. '(P\\d+)_'); all slices of a patient stay "
        "on one side of the split. Patient sub-folders DIR/<class>/<patient>/ need no pattern.",
    )
    parser.add_argument(
        "--n-samples",
        type=_positive_int,
        default=None,
        metavar="N",
        help=f"synthetic slices to generate (default {DEFAULT_N_SAMPLES}); not allowed with --data-dir",
    )
    parser.add_argument(
        "--batch-size", type=_positive_int, default=DEFAULT_BATCH_SIZE, metavar="B",
        help=f"images per optimiser step (default {DEFAULT_BATCH_SIZE})",
    )
    parser.add_argument(
        "--lr", type=_positive_float, default=DEFAULT_LR, metavar="LR",
        help=f"peak learning rate of AdamW with a one-cycle schedule (default {DEFAULT_LR})",
    )
    parser.add_argument(
        "--image-size", type=_positive_int, default=DEFAULT_IMAGE_SIZE, metavar="PX",
        help=f"images are resized to PX x PX (>= 16, default {DEFAULT_IMAGE_SIZE})",
    )
    parser.add_argument(
        "--resume", action="store_true",
        help="continue from checkpoint.pt in the output folder (written after every epoch): the "
        "run ends as an uninterrupted one would; also TRAINING_RESUME=1 (a retried attempt)",
    )
    args = parser.parse_args(argv)
    if args.image_size < 16:
        parser.error(f"--image-size must be >= 16, got {args.image_size}")
    if args.data_dir is not None and args.n_samples is not None:
        parser.error("--n-samples sizes the synthetic set; it cannot be combined with --data-dir")
    if args.patient_pattern is not None:
        if args.data_dir is None:
            parser.error("--patient-pattern reads patient ids from real file names; it needs --data-dir")
        import re

        try:
            re.compile(args.patient_pattern)
        except re.error as exc:
            parser.error(f"--patient-pattern {args.patient_pattern!r} is not a regular expression: {exc}")
    if args.n_samples is None:
        args.n_samples = DEFAULT_N_SAMPLES
    if args.data_dir is None and args.n_samples < 5 * len(synthetic.MRI_CLASSES):
        parser.error(f"--n-samples must be >= {5 * len(synthetic.MRI_CLASSES)}, got {args.n_samples}")
    return args


def load_data(args: argparse.Namespace) -> synthetic.ImageSet:
    """The images: ``--data-dir`` (real) or the seeded synthetic slices (announced).

    Raises:
        DataError: the folder is missing, has < 2 class folders, an unreadable image, or a class
            with fewer than 3 images (one each for train, validation and test).
    """
    from aimedres.training import mri

    if args.data_dir is not None:
        data = mri.load_image_folder(args.data_dir, size=args.image_size, patient_pattern=args.patient_pattern)
        if data.groups is None:
            common.log(
                f"warning: --data-dir {args.data_dir}: no patient folders and no --patient-pattern, so every "
                "image counts as its own patient; slices of one patient may fall on both sides of the split"
            )
        else:
            common.log(f"split by patient: {len(set(data.groups))} patients")
        counts = np.bincount(data.labels, minlength=len(data.classes))
        small = [f"{c} ({n})" for c, n in zip(data.classes, counts) if n < 3]
        if small:
            raise common.DataError(
                f"--data-dir {args.data_dir}: class folder(s) with fewer than 3 images: {', '.join(small)}; "
                "each class needs at least one image for train, validation and test"
            )
        common.log(f"real data: {data.source}: {len(data.labels)} images, classes {data.classes}")
        return data
    data = synthetic.mri_slices(args.n_samples, args.seed, size=args.image_size)
    common.log(
        f"SYNTHETIC DATA: {data.source} -- generated MRI-like slices, not patient scans "
        f"(classes {data.classes}). Use --data-dir DIR for real images."
    )
    return data


def grouped_split(labels: np.ndarray, groups: np.ndarray, seed: int) -> dict[str, np.ndarray]:
    """Train / val / test by patient: StratifiedGroupKFold (5 folds, seeded) holds out one fold as
    test, a second StratifiedGroupKFold (4 folds) on the rest one as validation (about 60/20/20).

    Raises:
        DataError: fewer than 5 patients (no patient-disjoint three-way split).
    """
    from sklearn.model_selection import StratifiedGroupKFold

    n_groups = len(set(groups.tolist()))
    if n_groups < 5:
        raise common.DataError(f"{n_groups} patient(s): a patient-disjoint train/validation/test split "
                               "needs at least 5")
    X = np.zeros((len(labels), 1))
    rest, test = next(StratifiedGroupKFold(5, shuffle=True, random_state=seed).split(X, labels, groups))
    tr, va = next(StratifiedGroupKFold(4, shuffle=True, random_state=seed + 1)
                  .split(X[rest], labels[rest], groups[rest]))
    return {"train": np.sort(rest[tr]), "val": np.sort(rest[va]), "test": np.sort(test)}


def stratified_split(labels: np.ndarray, seed: int) -> dict[str, np.ndarray]:
    """Per-class shuffled split into train / val / test (each class: >= 1 image in every part)."""
    rng = np.random.default_rng([seed, 3])
    parts: dict[str, list[np.ndarray]] = {"train": [], "val": [], "test": []}
    for k in np.unique(labels):
        idx = np.flatnonzero(labels == k)
        rng.shuffle(idx)
        n_test = max(1, int(round(TEST_FRACTION * len(idx))))
        n_val = max(1, int(round(VAL_FRACTION * len(idx))))
        parts["test"].append(idx[:n_test])
        parts["val"].append(idx[n_test : n_test + n_val])
        parts["train"].append(idx[n_test + n_val :])
    return {name: np.sort(np.concatenate(p)) for name, p in parts.items()}


def per_patient(y: np.ndarray, proba: np.ndarray, subjects: np.ndarray | None
                ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """One prediction per patient: the mean of its slices' class probabilities, and its label
    (every slice of a patient carries the patient's class). Without patient ids every image is
    its own patient. Returns (labels, probabilities, patient ids), patients in sorted order."""
    if subjects is None:
        return y, proba, np.arange(len(y))
    ids, codes = np.unique(np.asarray(subjects).astype(str), return_inverse=True)
    counts = np.bincount(codes)
    p = np.vstack([np.bincount(codes, weights=proba[:, k]) / counts for k in range(proba.shape[1])]).T
    labels = np.array([np.bincount(y[codes == g]).argmax() for g in range(len(ids))])
    return labels, p, ids


def train(args: argparse.Namespace) -> dict:
    """Split, train on train, select on val, score once on test, write the outputs."""
    import torch

    from aimedres.training import mri

    started = time.time()
    mri.set_determinism(args.seed, args.n_jobs)
    data = load_data(args)
    split = (stratified_split(data.labels, args.seed) if data.groups is None
             else grouped_split(data.labels, data.groups, args.seed))
    common.log(
        f"{JOB}: {len(data.labels)} images {args.image_size}x{args.image_size}, classes {data.classes}; "
        f"split train {len(split['train'])} / val {len(split['val'])} / test {len(split['test'])}; "
        f"epochs {args.epochs}, batch {args.batch_size}, lr {args.lr}, seed {args.seed}, "
        f"{args.n_jobs} thread(s)"
    )
    cfg = mri.TrainConfig(
        epochs=args.epochs, batch_size=args.batch_size, lr=args.lr, patience=PATIENCE, seed=args.seed
    )
    out = common.output_dir(args, JOB)
    out.mkdir(parents=True, exist_ok=True)
    result = mri.train_cnn(
        (data.images[split["train"]], data.labels[split["train"]]),
        (data.images[split["val"]], data.labels[split["val"]]),
        n_classes=len(data.classes),
        cfg=cfg,
        log=common.log,
        checkpoint=out / CHECKPOINT,
        resume=args.resume or os.environ.get("TRAINING_RESUME") == "1",
    )
    # The one and only look at the test split.
    test = split["test"]
    y_test = data.labels[test]
    proba = mri.predict_proba(result.model, data.images[test])
    labels = list(range(len(data.classes)))
    subjects = data.groups[test] if data.groups is not None else None
    y_subj, p_subj, subj_ids = per_patient(y_test, proba, subjects)
    def stat(y: np.ndarray, p: np.ndarray) -> dict[str, float]:
        return common.classification_metrics(y, p, labels)

    metrics = stat(y_subj, p_subj)
    ci = common.clinical.bootstrap_interval(y_subj, p_subj, stat, seed=args.seed, n_boot=200)
    warnings = common.clinical.split_warnings(y_subj, None, len(labels), f"{JOB} test split")
    unit = "patients" if subjects is not None else "images (each its own patient)"
    common.log(
        f"held-out test ({len(test)} images, {len(y_subj)} {unit}): "
        + ", ".join(f"{k} {v:.4f} ({ci[k][0]:.3f}-{ci[k][1]:.3f})" for k, v in metrics.items() if k in ci)
        + f" (best epoch {result.best_epoch} of {result.epochs_run})"
    )
    checkpoint = {
        "state_dict": result.model.state_dict(),
        "architecture": "aimedres.training.mri.SmallCNN",
        "n_classes": len(data.classes),
        "classes": data.classes,
        "image_size": args.image_size,
        "config": dataclasses.asdict(cfg),
        "best_epoch": result.best_epoch,
        "epochs_run": result.epochs_run,
        "history": result.history,
    }
    buf = io.BytesIO()
    torch.save(checkpoint, buf)
    task = "binary" if len(data.classes) == 2 else "multiclass"
    info = {
        "source": data.source,
        "synthetic": data.synthetic,
        "rows": int(len(data.labels)),
        "features": int(args.image_size * args.image_size),
        "sha256": data.sha256(),
        "classes": data.classes,
        "split": {name: int(len(idx)) for name, idx in split.items()},
        "split_by": "patient" if data.groups is not None else "image",
    }
    info["subjects"] = int(len(set(data.groups.tolist()))) if data.groups is not None else int(len(data.labels))
    if data.groups is not None:
        info["patients"] = {name: int(len(set(data.groups[idx].tolist()))) for name, idx in split.items()}
    out = common.output_dir(args, JOB)
    out.mkdir(parents=True, exist_ok=True)
    import pandas as pd

    pred = {"row": test, "fold": 0, "repeat": 0, "y_true": y_test, "score": proba.max(axis=1),
            "y_pred": proba.argmax(axis=1)}
    pred |= {f"p_{name}": proba[:, k] for k, name in enumerate(data.classes)}
    common.write_predictions(out, pd.DataFrame(pred))
    train_idx = split["train"]
    mark = "SYNTHETIC DATA" if data.synthetic else None
    common.figures.draw(out, "samples", common.figures.sample_images, data.images[train_idx],
                        data.labels[train_idx], data.classes, watermark=mark)
    common.figures.draw(out, "confusion", common.figures.confusion, y_subj, p_subj.argmax(axis=1),
                        data.classes, f"{JOB}: held-out test split, per {'patient' if subjects is not None else 'image'}",
                        watermark=mark)
    return common.write_outputs(
        out,
        job=JOB,
        task=task,
        primary_metric="accuracy",
        metrics=metrics,
        metrics_ci={k: v for k, v in ci.items() if k in metrics},
        ci_method="percentile bootstrap (95 %, 200 resamples) of the test patients (slice probabilities "
                  "averaged per patient; on data without patient ids every image is its own patient), "
                  "the model fixed",
        models={"small_cnn": metrics},
        best_model="small_cnn",
        data=info,
        args=args,
        started=started,
        extra={
            "evaluation": "held-out test split (never used for training or model selection), scored per "
                          "patient: the mean of a patient's slice probabilities",
            "estimand": "the metric of the saved network on the held-out test patients (one prediction per "
                        "patient)",
            "test": {"images": int(len(test)), "subjects": int(len(y_subj)),
                     **({"warnings": warnings} if warnings else {})},
            "determinism": "same seed, same metrics on one machine with one build of torch and numpy; "
                           "float kernels differ between CPUs and builds, so figures can move in the third "
                           "decimal elsewhere",
            "best_epoch": result.best_epoch,
            "epochs_run": result.epochs_run,
            "classes": data.classes,
            "torch_threads": mri.TRAIN_THREADS,
        },
        extra_files={"model.pt": buf.getvalue()},
    )


def main(argv: list[str] | None = None) -> int:
    """Entry point: parse flags, train, write outputs."""
    train(parse_args(argv))
    return 0


if __name__ == "__main__":
    common.run(main)
