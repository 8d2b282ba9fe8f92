"""Seeded synthetic data for the two jobs that have no real public data set: ALS and brain MRI.

Both generators are pure functions of their arguments (``n``, ``seed``): the same call returns
byte-identical data on every machine, and a different seed returns different data.  Nothing here
is real patient data; every caller must label its output ``synthetic`` (see DESIGN.md,
"Data policy").

ALS cohort (:func:`als_cohort`)
===============================

One row per patient, at the first visit.  The marginal shapes follow published ALS cohorts
(PRO-ACT; population registries; ENCALS); they are *shapes*, not fitted estimates:

===========================  ========  ==========================================  ======================================
column                       unit      distribution                                shape taken from
===========================  ========  ==========================================  ======================================
age_onset                    years     Normal(61, 11), clipped to [20, 90]         mean onset age 58-63 in registries
sex                          "M"/"F"   M with p = 0.60                             M:F about 1.5 : 1
onset_site                   category  bulbar p = 0.22 (M) / 0.36 (F),             bulbar onset 25-30 %, more common in
                                       respiratory p = 0.02, else limb             women; respiratory onset 1-3 %
diagnostic_delay_months      months    LogNormal(median 11.5, sigma 0.6),          median delay onset -> diagnosis
                                       clipped to [1, 72]                          10-14 months
alsfrs_r_baseline            points    round(Normal(38, 6)), clipped to [12, 47]   ALSFRS-R 0-48; trial baselines 37-39
fvc_percent                  % pred.   Normal(86 - 6*bulbar, 17), clip [25, 140]   FVC at entry about 80-90 % predicted
bmi                          kg/m2     Normal(25.3, 4.0), clipped to [15, 45]      BMI at diagnosis about 24-26
riluzole                     0/1       p = 0.75                                    riluzole use 70-80 % in trials
edaravone                    0/1       p = 0.12                                    edaravone use is uncommon
el_escorial                  category  definite .22, probable .40,                 revised El Escorial mix in trials
                                       probable_lab_supported .15, possible .23
family_history               0/1       p = 0.08                                    familial ALS 5-10 %; NO effect on the
                                                                                   target (a null feature on purpose)
alsfrs_r_slope  (target)     pts/mo    signal(x) + Normal(0, ALS_NOISE_SD)         mean about -0.9 (here -0.9, SD 0.52;
                                                                                   cohorts: SD 0.5-0.8)
===========================  ========  ==========================================  ======================================

The target is the ALSFRS-R slope in points per month (negative = decline), built from a known
function of the features plus Gaussian noise of known SD (:data:`ALS_NOISE_SD`)::

    pre_slope = (48 - alsfrs_r_baseline) / diagnostic_delay_months          # "delta-FRS" (ENCALS)
    rate = 0.30 + 0.85 * log1p(pre_slope) + 0.30 * bulbar + 0.20 * respiratory
           + 0.012 * (age_onset - 61) - 0.006 * (fvc_percent - 86) - 0.03 * (bmi - 25.3)
           - 0.10 * riluzole - 0.05 * edaravone + 0.12 * (el_escorial == "definite")
    alsfrs_r_slope = -rate + Normal(0, ALS_NOISE_SD)

The direction of every term follows the prognostic literature (faster pre-diagnostic decline,
bulbar onset, older age, lower FVC, lower BMI and definite El Escorial category mean faster
progression; riluzole and edaravone slightly slower).  Because the noise is known, so is the
best any model can do (:func:`als_noise_floor`): RMSE = ``ALS_NOISE_SD`` = 0.30 and
R2 = var(signal) / (var(signal) + ALS_NOISE_SD**2) = 0.668 (population values).  The "shape taken
from" column gives approximate figures from the ALS literature, not fitted estimates.

Brain MRI slices (:func:`mri_slices`)
=====================================

64 x 64 grayscale "T1-like" axial slices in [0, 1], four balanced classes:

- ``normal``: scalp (bright ring), skull (dark ring), cortex ribbon (grey) with sulci (dark CSF
  clefts), white matter (bright), two lateral ventricles (dark butterfly), all with random head
  size, position (+-3 px), rotation (+-15 degrees), contrast, smooth bias field and noise.
- ``tumor``: a bright round mass (radius 2.5-7 px) with a darker oedema halo (1.3-1.9 x the
  radius), anywhere in the brain; a large mass pushes the ventricles aside.
- ``atrophy``: a brain shrunk to 84-94 % of its usual size in the skull (wide CSF rim),
  ventricles enlarged 1.25-1.9 x (normal: 0.85-1.2 x) and widened sulci.
- ``stroke``: a darker wedge (an arterial territory, 20-50 degrees wide, tissue intensity x
  0.40-0.62) reaching the cortex in one hemisphere.

Lesion size, position and contrast vary, and the per-image noise and bias field are strong enough
that the task is not trivial, but a small CNN separates the classes (>= 0.90 held-out accuracy).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

import numpy as np
import pandas as pd

#: Generator version, part of every synthetic data source string; bump it when the output changes.
ALS_GENERATOR = "als_cohort_v1"
MRI_GENERATOR = "mri_slices_v1"

#: SD of the Gaussian noise on the ALS slope (points/month): the best achievable RMSE.
ALS_NOISE_SD = 0.30
#: The target column of the ALS cohort.
ALS_TARGET = "alsfrs_r_slope"
#: Numeric feature columns (in order) of the ALS cohort.
ALS_NUMERIC = [
    "age_onset",
    "diagnostic_delay_months",
    "alsfrs_r_baseline",
    "fvc_percent",
    "bmi",
    "riluzole",
    "edaravone",
    "family_history",
]
#: Categorical feature columns and their levels.
ALS_CATEGORICAL = {
    "sex": ["F", "M"],
    "onset_site": ["bulbar", "limb", "respiratory"],
    "el_escorial": ["definite", "probable", "probable_lab_supported", "possible"],
}
#: Every column a real ALS CSV must have (features, then the target).
ALS_COLUMNS = [
    "age_onset",
    "sex",
    "onset_site",
    "diagnostic_delay_months",
    "alsfrs_r_baseline",
    "fvc_percent",
    "bmi",
    "riluzole",
    "edaravone",
    "el_escorial",
    "family_history",
    ALS_TARGET,
]

MRI_CLASSES = ["normal", "tumor", "atrophy", "stroke"]
MRI_SIZE = 64


# ----------------------------------------------------------------------------------------------
# ALS
# ----------------------------------------------------------------------------------------------
def als_signal(df: pd.DataFrame) -> np.ndarray:
    """The noise-free ALSFRS-R slope (points/month) of each row: the generator's known function.

    Works on any frame with the :data:`ALS_COLUMNS` feature columns (the target is not used).
    """
    pre_slope = (48.0 - df["alsfrs_r_baseline"].to_numpy(float)) / df[
        "diagnostic_delay_months"
    ].to_numpy(float)
    site = df["onset_site"].to_numpy()
    rate = (
        0.30
        + 0.85 * np.log1p(pre_slope)
        + 0.30 * (site == "bulbar")
        + 0.20 * (site == "respiratory")
        + 0.012 * (df["age_onset"].to_numpy(float) - 61.0)
        - 0.006 * (df["fvc_percent"].to_numpy(float) - 86.0)
        - 0.03 * (df["bmi"].to_numpy(float) - 25.3)
        - 0.10 * df["riluzole"].to_numpy(float)
        - 0.05 * df["edaravone"].to_numpy(float)
        + 0.12 * (df["el_escorial"].to_numpy() == "definite")
    )
    return -rate


def add_delta_frs(X: pd.DataFrame) -> pd.DataFrame:
    """Return ``X`` plus ``delta_frs`` = (48 - alsfrs_r_baseline) / diagnostic_delay_months.

    The pre-diagnostic decline rate (points/month), a standard prognostic feature (ENCALS model).
    Row-wise (no statistics of other rows), so it is safe before or inside a CV fold.
    """
    X = X.copy()
    delay = pd.to_numeric(X["diagnostic_delay_months"], errors="coerce").clip(lower=0.5)
    X["delta_frs"] = (48.0 - pd.to_numeric(X["alsfrs_r_baseline"], errors="coerce")) / delay
    return X


def _als_features(n: int, rng: np.random.Generator) -> pd.DataFrame:
    age = np.clip(rng.normal(61.0, 11.0, n), 20.0, 90.0)
    male = rng.random(n) < 0.60
    u = rng.random(n)
    p_bulbar = np.where(male, 0.22, 0.36)
    site = np.where(u < p_bulbar, "bulbar", np.where(u < p_bulbar + 0.02, "respiratory", "limb"))
    delay = np.clip(np.exp(rng.normal(np.log(11.5), 0.6, n)), 1.0, 72.0)
    frs0 = np.clip(np.round(rng.normal(38.0, 6.0, n)), 12, 47)
    fvc = np.clip(rng.normal(86.0 - 6.0 * (site == "bulbar"), 17.0), 25.0, 140.0)
    bmi = np.clip(rng.normal(25.3, 4.0, n), 15.0, 45.0)
    riluzole = (rng.random(n) < 0.75).astype(int)
    edaravone = (rng.random(n) < 0.12).astype(int)
    levels = ALS_CATEGORICAL["el_escorial"]
    escorial = rng.choice(np.array(levels, dtype=object), size=n, p=[0.22, 0.40, 0.15, 0.23])
    family = (rng.random(n) < 0.08).astype(int)
    return pd.DataFrame(
        {
            "age_onset": age.round(1),
            "sex": np.where(male, "M", "F"),
            "onset_site": site,
            "diagnostic_delay_months": delay.round(1),
            "alsfrs_r_baseline": frs0.astype(int),
            "fvc_percent": fvc.round(1),
            "bmi": bmi.round(1),
            "riluzole": riluzole,
            "edaravone": edaravone,
            "el_escorial": escorial.astype(str),
            "family_history": family,
        }
    )


def als_cohort(n: int = 1000, seed: int = 42) -> pd.DataFrame:
    """Generate ``n`` synthetic ALS patients (columns :data:`ALS_COLUMNS`), seeded by ``seed``.

    The target ``alsfrs_r_slope`` is :func:`als_signal` of the (rounded) features plus
    Normal(0, :data:`ALS_NOISE_SD`) noise, rounded to 4 decimals.
    """
    if n < 1:
        raise ValueError(f"n must be >= 1, got {n}")
    rng = np.random.default_rng([seed, 1])  # stream 1 = ALS; stream 2 = MRI
    df = _als_features(n, rng)
    noise = rng.normal(0.0, ALS_NOISE_SD, n)
    df[ALS_TARGET] = (als_signal(df) + noise).round(4)
    return df[ALS_COLUMNS]


def als_noise_floor(n_population: int = 200_000) -> dict[str, float]:
    """The best achievable RMSE and R2 on the synthetic ALS cohort (population values).

    RMSE floor = :data:`ALS_NOISE_SD`; R2 ceiling = var(signal) / (var(signal) + SD**2), with
    var(signal) estimated on a fixed-seed population of ``n_population`` draws (independent of
    the seed and size of the cohort being trained on).
    """
    pop = _als_features(n_population, np.random.default_rng([0, 99]))
    var_signal = float(np.var(als_signal(pop)))
    r2 = var_signal / (var_signal + ALS_NOISE_SD**2)
    return {"rmse": round(ALS_NOISE_SD, 6), "r2": round(r2, 6)}


def als_oracle(df: pd.DataFrame) -> dict[str, float]:
    """RMSE and R2 of the true signal as a predictor on this very cohort (the realised floor)."""
    y = df[ALS_TARGET].to_numpy(float)
    resid = y - als_signal(df)
    rmse = float(np.sqrt(np.mean(resid**2)))
    r2 = float(1.0 - np.sum(resid**2) / np.sum((y - y.mean()) ** 2))
    return {"rmse": round(rmse, 6), "r2": round(r2, 6)}


# ----------------------------------------------------------------------------------------------
# Brain MRI slices
# ----------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class ImageSet:
    """Images (N, H, W) float32 in [0, 1], integer labels (N,), and the class names."""

    images: np.ndarray
    labels: np.ndarray
    classes: list[str]
    source: str
    synthetic: bool
    groups: np.ndarray | None = None  # patient id per image (real data); None: every image its own

    def sha256(self) -> str:
        """Hash of the pixel data, labels and class names (a data fingerprint for the manifest)."""
        h = hashlib.sha256()
        h.update(np.ascontiguousarray(self.images, dtype=np.float32).tobytes())
        h.update(np.ascontiguousarray(self.labels, dtype=np.int64).tobytes())
        h.update("\n".join(self.classes).encode())
        return h.hexdigest()


def _smooth_field(rng: np.random.Generator, size: int, coarse: int = 4) -> np.ndarray:
    """A smooth random field in [-1, 1] (bilinear upsampling of a coarse grid)."""
    grid = rng.uniform(-1.0, 1.0, (coarse, coarse))
    t = np.linspace(0.0, coarse - 1.0, size)
    i0 = np.clip(np.floor(t).astype(int), 0, coarse - 2)
    f = t - i0
    rows = grid[i0] * (1 - f)[:, None] + grid[i0 + 1] * f[:, None]  # (size, coarse)
    return rows[:, i0] * (1 - f)[None, :] + rows[:, i0 + 1] * f[None, :]


def _one_slice(label: str, rng: np.random.Generator, size: int) -> np.ndarray:
    c = (size - 1) / 2.0
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float64)
    # head pose: centre offset, rotation, size
    cy, cx = c + rng.uniform(-3, 3), c + rng.uniform(-3, 3)
    th = np.deg2rad(rng.uniform(-15, 15))
    dy, dx = yy - cy, xx - cx
    v = dy * np.cos(th) - dx * np.sin(th)  # head-frame vertical (anterior-posterior)
    u = dy * np.sin(th) + dx * np.cos(th)  # head-frame horizontal (left-right)
    scale = rng.uniform(0.90, 1.0) * size / 64.0
    a_out, b_out = 29.0 * scale, 24.0 * scale  # scalp outer semi-axes (v, u)
    r = np.sqrt((v / a_out) ** 2 + (u / b_out) ** 2)  # 1.0 at the scalp surface
    ang = np.arctan2(v, u)

    img = np.zeros((size, size))
    img[r <= 1.0] = rng.uniform(0.70, 0.85)  # scalp / fat: bright
    img[r <= 0.93] = rng.uniform(0.08, 0.15)  # skull: dark
    img[r <= 0.87] = 0.12  # CSF gap under the skull

    brain_frac = rng.uniform(0.82, 0.86)
    sulcus_width = rng.uniform(0.45, 0.65)
    vent_scale = rng.uniform(0.85, 1.2)
    if label == "atrophy":
        brain_frac = 0.84 * rng.uniform(0.84, 0.94)
        sulcus_width = rng.uniform(0.25, 0.45)
        vent_scale = rng.uniform(1.25, 1.9)
    rb = r / brain_frac  # 1.0 at the brain surface
    gm, wm, csf = rng.uniform(0.45, 0.55), rng.uniform(0.72, 0.82), rng.uniform(0.08, 0.16)
    brain = rb <= 1.0
    img[brain] = gm
    img[rb <= 0.80] = wm
    # sulci: dark radial clefts through the cortex ribbon
    k = rng.integers(9, 14)
    phase = rng.uniform(0, 2 * np.pi)
    wobble = 0.6 * np.sin(rng.integers(2, 5) * ang + rng.uniform(0, 2 * np.pi))  # irregular gyri
    depth = 0.86 - 0.08 * np.sin(rng.integers(3, 7) * ang + rng.uniform(0, 2 * np.pi))
    clefts = (np.cos(k * ang + phase + wobble) > sulcus_width) & (rb > depth) & brain
    img[clefts] = csf

    # lateral ventricles: two tilted ellipses beside the midline (butterfly)
    shift_u = 0.0
    tumor = None
    if label == "tumor":
        rad = rng.uniform(2.5, 7.0) * scale
        rho = rng.uniform(0.0, 0.75 - rad / (24.0 * scale * brain_frac))
        phi = rng.uniform(0, 2 * np.pi)
        tv, tu = (
            rho * 29.0 * scale * brain_frac * np.sin(phi),
            rho * 24.0 * scale * brain_frac * np.cos(phi),
        )
        tumor = (tv, tu, rad)
        shift_u = -np.sign(tu) * max(0.0, rad - 4.0) * 0.8  # mass effect
    vs = vent_scale * scale
    for side in (-1.0, 1.0):
        vu = u - (side * 3.2 * vs + shift_u)
        vv = v + 1.5
        rot = -side * 0.22
        pv = vv * np.cos(rot) - vu * np.sin(rot)
        pu = vv * np.sin(rot) + vu * np.cos(rot)
        vent = (pv / (7.5 * vs)) ** 2 + (pu / (2.2 * vs)) ** 2 <= 1.0
        img[vent & brain] = csf

    if tumor is not None:
        tv, tu, rad = tumor
        d = np.sqrt((v - tv) ** 2 + (u - tu) ** 2)
        edema = (d <= rad * rng.uniform(1.3, 1.9)) & brain
        img[edema] = img[edema] * rng.uniform(0.45, 0.65) + 0.05
        mass = d <= rad
        img[mass] = rng.uniform(0.85, 1.0)
    elif label == "stroke":
        width = np.deg2rad(rng.uniform(20, 50))
        centre = rng.choice([rng.uniform(-2.6, -0.5), rng.uniform(0.5, 2.6)])  # left/right territory
        dang = np.angle(np.exp(1j * (ang - centre)))
        wedge = (np.abs(dang) <= width / 2) & (rb >= rng.uniform(0.35, 0.55)) & (rb <= 1.0)
        img[wedge] = img[wedge] * rng.uniform(0.40, 0.62)

    # acquisition: contrast, smooth bias field, blur-free Gaussian noise
    img = img * rng.uniform(0.85, 1.15) * (1.0 + 0.15 * _smooth_field(rng, size))
    img = img + rng.normal(0.0, rng.uniform(0.05, 0.12), (size, size))
    return np.clip(img, 0.0, 1.0)


def mri_slices(n: int = 1200, seed: int = 42, size: int = MRI_SIZE) -> ImageSet:
    """Generate ``n`` synthetic brain MRI slices (balanced over :data:`MRI_CLASSES`), seeded.

    Returns an :class:`ImageSet` with images (n, size, size) float32 in [0, 1], shuffled labels.
    """
    k = len(MRI_CLASSES)
    if n < k:
        raise ValueError(f"n must be >= {k} (one slice per class), got {n}")
    rng = np.random.default_rng([seed, 2])
    labels = np.arange(n) % k
    rng.shuffle(labels)
    images = np.empty((n, size, size), dtype=np.float32)
    for i, lab in enumerate(labels):
        images[i] = _one_slice(MRI_CLASSES[lab], rng, size)
    return ImageSet(
        images=images,
        labels=labels.astype(np.int64),
        classes=list(MRI_CLASSES),
        source=f"synthetic:{MRI_GENERATOR}(n={n},seed={seed},size={size})",
        synthetic=True,
    )
