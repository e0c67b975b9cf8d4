"""The built-in PyTorch MLP: a scikit-learn estimator (``fit``, ``predict``, ``predict_proba``)
that trains a multilayer perceptron with torch.

>>> from cumulo.ml.mlp import MLPClassifier
>>> model = MLPClassifier(hidden_layers=[64, 32], epochs=30).fit(x, y)   # doctest: +SKIP
>>> model.predict_proba(x[:5])                                           # doctest: +SKIP

Features are standardized inside (missing values become the training mean), so give it
numbers: one-hot encode text first (``cumulo train`` does). Each epoch it scores a held-out
``validation_fraction`` of the rows (or ``eval_set``). In a job it logs ``train_loss`` and
``val_loss`` per epoch, and saves a checkpoint through :mod:`cumulo.ml.checkpoint`, so a
retried attempt resumes at the epoch the last one reached, and ends where an uninterrupted fit
would have.
"""

from __future__ import annotations

import sys
import warnings
import zlib
from collections.abc import Sequence
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
from sklearn.base import BaseEstimator, ClassifierMixin, RegressorMixin

__all__ = ["MLPClassifier", "MLPRegressor", "mlflow_options"]


def _torch() -> Any:
    try:
        import torch
    except ImportError as exc:
        raise ImportError("the MLP is PyTorch: pip install 'cumulo[torch]'") from exc
    return torch


def _whole(value: Any) -> bool:
    return isinstance(value, int | np.integer) and not isinstance(value, bool)


def _number(value: Any) -> bool:
    return isinstance(value, int | float | np.number) and not isinstance(value, bool)


