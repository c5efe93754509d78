"""Training the exported network with the NumPy backend: losses, optimizers, data, and the loop.

The loop is plain: shuffle, and for each batch run the tape-recording forward of `runtime.Runtime`,
take the loss and its gradient, walk the tape backwards, write BN running statistics back, and let
the optimizer update the trainable weights in place. The library never prints: progress goes to the
`on_step` / `on_epoch` callbacks, and the result (`TrainResult`) carries the whole history.
"""

from __future__ import annotations

import contextlib
import math
import operator
import os
import signal
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, ClassVar, SupportsIndex

import numpy as np

from .analysis import OPTIMIZER_SLOTS
from .errors import CnnCalcError, RuntimeInputError
from .fileio import numpy_file_kind, numpy_load_problem
from .ir import Graph, show_shape
from .ops.base import Shape, numel
from .weights import Weights

LOSSES = ("auto", "cross-entropy", "nll", "mse")
OPTIMIZERS = ("sgd", "sgd-momentum", "nesterov", "adam")
SCHEDULES = ("constant", "step", "cosine")
LossFn = Callable[[np.ndarray, np.ndarray], tuple[float, np.ndarray]]


# ---- losses: each returns the mean loss over the batch and its gradient with respect to the outputs ----
def softmax_cross_entropy(logits: np.ndarray, labels: np.ndarray) -> tuple[float, np.ndarray]:
    """Cross-entropy of raw scores, through log-sum-exp shifted by the row max so exp never overflows."""
    n = logits.shape[0]
    shifted = logits - logits.max(axis=1, keepdims=True)
    log_probs = shifted - np.log(np.exp(shifted).sum(axis=1, keepdims=True))
    # loss = -mean_i log p_i[y_i]
    loss = -float(log_probs[np.arange(n), labels].mean())
    # d loss / d logits = (softmax - onehot) / N
    grad = np.exp(log_probs)
    grad[np.arange(n), labels] -= 1
    return loss, grad / n


def nll_loss(log_probs: np.ndarray, labels: np.ndarray) -> tuple[float, np.ndarray]:
    """Negative log-likelihood of outputs that already are log-probabilities (a LogSoftmax at the end)."""
    n = log_probs.shape[0]
    loss = -float(log_probs[np.arange(n), labels].mean())
    # d loss / d log_p = -onehot / N
    grad = np.zeros_like(log_probs)
    grad[np.arange(n), labels] = -1.0 / n
    return loss, grad


def probability_cross_entropy(probs: np.ndarray, labels: np.ndarray) -> tuple[float, np.ndarray]:
    """Cross-entropy of outputs that already are probabilities (a Softmax at the end); p is floored at 1e-12."""
    n = probs.shape[0]
    picked = np.maximum(probs[np.arange(n), labels], 1e-12)
    loss = -float(np.log(picked).mean())
    # d loss / d p = -onehot / (N p_y); Softmax's backward turns it into (p - onehot) / N
    grad = np.zeros_like(probs)
    grad[np.arange(n), labels] = -1.0 / (n * picked)
    return loss, grad


def mse_loss(outputs: np.ndarray, labels: np.ndarray) -> tuple[float, np.ndarray]:
    """Mean squared error against one-hot targets, averaged over samples and classes."""
    target = np.zeros_like(outputs)
    target[np.arange(outputs.shape[0]), labels] = 1
    diff = outputs - target
    # loss = mean (o - t)^2 over N*K values; gradient 2 (o - t) / (N K)
    return float((diff**2).mean()), 2 * diff / diff.size


def output_kind(outputs: np.ndarray) -> str:
    """What a network's outputs are, read from their values: "log-probabilities", "probabilities" or "logits"."""
    values = outputs.astype(np.float64)
    if np.all(values <= 1e-6) and np.allclose(np.exp(values).sum(axis=1), 1.0, atol=1e-3):
        return "log-probabilities"
    if np.all(values >= 0) and np.allclose(values.sum(axis=1), 1.0, atol=1e-3):
        return "probabilities"
    return "logits"


def pick_loss(name: str, outputs: np.ndarray) -> tuple[str, LossFn]:
    """The loss named, or for "auto" the cross-entropy that fits what the network outputs."""
    if name == "auto":
        kind = output_kind(outputs)
        if kind == "log-probabilities":
            return "nll (the network outputs log-probabilities)", nll_loss
        if kind == "probabilities":
            return "cross-entropy on probabilities (the network outputs probabilities)", probability_cross_entropy
        return "softmax cross-entropy (the network outputs logits)", softmax_cross_entropy
    table: dict[str, LossFn] = {"cross-entropy": softmax_cross_entropy, "nll": nll_loss, "mse": mse_loss}
    if name not in table:
        raise CnnCalcError(f"unknown loss {name!r}", hint=f"use one of {', '.join(LOSSES)}")
    if name == "nll" and (kind := output_kind(outputs)) != "log-probabilities":
        # NLL on anything else has no minimum: it pushes the true class's output up without bound
        raise CnnCalcError(f"--loss nll needs log-probabilities, but the network outputs {kind}",
                           hint="end the network with LogSoftmax, or use --loss auto (it picks the cross-entropy "
                                "that fits the outputs)")
    return name, table[name]


