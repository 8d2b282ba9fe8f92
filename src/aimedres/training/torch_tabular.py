"""A small PyTorch multilayer perceptron for tabular data, as scikit-learn estimators.

:class:`TorchMLPClassifier` and :class:`TorchMLPRegressor` follow the scikit-learn estimator API
(``get_params``/``set_params``/``clone``, ``fit``, ``predict``, ``predict_proba``), so they sit at the
end of a Pipeline whose preprocessing is fitted inside each cross-validation fold.

Training, per ``fit`` call:

* a validation split (``validation_fraction``, stratified for classification) is carved from the
  rows given to ``fit`` -- inside cross-validation that is the TRAINING fold only, the test fold is
  never seen;
* full-batch-free minibatch Adam with weight decay for at most ``epochs`` epochs, early stopping
  when the validation loss has not improved for ``patience`` epochs; the weights of the best epoch
  are restored;
* determinism: every random draw (initial weights, validation split, batch order) comes from
  generators seeded with ``random_state``; no dropout; torch runs on CPU with ``n_jobs`` intra-op
  threads (restored afterwards). Same seed and same thread count give identical predictions.

The fitted network is kept as a plain state dict of numpy arrays, so a fitted estimator pickles
(joblib) without torch-specific state and predicts after unpickling.
"""
from __future__ import annotations

import copy
import math
from typing import Any

import numpy as np
from sklearn.base import BaseEstimator, ClassifierMixin, RegressorMixin
from sklearn.model_selection import train_test_split
from sklearn.utils.multiclass import unique_labels


def _torch():
    import torch

    return torch


def _build_network(n_in: int, hidden: tuple[int, ...], n_out: int, generator: Any) -> Any:
    """Linear-ReLU stack; weights initialised from ``generator`` (PyTorch's default scheme)."""
    torch = _torch()
    layers: list[Any] = []
    sizes = [n_in, *hidden]
    for a, b in zip(sizes[:-1], sizes[1:]):
        layers += [torch.nn.Linear(a, b), torch.nn.ReLU()]
    layers.append(torch.nn.Linear(sizes[-1], n_out))
    net = torch.nn.Sequential(*layers)
    with torch.no_grad():
        for module in net:
            if isinstance(module, torch.nn.Linear):
                torch.nn.init.kaiming_uniform_(module.weight, a=math.sqrt(5), generator=generator)
                bound = 1.0 / math.sqrt(module.in_features)
                torch.nn.init.uniform_(module.bias, -bound, bound, generator=generator)
    return net


class _TorchMLPBase(BaseEstimator):
    """Shared training loop of the classifier and the regressor."""

    def __init__(
        self,
        hidden_layer_sizes: tuple[int, ...] = (64, 32),
        epochs: int = 100,
        learning_rate: float = 1e-3,
        weight_decay: float = 1e-4,
        batch_size: int = 32,
        validation_fraction: float = 0.2,
        patience: int = 10,
        random_state: int = 0,
        n_jobs: int = 1,
    ) -> None:
        self.hidden_layer_sizes = hidden_layer_sizes
        self.epochs = epochs
        self.learning_rate = learning_rate
        self.weight_decay = weight_decay
        self.batch_size = batch_size
        self.validation_fraction = validation_fraction
        self.patience = patience
        self.random_state = random_state
        self.n_jobs = n_jobs

    # subclasses define: _n_outputs, _targets (np -> torch tensor), _loss, _stratify
    def _fit_network(self, X: np.ndarray, t: np.ndarray, n_out: int, stratify: np.ndarray | None) -> None:
        torch = _torch()
        X = np.asarray(X, dtype=np.float32)
        if X.ndim != 2:
            raise ValueError(f"expected a 2-d feature array, got shape {X.shape}")
        if not np.all(np.isfinite(X)):
            raise ValueError("features contain NaN or inf; impute them in the pipeline first")
        seed = int(self.random_state)
        n = X.shape[0]
        use_val = self.validation_fraction > 0 and n >= 10
        if use_val:
            try:
                tr, va = train_test_split(np.arange(n), test_size=self.validation_fraction,
                                          random_state=seed, stratify=stratify)
            except ValueError:  # a class too small to stratify
                tr, va = train_test_split(np.arange(n), test_size=self.validation_fraction,
                                          random_state=seed)
        else:
            tr, va = np.arange(n), np.arange(0)
        previous_threads = torch.get_num_threads()
        torch.set_num_threads(max(1, int(self.n_jobs)))
        try:
            gen = torch.Generator().manual_seed(seed)
            net = _build_network(X.shape[1], tuple(self.hidden_layer_sizes), n_out, gen)
            Xt = torch.from_numpy(X)
            tt = self._targets(t)
            opt = torch.optim.Adam(net.parameters(), lr=self.learning_rate, weight_decay=self.weight_decay)
            loss_fn = self._loss()
            best_loss, best_state, best_epoch, stale = math.inf, None, 0, 0
            history: list[float] = []
            tr_t = torch.from_numpy(tr)
            bs = max(1, int(self.batch_size))
            for epoch in range(int(self.epochs)):
                net.train()
                order = tr_t[torch.randperm(len(tr_t), generator=gen)]
                for start in range(0, len(order), bs):
                    idx = order[start:start + bs]
                    opt.zero_grad()
                    loss = loss_fn(net(Xt[idx]), tt[idx])
                    loss.backward()
                    opt.step()
                if not use_val:
                    continue
                net.eval()
                with torch.no_grad():
                    val = float(loss_fn(net(Xt[va]), tt[va]))
                history.append(val)
                if val < best_loss - 1e-6:
                    best_loss, best_epoch, stale = val, epoch + 1, 0
                    best_state = copy.deepcopy(net.state_dict())
                else:
                    stale += 1
                    if stale >= self.patience:
                        break
            if best_state is not None:
                net.load_state_dict(best_state)
            else:
                best_epoch = int(self.epochs)
        finally:
            torch.set_num_threads(previous_threads)
        self.n_features_in_ = X.shape[1]
        self.n_outputs_ = n_out
        self.best_epoch_ = best_epoch
        self.validation_loss_ = history
        self.state_ = {k: v.detach().cpu().numpy().copy() for k, v in net.state_dict().items()}

    def _forward(self, X: Any) -> np.ndarray:
        torch = _torch()
        if not hasattr(self, "state_"):
            raise AttributeError(f"{type(self).__name__} is not fitted yet; call fit first")
        X = np.asarray(X, dtype=np.float32)
        if X.shape[1] != self.n_features_in_:
            raise ValueError(f"expected {self.n_features_in_} features, got {X.shape[1]}")
        gen = torch.Generator().manual_seed(0)  # weights are overwritten by the state dict
        net = _build_network(self.n_features_in_, tuple(self.hidden_layer_sizes), self.n_outputs_, gen)
        net.load_state_dict({k: torch.from_numpy(v) for k, v in self.state_.items()})
        net.eval()
        previous_threads = torch.get_num_threads()
        torch.set_num_threads(max(1, int(self.n_jobs)))
        try:
            with torch.no_grad():
                return net(torch.from_numpy(X)).numpy().astype(np.float64)
        finally:
            torch.set_num_threads(previous_threads)