class _MLP(BaseEstimator):  # type: ignore[misc]
    _classification: ClassVar[bool]

    def __init__(self, hidden_layers: Sequence[int] = (64, 32), epochs: int = 20,
                 lr: float = 1e-3, batch_size: int = 64, weight_decay: float = 0.0,
                 validation_fraction: float = 0.1, random_state: int | None = None,
                 checkpoint: bool = True) -> None:
        self.hidden_layers = hidden_layers
        self.epochs = epochs
        self.lr = lr
        self.batch_size = batch_size
        self.weight_decay = weight_decay
        self.validation_fraction = validation_fraction
        self.random_state = random_state
        self.checkpoint = checkpoint

    # --- checks and data ----------------------------------------------------------------------

    def _check_params(self) -> None:
        layers = self.hidden_layers
        if isinstance(layers, str | bytes) or not isinstance(layers, Sequence) or \
                not all(_whole(n) and n >= 1 for n in layers):
            raise ValueError(f"hidden_layers must be a list of layer widths, each 1 or more, "
                             f"like [64, 32]; got {layers!r}")
        for name, least in (("epochs", 1), ("batch_size", 1)):
            value = getattr(self, name)
            if not _whole(value) or value < least:
                raise ValueError(f"{name} must be a whole number, {least} or more; got {value!r}")
        if not _number(self.lr) or not self.lr > 0:
            raise ValueError(f"lr (the learning rate) must be more than 0; got {self.lr!r}")
        if not _number(self.weight_decay) or not self.weight_decay >= 0:
            raise ValueError(f"weight_decay must be 0 or more; got {self.weight_decay!r}")
        if not _number(self.validation_fraction) or not 0 <= self.validation_fraction < 1:
            raise ValueError("validation_fraction must be at least 0 and less than 1; got "
                             f"{self.validation_fraction!r}")

    def _matrix(self, x: Any) -> Any:
        try:
            matrix = np.asarray(x, dtype=np.float32)
        except (TypeError, ValueError) as exc:
            raise ValueError("the MLP takes numeric features; one-hot encode text columns "
                             f"first (pandas.get_dummies): {exc}") from exc
        if matrix.ndim != 2:
            raise ValueError(f"features must be a table (2-D), not {matrix.ndim}-D")
        return matrix

    def _scale(self, x: Any) -> Any:
        matrix = self._matrix(x)
        if matrix.shape[1] != self.n_features_in_:
            raise ValueError(f"the model was fitted on {self.n_features_in_} features, not "
                             f"{matrix.shape[1]}")
        scaled = (matrix - self.mean_) / self.scale_
        return np.nan_to_num(scaled, nan=0.0, posinf=0.0, neginf=0.0).astype(np.float32)

    def _encode(self, y: Any, *, fit: bool) -> Any:
        raise NotImplementedError

    # --- training -----------------------------------------------------------------------------

    def fit(self, X: Any, y: Any, *, eval_set: tuple[Any, Any] | None = None) -> _MLP:
        """Train for ``epochs`` epochs (fewer, when a retried job resumes from a checkpoint)."""
        self._check_params()
        matrix = self._matrix(X)
        if len(matrix) != len(y):
            raise ValueError(f"X has {len(matrix)} rows but y has {len(y)}")
        if len(matrix) < 2:
            raise ValueError("the MLP needs at least 2 rows to train on")
        if hasattr(X, "columns"):
            self.feature_names_in_ = np.asarray([str(c) for c in X.columns], dtype=object)
        self.n_features_in_ = matrix.shape[1]
        with warnings.catch_warnings():  # a column with no values at all: mean 0, scale 1
            warnings.simplefilter("ignore", RuntimeWarning)
            mean = np.nan_to_num(np.nanmean(matrix, axis=0))
            scale = np.nan_to_num(np.nanstd(matrix, axis=0))
        self.mean_ = np.asarray(mean, dtype=np.float32)
        self.scale_ = np.where(scale > 0, scale, 1.0).astype(np.float32)
        features, target = self._scale(matrix), self._encode(y, fit=True)
        torch = _torch()
        seed = 0 if self.random_state is None else int(self.random_state)
        generator = torch.Generator().manual_seed(seed)
        order = torch.randperm(len(features), generator=generator).numpy()
        if eval_set is not None:
            val_x, val_y = self._scale(eval_set[0]), self._encode(eval_set[1], fit=False)
            train_x, train_y = features, target
        else:
            cut = int(len(features) * self.validation_fraction)
            held, kept = order[:cut], order[cut:]
            val_x, val_y = features[held], target[held]
            train_x, train_y = features[kept], target[kept]
        torch.manual_seed(seed)
        net = self._network(torch, matrix.shape[1])
        optimizer = torch.optim.AdamW(net.parameters(), lr=float(self.lr),
                                      weight_decay=float(self.weight_decay))
        loss_fn = self._loss(torch)
        fingerprint = self._fingerprint(features, target)
        start = self._resume(net, optimizer, generator, fingerprint)
        tx, ty = torch.from_numpy(train_x), torch.from_numpy(train_y)
        vx, vy = torch.from_numpy(val_x), torch.from_numpy(val_y)
        for epoch in range(start, self.epochs):
            net.train()
            total = 0.0
            for batch in torch.randperm(len(tx), generator=generator).split(int(self.batch_size)):
                optimizer.zero_grad()
                loss = loss_fn(net(tx[batch]), ty[batch])
                loss.backward()
                optimizer.step()
                total += float(loss.detach()) * len(batch)
            losses = {"train_loss": total / max(1, len(tx))}
            if len(vx):
                net.eval()
                with torch.no_grad():
                    losses["val_loss"] = float(loss_fn(net(vx), vy))
            self._report(epoch, losses)
            self._save(net, optimizer, generator, fingerprint, epoch)
        net.eval()
        self.net_ = net
        self.resumed_at_ = start  # the epochs an earlier attempt had done (0: none)
        return self

    def _network(self, torch: Any, inputs: int) -> Any:
        layers: list[Any] = []
        width = inputs
        for size in self.hidden_layers:
            layers += [torch.nn.Linear(width, int(size)), torch.nn.ReLU()]
            width = int(size)
        layers.append(torch.nn.Linear(width, self._outputs()))
        return torch.nn.Sequential(*layers)

    def _outputs(self) -> int:
        raise NotImplementedError

    def _loss(self, torch: Any) -> Any:
        raise NotImplementedError

    def _forward(self, x: Any) -> Any:
        torch = _torch()
        with torch.no_grad():
            return self.net_(torch.from_numpy(self._scale(x))).double().numpy()

    # --- in a job: metrics and checkpoints ---------------------------------------------------

    def _in_job(self) -> bool:
        import cumulo.job

        return cumulo.job.in_job()

    def _fingerprint(self, features: Any, target: Any) -> dict[str, Any]:
        """What a checkpoint must match to be resumed from: the same model and data."""
        params = {k: (list(v) if k == "hidden_layers" else v)
                  for k, v in self.get_params().items() if k not in ("epochs", "checkpoint")}
        return {"class": type(self).__name__, **params, "rows": len(features),
                "features": int(features.shape[1]),
                "data": zlib.crc32(features.tobytes()) ^ zlib.crc32(target.tobytes())}

    def _folder(self) -> Path:
        import cumulo.job

        folder: Path = cumulo.job.checkpoint_dir
        return folder / "mlp"

    def _resume(self, net: Any, optimizer: Any, generator: Any,
                fingerprint: dict[str, Any]) -> int:
        if not (self.checkpoint and self._in_job()):
            return 0
        from cumulo.ml import checkpoint

        folder = self._folder()
        found = checkpoint.load_checkpoint(directory=folder)
        if found is not None and found[0].get("fingerprint") == fingerprint:
            state, epoch = found
            net.load_state_dict(state["model"])
            optimizer.load_state_dict(state["optimizer"])
            generator.set_state(state["generator"])
            print(f"mlp: resuming at epoch {epoch + 2} of {self.epochs}, from the checkpoint "
                  "of an earlier attempt", flush=True)
            return min(epoch + 1, self.epochs)
        for _, path in checkpoint.checkpoints(folder):  # another model's: start afresh
            path.unlink()
        return 0

    def _save(self, net: Any, optimizer: Any, generator: Any, fingerprint: dict[str, Any],
              epoch: int) -> None:
        if not (self.checkpoint and self._in_job()):
            return
        from cumulo.ml import checkpoint

        checkpoint.save_checkpoint({"model": net.state_dict(), "optimizer": optimizer.state_dict(),
                                    "generator": generator.get_state(),
                                    "fingerprint": fingerprint}, epoch,
                                   directory=self._folder())

    def _report(self, epoch: int, losses: dict[str, float]) -> None:
        if not self._in_job():
            return
        import cumulo.job

        cumulo.job.log_metrics(losses, step=epoch + 1)
        shown = " ".join(f"{k} {v:.4f}" for k, v in losses.items())
        print(f"mlp: epoch {epoch + 1}/{self.epochs} {shown}", file=sys.stdout, flush=True)