# ---- optimizers: they update the parameter arrays in place ------------------------------------------
class Optimizer:
    """Updates trainable arrays in place from their gradients; keeps `OPTIMIZER_SLOTS[kind]` arrays per param."""

    kind: ClassVar[str] = "sgd"

    def __init__(self, params: list[np.ndarray], weight_decay: float = 0.0) -> None:
        self.params = params
        self.weight_decay = weight_decay
        self.state: list[list[np.ndarray]] = [[] for _ in params]  # per param, OPTIMIZER_SLOTS[kind] arrays

    def decayed(self, index: int, grad: np.ndarray) -> np.ndarray:
        """L2 weight decay on weight matrices and kernels (ndim > 1); biases and BN scales are left alone."""
        param = self.params[index]
        if self.weight_decay and param.ndim > 1:
            # d/dw (wd/2 * ||w||^2) = wd * w
            return grad + self.weight_decay * param
        return grad

    def step(self, grads: list[np.ndarray], lr: float) -> None:
        """Apply one update with learning rate `lr`."""
        raise NotImplementedError

    def state_bytes(self) -> int:
        """Bytes of optimizer state, for comparison with the analysis' training memory."""
        return sum(slot.nbytes for slots in self.state for slot in slots)


class SGD(Optimizer):
    """Plain SGD: w -= lr * g."""

    kind = "sgd"

    def step(self, grads: list[np.ndarray], lr: float) -> None:
        for index, (param, grad) in enumerate(zip(self.params, grads, strict=True)):
            param -= lr * self.decayed(index, grad)


class Momentum(Optimizer):
    """SGD with momentum (PyTorch's form: v = mu v + g; w -= lr v), optionally Nesterov (w -= lr (g + mu v))."""

    kind = "sgd-momentum"

    def __init__(self, params: list[np.ndarray], momentum: float = 0.9, nesterov: bool = False,
                 weight_decay: float = 0.0) -> None:
        super().__init__(params, weight_decay)
        self.momentum = momentum
        self.nesterov = nesterov
        self.state = [[np.zeros_like(param)] for param in params]

    def step(self, grads: list[np.ndarray], lr: float) -> None:
        for index, (param, grad) in enumerate(zip(self.params, grads, strict=True)):
            grad = self.decayed(index, grad)
            velocity = self.state[index][0]
            velocity *= self.momentum
            velocity += grad  # v = mu v + g
            # Nesterov looks ahead along the new velocity: step = g + mu v
            param -= lr * (grad + self.momentum * velocity if self.nesterov else velocity)


class Adam(Optimizer):
    """Adam (Kingma & Ba 2015) with bias correction; weight decay is L2 added to the gradient."""

    kind = "adam"

    def __init__(self, params: list[np.ndarray], beta1: float = 0.9, beta2: float = 0.999, eps: float = 1e-8,
                 weight_decay: float = 0.0) -> None:
        super().__init__(params, weight_decay)
        self.beta1, self.beta2, self.eps = beta1, beta2, eps
        self.steps = 0
        self.state = [[np.zeros_like(param), np.zeros_like(param)] for param in params]

    def step(self, grads: list[np.ndarray], lr: float) -> None:
        self.steps += 1
        # bias corrections 1 - beta^t for the zero-initialized moments
        correction1 = 1 - self.beta1**self.steps
        correction2 = 1 - self.beta2**self.steps
        for index, (param, grad) in enumerate(zip(self.params, grads, strict=True)):
            grad = self.decayed(index, grad)
            m, v = self.state[index]
            m *= self.beta1
            m += (1 - self.beta1) * grad  # m = b1 m + (1 - b1) g
            v *= self.beta2
            v += (1 - self.beta2) * grad * grad  # v = b2 v + (1 - b2) g^2
            # w -= lr * m_hat / (sqrt(v_hat) + eps)
            param -= lr * (m / correction1) / (np.sqrt(v / correction2) + self.eps)


def make_optimizer(name: str, params: list[np.ndarray], momentum: float = 0.9,
                   weight_decay: float = 0.0) -> Optimizer:
    """An optimizer by its CLI name (sgd, sgd-momentum, nesterov, adam)."""
    if name == "sgd":
        return SGD(params, weight_decay)
    if name in ("sgd-momentum", "nesterov"):
        return Momentum(params, momentum, nesterov=name == "nesterov", weight_decay=weight_decay)
    if name == "adam":
        return Adam(params, weight_decay=weight_decay)
    raise CnnCalcError(f"unknown optimizer {name!r}", hint=f"use one of {', '.join(OPTIMIZERS)}")


def slots_per_param(name: str) -> int:
    """Optimizer state arrays per trainable parameter, as the analysis counts them for training memory."""
    return OPTIMIZER_SLOTS["sgd-momentum" if name == "nesterov" else name]


def default_lr(optimizer: str) -> float:
    """A learning rate that suits each optimizer on BN networks: 1e-2 for Adam, 0.05 for SGD."""
    return 0.01 if optimizer == "adam" else 0.05