class TorchMLPClassifier(ClassifierMixin, _TorchMLPBase):
    """MLP classifier (softmax / cross-entropy) with early stopping on an internal validation split.

    Parameters:
        hidden_layer_sizes: widths of the hidden ReLU layers.
        epochs: maximum training epochs (the job's ``--epochs``).
        learning_rate, weight_decay: Adam settings (weight decay = L2 regularisation).
        batch_size: minibatch size.
        validation_fraction: share of the ``fit`` rows held out for early stopping (stratified).
        patience: epochs without validation improvement before stopping.
        random_state: seed of every random draw.
        n_jobs: torch intra-op threads during fit/predict.
    """

    def fit(self, X: Any, y: Any) -> "TorchMLPClassifier":
        """Fit on features ``X`` (numeric, no NaN) and labels ``y``."""
        y = np.asarray(y)
        self.classes_ = unique_labels(y)
        if len(self.classes_) < 2:
            raise ValueError("need at least two classes to fit a classifier")
        y_idx = np.searchsorted(self.classes_, y)
        self._fit_network(X, y_idx, len(self.classes_), stratify=y_idx)
        return self

    def _targets(self, t: np.ndarray) -> Any:
        return _torch().from_numpy(np.asarray(t, dtype=np.int64))

    def _loss(self) -> Any:
        return _torch().nn.CrossEntropyLoss()

    def predict_proba(self, X: Any) -> np.ndarray:
        """Class probabilities, columns in ``classes_`` order."""
        logits = self._forward(X)
        logits = logits - logits.max(axis=1, keepdims=True)
        p = np.exp(logits)
        return p / p.sum(axis=1, keepdims=True)

    def predict(self, X: Any) -> np.ndarray:
        """Most probable class."""
        return self.classes_[np.argmax(self.predict_proba(X), axis=1)]


class TorchMLPRegressor(RegressorMixin, _TorchMLPBase):
    """MLP regressor (mean squared error on the standardised target) with early stopping.

    Same parameters as :class:`TorchMLPClassifier`; the target is standardised with the mean and
    standard deviation of the rows given to ``fit``.
    """

    def fit(self, X: Any, y: Any) -> "TorchMLPRegressor":
        """Fit on features ``X`` (numeric, no NaN) and numeric target ``y``."""
        y = np.asarray(y, dtype=np.float64).ravel()
        self.y_mean_ = float(y.mean())
        self.y_scale_ = float(y.std()) or 1.0
        t = ((y - self.y_mean_) / self.y_scale_).astype(np.float32)
        self._fit_network(X, t, 1, stratify=None)
        return self

    def _targets(self, t: np.ndarray) -> Any:
        return _torch().from_numpy(np.asarray(t, dtype=np.float32)).reshape(-1, 1)

    def _loss(self) -> Any:
        return _torch().nn.MSELoss()

    def predict(self, X: Any) -> np.ndarray:
        """Predicted target values."""
        return self._forward(X).ravel() * self.y_scale_ + self.y_mean_