class MLPClassifier(ClassifierMixin, _MLP):  # type: ignore[misc]
    """A multilayer perceptron classifier (softmax over the classes, cross-entropy loss)."""

    _classification = True

    def _encode(self, y: Any, *, fit: bool) -> Any:
        labels = np.asarray(y)
        if fit:
            self.classes_ = np.unique(labels)
            if len(self.classes_) < 2:
                raise ValueError("a classifier needs at least two classes in y")
        return np.searchsorted(self.classes_, labels).astype(np.int64)

    def fit(self, X: Any, y: Any, *, eval_set: tuple[Any, Any] | None = None) -> MLPClassifier:
        if eval_set is not None:  # rows of classes it never saw are left out of the loss
            labels = np.asarray(eval_set[1])
            known = np.isin(labels, np.unique(np.asarray(y)))
            eval_set = (self._matrix(eval_set[0])[known], labels[known])
        super().fit(X, y, eval_set=eval_set)
        return self

    def _outputs(self) -> int:
        return len(self.classes_)

    def _loss(self, torch: Any) -> Any:
        return torch.nn.CrossEntropyLoss()

    def predict_proba(self, X: Any) -> Any:
        logits = self._forward(X)
        logits -= logits.max(axis=1, keepdims=True)
        weights = np.exp(logits)
        return weights / weights.sum(axis=1, keepdims=True)

    def predict(self, X: Any) -> Any:
        return self.classes_[self._forward(X).argmax(axis=1)]


class MLPRegressor(RegressorMixin, _MLP):  # type: ignore[misc]
    """A multilayer perceptron regressor (one output, mean squared error on a standardized
    target)."""

    _classification = False

    def _encode(self, y: Any, *, fit: bool) -> Any:
        try:
            values = np.asarray(y, dtype=np.float64)
        except (TypeError, ValueError) as exc:
            raise ValueError(f"a regressor needs a numeric target: {exc}") from exc
        if fit:
            self.y_mean_ = float(np.mean(values))
            self.y_scale_ = float(np.std(values)) or 1.0
        return ((values - self.y_mean_) / self.y_scale_).astype(np.float32).reshape(-1, 1)

    def fit(self, X: Any, y: Any, *, eval_set: tuple[Any, Any] | None = None) -> MLPRegressor:
        super().fit(X, y, eval_set=eval_set)
        return self

    def _outputs(self) -> int:
        return 1

    def _loss(self, torch: Any) -> Any:
        return torch.nn.MSELoss()

    def predict(self, X: Any) -> Any:
        return self._forward(X)[:, 0] * self.y_scale_ + self.y_mean_


def mlflow_options() -> dict[str, Any]:
    """How ``mlflow.sklearn.log_model`` keeps an MLP: with this module's code inside the
    pickle, so the model loads wherever torch and scikit-learn are, Cumulo or not."""
    import cloudpickle  # type: ignore[import-untyped]

    cloudpickle.register_pickle_by_value(sys.modules[__name__])
    return {"serialization_format": "cloudpickle"}