# ---- learning-rate schedules ------------------------------------------------------------------------
def learning_rate(schedule: str, base_lr: float, progress: float, epoch: int, step_size: int = 0,
                  gamma: float = 0.1) -> float:
    """The rate for a step at `progress` (the share of the run done, 0 to 1) in epoch `epoch` (0-based).

    constant: base_lr; step: base_lr * gamma^(epoch // step_size); cosine: half a cosine from base_lr to 0.
    """
    if schedule == "constant":
        return base_lr
    if schedule == "step":
        # multiply by gamma every step_size epochs
        return base_lr * gamma ** (epoch // max(step_size, 1))
    if schedule == "cosine":
        # lr = base / 2 * (1 + cos(pi * t / T)), t / T = progress in [0, 1]
        return 0.5 * base_lr * (1 + math.cos(math.pi * min(max(progress, 0.0), 1.0)))
    raise CnnCalcError(f"unknown schedule {schedule!r}", hint=f"use one of {', '.join(SCHEDULES)}")


# ---- data -------------------------------------------------------------------------------------------
@dataclass
class Dataset:
    """Training and validation arrays, NCHW (or N x F) float32, labels int64."""

    name: str
    x_train: np.ndarray
    y_train: np.ndarray
    x_val: np.ndarray
    y_val: np.ndarray
    classes: int

    def describe(self) -> str:
        """One line: name, sizes, shape."""
        return (f"{self.name}: {len(self.x_train)} training and {len(self.x_val)} validation samples of "
                f"{show_shape(tuple(self.x_train.shape[1:]))}, {self.classes} classes")

    def __repr__(self) -> str:
        """The description, not the arrays."""
        return f"<Dataset {self.describe()}>"


def class_count(graph: Graph) -> int:
    """Classes a network predicts: the size of its output vector (a 1x1xK image counts as K)."""
    shape = graph.shapes[graph.output]
    if len(shape) == 1 or (len(shape) == 3 and shape[1:] == (1, 1)):
        if shape[0] < 2:
            raise CnnCalcError("the network has a single output; training needs at least two classes",
                               hint="end the spec with FC(K) for K classes")
        return shape[0]
    raise CnnCalcError(
        f"training needs a network that ends in a vector of class scores, but {graph.name} ends in "
        f"{show_shape(shape)}", hint="end the spec with GAP | FC(K) or Flatten | FC(K) for K classes")


DIVERGED_RATIO = 10.0  # a final validation loss this many times the first: the summary warns of divergence
VAL_FRACTION = 0.2  # the share of the samples held out to validate, unless --val-fraction says otherwise
LAYOUTS = ("auto", "nhwc", "nchw")  # how a .npz's x is laid out (--layout)


def load_data(source: str | os.PathLike[str], graph: Graph, seed: int = 0, val_fraction: float | None = None,
              samples: int | None = None, layout: str = "auto") -> Dataset:
    """"synthetic", "digits", or a .npz file (str or Path), checked against the network's input and class count."""
    from .fileio import looks_like_path

    source = os.fspath(source)

    if layout not in LAYOUTS:  # also when the data is not a file, where the flag would otherwise go unread
        raise CnnCalcError(f"unknown layout {layout!r}", hint=f"use {', '.join(LAYOUTS)}")
    classes = class_count(graph)
    fraction = VAL_FRACTION if val_fraction is None else val_fraction
    if source == "synthetic":
        return synthetic_data(graph.input_shape, classes, samples, seed, fraction)
    if source == "digits":
        data = digits_data(seed, fraction)
    elif source.endswith(".npz") or Path(source).is_file() or looks_like_path(source):
        data = npz_data(Path(source), graph.input_shape, seed, val_fraction, layout)
    else:
        raise CnnCalcError(f"unknown data {source!r}",
                           hint="use --data synthetic, --data digits, or a .npz file with arrays x and y")
    return check_data(data, graph.input_shape, classes)


def check_data(data: Dataset, input_shape: Shape, classes: int) -> Dataset:
    """The data must fit the network: the same sample shape, labels below the class count, no empty set."""
    check_not_empty(data)
    if tuple(data.x_train.shape[1:]) != tuple(input_shape):
        raise RuntimeInputError(
            f"the {data.name} samples are {show_shape(tuple(data.x_train.shape[1:]))} but the network takes "
            f"{show_shape(tuple(input_shape))}",
            hint="use a spec whose input matches the data (specs/lenet_digits.yaml takes the 8x8x1 digits), "
                 "or --data synthetic, which follows any input shape")
    top = int(max(data.y_train.max(initial=0), data.y_val.max(initial=0)))
    if top >= classes:
        raise RuntimeInputError(f"the {data.name} labels go up to {top} but the network has {classes} outputs",
                                hint=f"end the spec with FC({top + 1})")
    data.classes = classes
    return data


def check_not_empty(data: Dataset) -> None:
    """Training needs samples to learn from and to validate on (an empty x_val divided by zero)."""
    for part, count in (("training", len(data.x_train)), ("validation", len(data.x_val))):
        if count == 0:
            raise RuntimeInputError(f"the {part} set of {data.name} has no samples",
                                    hint="give x_val and y_val at least one sample, or leave them out to split x"
                                    if part == "validation" else "give x and y at least two samples")


def split(x: np.ndarray, y: np.ndarray, val_fraction: float, seed: int, name: str, classes: int) -> Dataset:
    """A seeded random split; the validation part is `val_fraction` of the samples (at least one)."""
    if not 0.0 < val_fraction < 1.0:
        raise CnnCalcError(f"the validation fraction must lie strictly between 0 and 1, got {val_fraction}")
    if len(x) < 2:
        raise RuntimeInputError(f"{name} has {len(x)} sample{'' if len(x) == 1 else 's'}; training needs at least 2 "
                                "(one to validate)")
    order = np.random.default_rng(seed).permutation(len(x))
    n_val = min(max(1, round(len(x) * val_fraction)), len(x) - 1)
    val, train_idx = order[:n_val], order[n_val:]
    return Dataset(name, x[train_idx], y[train_idx], x[val], y[val], classes)


def synthetic_data(input_shape: Shape, classes: int, samples: int | None = None, seed: int = 0,
                   val_fraction: float = 0.2) -> Dataset:
    """A learnable task for any input shape: each class is a fixed random pattern plus a per-channel offset,
    and a sample is its class pattern plus Gaussian noise of a third of the pattern's scale."""
    rng = np.random.default_rng(seed + 7919)
    sample_bytes = numel(input_shape) * 4
    if samples is None:
        # 640 samples, fewer for big inputs so the set stays near 64 MiB
        samples = int(min(640, max(8 * classes, 64 * 2**20 // sample_bytes)))
    if samples < 2:
        raise CnnCalcError(f"the synthetic task needs at least 2 samples, got {samples}")
    check_synthetic_memory(samples, sample_bytes)
    offsets_shape = (classes, input_shape[0]) + (1,) * (len(input_shape) - 1)
    patterns = rng.standard_normal((classes, *input_shape)) + rng.standard_normal(offsets_shape)
    y = rng.integers(0, classes, samples)
    x = patterns[y] + rng.standard_normal((samples, *input_shape)) / 3
    return split(x.astype(np.float32), y.astype(np.int64), val_fraction, seed, "synthetic", classes)


def check_synthetic_memory(samples: int, sample_bytes: int) -> None:
    """Refuse a synthetic set larger than free memory before drawing it (MemoryError, or the OOM killer)."""
    from .runtime import available_memory_bytes

    needed = samples * sample_bytes * 5  # float32 samples, plus the float64 noise and patterns they come from
    available = available_memory_bytes()
    if available is not None and needed > available:
        most = max(2, available // (sample_bytes * 5))
        raise CnnCalcError(f"{samples:,} synthetic samples need about {needed / 2**30:,.1f} GiB to draw; "
                           f"{available / 2**30:,.1f} GiB are free", hint=f"use --samples {most} or fewer")


def digits_data(seed: int = 0, val_fraction: float = 0.2) -> Dataset:
    """The 1,797 8x8 handwritten digits that scikit-learn ships (no download), scaled to zero mean, unit std."""
    try:
        from sklearn.datasets import load_digits
    except ImportError:
        raise CnnCalcError("the digits data set comes with scikit-learn, which is not installed",
                           hint="pip install 'cnncalc[digits]' (or scikit-learn), or use --data synthetic") from None
    digits = load_digits()
    x = digits.images.astype(np.float32).reshape(-1, 1, 8, 8) / 16.0  # pixel values 0..16
    data = split(x, digits.target.astype(np.int64), val_fraction, seed, "digits", 10)
    # standardize with the training part's statistics only
    mean, std = data.x_train.mean(), data.x_train.std()
    data.x_train = (data.x_train - mean) / std
    data.x_val = (data.x_val - mean) / std
    return data


def npz_data(path: Path, input_shape: Shape, seed: int = 0, val_fraction: float | None = None,
             layout: str = "auto") -> Dataset:
    """User data: arrays x (NHWC, or NCHW) and y (integer labels); x_val and y_val, if present, validate."""
    if path.is_dir():
        raise CnnCalcError(f"data file {path} is a directory", hint="give a .npz file with arrays x and y")
    if not path.is_file():
        from .fileio import missing_file_hint

        raise CnnCalcError(f"data file {path} does not exist",
                           hint=f"{missing_file_hint(path)}; training data is a .npz file with arrays x and y")
    try:
        kind = numpy_file_kind(path)
        if kind != "npz":
            what = "a single array (.npy)" if kind == "npy" else "not a .npz file (a zip archive of arrays)"
            raise RuntimeInputError(f"{path} is {what}; training data is a .npz with arrays x and y",
                                    hint="save it with numpy.savez(path, x=images, y=labels)")
        with np.load(path, allow_pickle=False) as arrays:
            found = {key: arrays[key] for key in arrays.files}
    except (OSError, ValueError, EOFError) as error:
        raise RuntimeInputError(f"cannot read {path} as a .npz file: {numpy_load_problem(error)}",
                                hint="save it with numpy.savez(path, x=images, y=labels)") from None
    odd = [key for key, value in found.items() if not isinstance(value, np.ndarray)]  # NumPy hands over raw bytes
    if odd:
        raise RuntimeInputError(f"cannot read {path} as a .npz file: its member {odd[0]!r} is not a .npy array",
                                hint="save it with numpy.savez(path, x=images, y=labels)")
    for key in ("x", "y"):
        if key not in found:
            raise RuntimeInputError(f"{path} has no array {key!r} (it has {', '.join(found) or 'none'})",
                                    hint="save it with numpy.savez(path, x=images, y=labels)")
    x = to_nchw(found["x"], input_shape, layout, f"{path}: x")
    y = labels(found["y"], len(x), f"{path}: y")
    if ("x_val" in found) != ("y_val" in found):
        raise RuntimeInputError(f"{path} has only one of x_val and y_val", hint="give both, or neither")
    if "x_val" in found:
        if val_fraction is not None:  # it would be ignored: the file's own validation set is used
            raise CnnCalcError(f"{path} has its own x_val and y_val, so --val-fraction {val_fraction} "
                               "would not be used", hint="leave out --val-fraction, or save the file without x_val")
        x_val = to_nchw(found["x_val"], input_shape, layout, f"{path}: x_val")
        y_val = labels(found["y_val"], len(x_val), f"{path}: y_val")
        return Dataset(path.name, x, y, x_val, y_val, 0)
    return split(x, y, VAL_FRACTION if val_fraction is None else val_fraction, seed, path.name, 0)


def to_nchw(x: np.ndarray, input_shape: Shape, layout: str, where: str) -> np.ndarray:
    """Samples as float32 NCHW: NHWC (the spec's HxWxC order) unless `layout` says nchw or only NCHW fits."""
    if x.dtype.kind not in "fiu":
        raise RuntimeInputError(f"{where} holds {x.dtype} values, not numbers")
    x = x.astype(np.float32)
    if not np.all(np.isfinite(x)):
        raise RuntimeInputError(f"{where} contains NaN or infinite values")
    if len(input_shape) == 1:
        if x.ndim < 2 or numel(x.shape[1:]) != input_shape[0]:
            raise RuntimeInputError(f"{where} has shape {x.shape}; the network takes vectors of {input_shape[0]}")
        return x.reshape(len(x), input_shape[0])
    if layout not in LAYOUTS:
        raise CnnCalcError(f"unknown layout {layout!r}", hint=f"use {', '.join(LAYOUTS)}")
    c, h, w = input_shape
    given = x.shape
    if x.ndim == 3 and c == 1:
        x = x[..., None] if layout != "nchw" else x[:, None]  # N x H x W grey images: the layout cannot matter
        layout = "auto"
    nhwc, nchw = (h, w, c), (c, h, w)
    if x.ndim == 4 and layout != "nchw" and tuple(x.shape[1:]) == nhwc:
        return np.ascontiguousarray(x.transpose(0, 3, 1, 2))
    if x.ndim == 4 and layout != "nhwc" and tuple(x.shape[1:]) == nchw:
        return np.ascontiguousarray(x)
    if x.ndim == 4 and tuple(x.shape[1:]) in (nhwc, nchw):  # it fits the other layout than --layout says
        other = "nhwc" if tuple(x.shape[1:]) == nhwc else "nchw"
        raise RuntimeInputError(f"{where} has shape {given}, which is {other.upper()}, not the --layout {layout} given",
                                hint=f"use --layout {other}, or auto")
    raise RuntimeInputError(
        f"{where} has shape {given}, but the network takes N x {h} x {w} x {c} (NHWC) "
        f"or N x {c} x {h} x {w} (NCHW)", hint="reshape the images, or use a spec with the data's input shape")


MAX_CLASS = 10**9  # a label above this is a wrong column or a wrapped integer, not a class number


def labels(y: np.ndarray, count: int, where: str) -> np.ndarray:
    """Integer class labels, one per sample."""
    raw = np.asarray(y)
    y = raw.reshape(-1)
    if len(y) != count:
        one_hot = raw.ndim == 2 and len(raw) == count
        raise RuntimeInputError(f"{where} has {len(y)} labels for {count} samples",
                                hint="one-hot rows? store the class numbers, y.argmax(axis=1)" if one_hot
                                else "give one class number per sample")
    # whole numbers stored as floats are labels too; they are range-checked before the cast, as 1e20 would wrap
    whole_floats = y.dtype.kind == "f" and bool(np.all(np.isfinite(y))) and bool(np.all(y == np.round(y)))
    if not (whole_floats or y.dtype.kind in "iu") or (len(y) and y.min() < 0):
        raise RuntimeInputError(f"{where} must hold class numbers 0, 1, 2, ... (got {y.dtype})",
                                hint="store labels as integers, not one-hot vectors or names")
    if len(y) and int(y.max()) > MAX_CLASS:  # checked before the cast: uint64 2**64-1 would wrap to -1, 1e20 too
        raise RuntimeInputError(f"{where} holds the label {int(y.max()):,}; class numbers run 0, 1, 2, ...",
                                hint="store class numbers below the network's output count")
    return y.astype(np.int64)


def batches(count: int, batch: int, rng: np.random.Generator | None) -> Iterator[np.ndarray]:
    """Index arrays of consecutive batches, shuffled when `rng` is given; the last one may be smaller."""
    order = rng.permutation(count) if rng is not None else np.arange(count)
    for start in range(0, count, batch):
        yield order[start:start + batch]


# ---- the loop ---------------------------------------------------------------------------------------
@dataclass
class TrainConfig:
    """Everything that shapes a training run; `lr=None` takes the optimizer's default."""

    epochs: int = 10
    batch: int = 32
    lr: float | None = None
    optimizer: str = "adam"
    momentum: float = 0.9
    weight_decay: float = 0.0
    schedule: str = "cosine"
    step_size: int = 0  # step schedule: epochs between decays (0: a third of the run)
    gamma: float = 0.1  # step schedule: factor per decay
    loss: str = "auto"
    seed: int = 0
    patience: int = 0  # early stopping: epochs without a better validation loss (0: off)
    bn_momentum: float | None = None  # running = m * running + (1 - m) * batch; None: each BN's own

    def check(self) -> TrainConfig:
        """Refuse values that cannot train, with the fix."""
        for key in ("epochs", "batch", "step_size", "patience", "seed"):
            value = getattr(self, key)
            # 1.5 epochs would fail deep inside with a TypeError from range(); NumPy integers are fine
            if isinstance(value, bool) or not isinstance(value, SupportsIndex):
                raise CnnCalcError(f"{key} must be a whole number, got {value!r}")
            setattr(self, key, operator.index(value))
        if self.epochs < 1 or self.batch < 1:
            raise CnnCalcError(f"epochs and batch must be at least 1 (got {self.epochs} and {self.batch})")
        if self.optimizer not in OPTIMIZERS:
            raise CnnCalcError(f"unknown optimizer {self.optimizer!r}", hint=f"use one of {', '.join(OPTIMIZERS)}")
        if self.schedule not in SCHEDULES:
            raise CnnCalcError(f"unknown schedule {self.schedule!r}", hint=f"use one of {', '.join(SCHEDULES)}")
        if self.loss not in LOSSES:
            raise CnnCalcError(f"unknown loss {self.loss!r}", hint=f"use one of {', '.join(LOSSES)}")
        lr = self.learning_rate
        if not (lr > 0 and math.isfinite(lr)):
            raise CnnCalcError(f"the learning rate must be a positive number, got {lr}", hint="e.g. --lr 0.01")
        if not (self.weight_decay >= 0 and 0 <= self.momentum < 1 and self.patience >= 0):  # nan fails too
            raise CnnCalcError("weight decay and patience must be >= 0, momentum in [0, 1)")
        if self.bn_momentum is not None and not 0 <= self.bn_momentum <= 1:
            raise CnnCalcError(f"bn_momentum must lie in [0, 1], got {self.bn_momentum}",
                               hint="running = m * running + (1 - m) * batch; None keeps each BN's own")
        if not 0 < self.gamma <= 1 or self.step_size < 0:
            raise CnnCalcError(f"the step schedule needs gamma in (0, 1] and step_size >= 0, got {self.gamma} and "
                               f"{self.step_size}")
        return self

    @property
    def learning_rate(self) -> float:
        """The base learning rate: the one given, or the optimizer's default."""
        return self.lr if self.lr is not None else default_lr(self.optimizer)


@dataclass
class StepInfo:
    """One finished step, for progress display."""

    epoch: int  # 1-based
    step: int  # 1-based within the epoch
    steps: int  # steps in this epoch
    loss: float  # running mean over the epoch so far
    accuracy: float  # running training accuracy over the epoch so far
    samples_per_s: float
    lr: float


@dataclass
class EpochRecord:
    """One epoch's figures; validation ones are measured with inference-mode BN and Dropout off."""

    epoch: int
    train_loss: float
    train_accuracy: float
    val_loss: float
    val_accuracy: float
    lr: float
    time_s: float
    samples_per_s: float  # training samples per second (forward, backward and update)


@dataclass
class TrainResult:
    """A finished (or interrupted) run: the history, the weights to save, and how it ended."""

    network: str
    data: str
    loss: str
    optimizer: str
    config: TrainConfig
    weights: Weights
    history: list[EpochRecord] = field(default_factory=list)
    initial_val_loss: float = float("nan")
    initial_val_accuracy: float = float("nan")
    best_epoch: int = 0  # the epoch whose weights are returned (early stopping keeps the best)
    stopped_early: bool = False
    interrupted: bool = False
    steps: int = 0
    samples: int = 0
    time_s: float = 0.0

    def __repr__(self) -> str:
        """One line for a notebook (the dataclass' own repr prints every weight array)."""
        final = self.final
        figures = (f", val_loss {final.val_loss:.4g}, val_accuracy {final.val_accuracy:.4g} at epoch {final.epoch}"
                   if final else "")
        ended = " (stopped early)" if self.stopped_early else " (interrupted)" if self.interrupted else ""
        return (f"<TrainResult {self.network!r}, {self.optimizer}: {len(self.history)} epochs, "
                f"{self.steps} steps{figures}{ended}>")

    @property
    def final(self) -> EpochRecord | None:
        """The record of the epoch whose weights are returned."""
        for record in self.history:
            if record.epoch == self.best_epoch:
                return record
        return self.history[-1] if self.history else None

    def to_dict(self) -> dict[str, Any]:
        """Plain data for --format json."""
        final = self.final
        return {
            "network": self.network, "data": self.data, "loss": self.loss, "optimizer": self.optimizer,
            "config": asdict(self.config) | {"lr": self.config.learning_rate},
            "initial": {"val_loss": self.initial_val_loss, "val_accuracy": self.initial_val_accuracy},
            "history": [asdict(record) for record in self.history],
            "final": asdict(final) if final else None, "best_epoch": self.best_epoch,
            "stopped_early": self.stopped_early, "interrupted": self.interrupted,
            "steps": self.steps, "samples": self.samples, "time_s": self.time_s,
            "samples_per_s": self.samples / self.time_s if self.time_s else 0.0,
        }


class StopFlag:
    """Set by Ctrl-C (or by a caller) to end training after the current step."""

    def __init__(self) -> None:
        self.requested = False

    def request(self) -> None:
        """Ask the loop to stop at the next step boundary."""
        self.requested = True


@contextlib.contextmanager
def stop_on_interrupt(flag: StopFlag) -> Iterator[StopFlag]:
    """The first Ctrl-C sets `flag` (the step in progress finishes); a second one interrupts at once."""
    if threading.current_thread() is not threading.main_thread():
        yield flag
        return

    def handler(signum: int, frame: Any) -> None:
        if flag.requested:
            raise KeyboardInterrupt
        flag.request()

    previous = signal.signal(signal.SIGINT, handler)
    try:
        yield flag
    finally:
        signal.signal(signal.SIGINT, previous)


def trainable_arrays(runtime: Any) -> list[tuple[str, int, np.ndarray]]:
    """(node, weight index, array) of every trainable weight, in node order; the arrays are the runtime's own."""
    found = []
    graph = runtime.graph
    for node in graph.nodes:
        specs = node.op.weights([graph.shapes[name] for name in node.inputs])
        for index, spec in enumerate(specs):
            if spec.trainable:
                found.append((node.name, index, runtime.weights[node.name][index]))
    return found


def evaluate(runtime: Any, x: np.ndarray, y: np.ndarray, loss_fn: LossFn, batch: int) -> tuple[float, float]:
    """Mean loss and accuracy over a data set in inference mode (running BN statistics, no Dropout)."""
    total_loss, correct = 0.0, 0
    for index in batches(len(x), max(batch, 256), None):
        out = flat_outputs(runtime.run(x[index]).output)
        loss, _ = loss_fn(out, y[index])
        total_loss += loss * len(index)
        correct += int((out.argmax(axis=1) == y[index]).sum())
    return total_loss / len(x), correct / len(x)


def flat_outputs(out: np.ndarray) -> np.ndarray:
    """N x K class scores from an (N, K) or (N, K, 1, 1) output."""
    return out.reshape(out.shape[0], -1)


def check_batch_statistics(graph: Graph, batch: int, samples: int) -> None:
    """Refuse a batch whose BN layers would see one value per channel (as PyTorch does): its variance is 0,
    x - mean is 0, and training turns the network to noise (a loss of 3.6 went to 661 in one epoch)."""
    sizes = {min(batch, samples)} | ({samples % batch} if samples % batch else set())
    for node in graph.nodes:
        if not node.op.batch_statistics:
            continue
        per_sample = numel(graph.shapes[node.inputs[0]][1:])  # values per channel in one sample: H * W
        if per_sample == 1 and 1 in sizes:
            last = " (the last batch of each epoch holds 1 sample)" if batch > 1 else ""
            if samples < 2:
                hint = "give more training samples (or a smaller --val-fraction): 1 is left to train on"
            elif last:
                hint = f"use a batch of 2 or more that does not leave 1 of the {samples} training samples over"
            else:
                hint = "use a batch of 2 or more"
            raise CnnCalcError(f"{node.name} (BN on {show_shape(graph.shapes[node.inputs[0]])}) would see one value "
                               f"per channel in a batch of 1{last}: its batch statistics are meaningless", hint=hint)


def train(graph: Graph, weights: Weights, data: Dataset, config: TrainConfig,
          on_step: Callable[[StepInfo], None] | None = None,
          on_epoch: Callable[[EpochRecord], None] | None = None,
          stop: StopFlag | None = None) -> TrainResult:
    """Train on `data`; Ctrl-C or `stop` ends it after the current step. The trained arrays are
    `result.weights`: the given float32 arrays themselves, updated in place, or copies of read-only ones."""
    from .runtime import Runtime

    config.check()
    check_not_empty(data)
    check_batch_statistics(graph, config.batch, len(data.x_train))
    # arrays are trained in place; read-only ones (weights read from an ONNX file) and other dtypes are copied
    weights = {name: [a if isinstance(a, np.ndarray) and a.dtype == np.float32 and a.flags.writeable
                      else np.array(a, dtype=np.float32) for a in arrays] for name, arrays in weights.items()}
    runtime = Runtime(graph, weights, np.float32)
    params = trainable_arrays(runtime)
    if not params:  # nothing would change: every epoch would report the same loss
        raise CnnCalcError(f"{graph.name} has no trainable weights", hint="add a conv or an FC layer to train")
    gradient_bytes = sum(array.nbytes for _, _, array in params) * (1 + slots_per_param(config.optimizer))
    runtime.check_memory(min(config.batch, len(data.x_train)), keep_tape=True, extra_bytes=gradient_bytes)
    optimizer = make_optimizer(config.optimizer, [array for _, _, array in params], config.momentum,
                               config.weight_decay)
    rng = np.random.default_rng(config.seed)
    probe = flat_outputs(runtime.run(data.x_train[: min(8, len(data.x_train))]).output)
    loss_name, loss_fn = pick_loss(config.loss, probe)
    result = TrainResult(graph.name, data.describe(), loss_name, config.optimizer, config, runtime.weights)
    result.initial_val_loss, result.initial_val_accuracy = evaluate(runtime, data.x_val, data.y_val, loss_fn,
                                                                    config.batch)
    steps_per_epoch = -(-len(data.x_train) // config.batch)
    step_size = config.step_size or -(-config.epochs // 3)  # thirds of the run: 5 epochs decay after 2 and 4
    best_loss, best_weights, waited = math.inf, None, 0
    stop = stop or StopFlag()
    started = time.perf_counter()
    # a diverging run overflows to inf: the loss check and the summary say so, NumPy's warnings would only add noise
    with stop_on_interrupt(stop), np.errstate(over="ignore", invalid="ignore"):
        for epoch in range(1, config.epochs + 1):
            epoch_start = time.perf_counter()
            seen, loss_sum, correct = 0, 0.0, 0
            lr = config.learning_rate
            for step, index in enumerate(batches(len(data.x_train), config.batch, rng), start=1):
                progress = (epoch - 1 + (step - 1) / steps_per_epoch) / config.epochs
                lr = learning_rate(config.schedule, config.learning_rate, progress, epoch - 1, step_size,
                                   config.gamma)
                loss, hits = train_step(runtime, optimizer, params, loss_fn, data.x_train[index],
                                        data.y_train[index], lr, rng, config.bn_momentum)
                seen += len(index)
                loss_sum += loss * len(index)
                correct += hits
                result.steps += 1
                result.samples += len(index)
                if on_step is not None:
                    elapsed = time.perf_counter() - epoch_start
                    on_step(StepInfo(epoch, step, steps_per_epoch, loss_sum / seen, correct / seen,
                                     seen / elapsed if elapsed else 0.0, lr))
                if stop.requested:
                    break
            train_time = time.perf_counter() - epoch_start
            val_loss, val_accuracy = evaluate(runtime, data.x_val, data.y_val, loss_fn, config.batch)
            record = EpochRecord(epoch, loss_sum / max(seen, 1), correct / max(seen, 1), val_loss, val_accuracy,
                                 lr, time.perf_counter() - epoch_start, seen / train_time if train_time else 0.0)
            result.history.append(record)
            if on_epoch is not None:
                on_epoch(record)
            if val_loss < best_loss:
                best_loss, waited = val_loss, 0
                result.best_epoch = epoch
                if config.patience:
                    best_weights = {name: [a.copy() for a in arrays] for name, arrays in runtime.weights.items()}
            else:
                waited += 1
            if stop.requested:
                result.interrupted = True
                break
            if config.patience and waited >= config.patience:
                result.stopped_early = True
                break
    runtime.clear_tape()
    if best_weights is not None and result.best_epoch != result.history[-1].epoch:
        for name, arrays in best_weights.items():  # early stopping returns the best epoch's weights
            for target, value in zip(runtime.weights[name], arrays, strict=True):
                target[...] = value
    elif result.history:
        result.best_epoch = result.history[-1].epoch
    result.time_s = time.perf_counter() - started
    return result


def train_step(runtime: Any, optimizer: Optimizer, params: list[tuple[str, int, np.ndarray]], loss_fn: LossFn,
               x: np.ndarray, y: np.ndarray, lr: float, rng: np.random.Generator,
               bn_momentum: float | None = None) -> tuple[float, int]:
    """Forward with the tape, loss, backward, BN running statistics, update; returns loss and correct count."""
    run = runtime.run(x, training=True, keep_tape=True, rng=rng)
    out = flat_outputs(run.output)
    loss, grad = loss_fn(out, y)
    if not math.isfinite(loss):
        raise CnnCalcError(f"the loss became {loss} (training diverged)",
                           hint="lower the learning rate (--lr), or use --optimizer adam")
    grads = runtime.backward(grad.reshape(run.output.shape).astype(np.float32, copy=False))
    update_running_stats(runtime, bn_momentum)
    runtime.clear_tape()
    optimizer.step(trainable_grads(grads, params), lr)
    return loss, int((out.argmax(axis=1) == y).sum())


def trainable_grads(grads: Any, params: list[tuple[str, int, np.ndarray]]) -> list[np.ndarray]:
    """The gradients of the trainable arrays, in `params` order, from a runtime's `Gradients`."""
    found = []
    for node, index, _ in params:
        grad = grads.weights[node][index]
        if grad is None:
            raise CnnCalcError(f"backward gave no gradient for the trainable weight {index} of {node}")
        found.append(grad)
    return found


def update_running_stats(runtime: Any, momentum: float | None) -> None:
    """Write the running statistics of every BN back (running = m * running + (1 - m) * batch).

    None keeps each BN's own momentum (the spec's `BN(m=...)`, or ONNX's default 0.9).
    """
    runtime.update_state(momentum)


# ---- text for the CLI (the library never prints) ------------------------------------------------------
def history_rows(result: TrainResult) -> tuple[list[str], list[list[str]]]:
    """The per-epoch table: header and rows as text cells."""
    header = ["epoch", "train loss", "train acc", "val loss", "val acc", "lr", "samples/s", "time s"]
    rows = [[str(r.epoch), f"{r.train_loss:.4f}", f"{100 * r.train_accuracy:.1f}%", f"{r.val_loss:.4f}",
             f"{100 * r.val_accuracy:.1f}%", f"{r.lr:.3g}", f"{r.samples_per_s:,.0f}", f"{r.time_s:.2f}"]
            for r in result.history]
    return header, rows


def summary_lines(result: TrainResult) -> list[str]:
    """What the run did and how it ended, in a few lines."""
    config = result.config
    lines = [f"{result.network} on {result.data}",
             f"loss {result.loss}; {result.optimizer}, lr {config.learning_rate:g} ({config.schedule}), "
             f"batch {config.batch}, seed {config.seed}"]
    final = result.final
    if final is None:
        lines.append("stopped before the first epoch finished")
        return lines
    rate = result.samples / result.time_s if result.time_s else 0.0
    lines.append(f"validation accuracy {100 * result.initial_val_accuracy:.1f}% -> {100 * final.val_accuracy:.1f}%, "
                 f"loss {result.initial_val_loss:.4g} -> {final.val_loss:.4g} "
                 f"after epoch {final.epoch} ({result.steps} steps, {result.time_s:.1f} s, {rate:,.0f} samples/s)")
    if math.isfinite(result.initial_val_loss) and final.val_loss > DIVERGED_RATIO * max(result.initial_val_loss, 1e-12):
        lines.append(f"warning: the validation loss rose {final.val_loss / max(result.initial_val_loss, 1e-12):.3g}x "
                     "over the run: training diverged; lower the learning rate (--lr)")
    if result.stopped_early:
        lines.append(f"stopped early: no better validation loss for {config.patience} epochs; "
                     f"kept the weights of epoch {result.best_epoch}")
    if result.interrupted:
        last = result.history[-1].epoch
        kept = (f"the weights of epoch {result.best_epoch}, the best validation loss, are kept (--patience)"
                if result.best_epoch != last else "the weights after the last step are kept")
        lines.append(f"interrupted during epoch {last}; {kept}")
    return lines
