"""The training protocol (``TrainConfig``) and the outcome of one run (``TrainResult``)."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from kdnas.core import STATUSES, Architecture, EvalResult, Fidelity

if TYPE_CHECKING:
    from kdnas.data import PreparedData

__all__ = ["LEGACY_FIELD_VALUES", "SCHEDULES", "TrainConfig", "TrainResult"]

SCHEDULES: tuple[str, ...] = ("cosine", "constant")

#: Fields that change how results are computed but not what is learned.
_NON_PROTOCOL_FIELDS = frozenset({"eval_batch_size", "deterministic"})
#: Fields added after results were first stored, with the value that reproduces the training
#: of before. At that value a field is left out of the protocol's identity, so stored teachers,
#: runs and checkpoints keep their keys; at any other value it joins it, so results trained
#: with and without it are never mixed.
LEGACY_FIELD_VALUES: dict[str, Any] = {"distillation_warmup": 0.0, "precise_bn": False}


def _refuse_unknown_fields(cls: type, values: Mapping[str, Any]) -> None:
    known = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(values) - known)
    if unknown:
        raise ValueError(f"unknown {cls.__name__} fields: {', '.join(unknown)}")


@dataclass(frozen=True)
class TrainConfig:
    """How a network is trained. The defaults are the paper's CIFAR-100 protocol.

    Args:
        epochs: training epochs (the paper: 100). ``Fidelity.epochs`` overrides it per
            evaluation; the teacher always uses this value.
        batch_size: samples per step (128).
        lr: initial learning rate of SGD (0.1).
        momentum: SGD momentum (0.9).
        weight_decay: L2 weight decay on every parameter (5e-4).
        schedule: "cosine" (annealed per epoch to 0 over ``epochs``) or "constant".
        crop_padding: pixels of black padding for random crops (4); 0 disables cropping.
        horizontal_flip: mirror half of each batch at random (True).
        width_multiplier: scales every network's channel counts (1.0 = the paper's networks;
            smaller values make CPU demos and tests fast).
        amp: mixed precision (bfloat16 autocast) on CUDA GPUs of compute capability 8.0 or
            more; float32 on older GPUs and on the CPU (see ``kdnas.train.precision``).
        channels_last: channels-last memory layout for networks and batches (faster with
            cuDNN and with oneDNN on the CPU).
        eval_batch_size: batch size of validation/test passes (does not change results).
        deterministic: deterministic GPU kernels, so a rerun on the same GPU gives the same
            bits (slower; see ``kdnas.train.kernel_mode``); False turns cuDNN autotuning on.
            Not part of the protocol: it changes bits, not what is learned.
        distillation_warmup: the fraction of a run's steps over which the distillation
            term's weight ramps linearly from 0 to its value (0: none, the paper's protocol).
            Cross-entropy training is unaffected.
        precise_bn: after the last epoch, replace the BatchNorm running statistics by their
            average over one more pass of training batches with the final weights
            (``recompute_batchnorm_statistics``). False is the paper's protocol; True is what
            short runs need to be scored fairly (docs/distillation.md, "Short runs").
    """

    epochs: int = 100
    batch_size: int = 128
    lr: float = 0.1
    momentum: float = 0.9
    weight_decay: float = 5e-4
    schedule: str = "cosine"
    crop_padding: int = 4
    horizontal_flip: bool = True
    width_multiplier: float = 1.0
    amp: bool = True
    channels_last: bool = True
    eval_batch_size: int = 1024
    deterministic: bool = False
    distillation_warmup: float = 0.0
    precise_bn: bool = False

    def __post_init__(self) -> None:
        for name in ("epochs", "batch_size", "eval_batch_size"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"TrainConfig.{name} must be a positive integer, got {value!r}")
        if self.batch_size < 2:
            raise ValueError(
                f"TrainConfig.batch_size must be >= 2 (BatchNorm), got {self.batch_size}"
            )
        for name in ("lr", "width_multiplier"):
            value = getattr(self, name)
            if not (isinstance(value, (int, float)) and math.isfinite(value) and value > 0):
                raise ValueError(f"TrainConfig.{name} must be a finite number > 0, got {value!r}")
        if not 0.0 <= self.momentum < 1.0:
            raise ValueError(f"TrainConfig.momentum must lie in [0, 1), got {self.momentum!r}")
        if not (math.isfinite(self.weight_decay) and self.weight_decay >= 0):
            raise ValueError(f"TrainConfig.weight_decay must be >= 0, got {self.weight_decay!r}")
        if self.schedule not in SCHEDULES:
            raise ValueError(
                f"TrainConfig.schedule must be one of {', '.join(SCHEDULES)}, "
                f"got {self.schedule!r}"
            )
        if not (
            isinstance(self.distillation_warmup, (int, float))
            and 0.0 <= self.distillation_warmup <= 1.0
        ):
            raise ValueError(
                "TrainConfig.distillation_warmup must lie in [0, 1] (a fraction of the run), "
                f"got {self.distillation_warmup!r}"
            )
        if not isinstance(self.crop_padding, int) or self.crop_padding < 0:
            raise ValueError(
                f"TrainConfig.crop_padding must be an integer >= 0, got {self.crop_padding!r}"
            )

    @classmethod
    def for_data(cls, data: PreparedData, **overrides: Any) -> TrainConfig:
        """The paper's protocol adapted to ``data``, then ``overrides`` applied.

        Crop padding scales with the image side (4 pixels at 32, so 1 pixel at 8x8) and flips
        are off for datasets whose classes are not mirror-symmetric (digits).
        """
        defaults: dict[str, Any] = {
            "crop_padding": max(1, round(4 * data.resolution / 32)),
            "horizontal_flip": data.dataset.flip_invariant,
        }
        defaults.update(overrides)
        return cls(**defaults)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, values: Mapping[str, Any]) -> TrainConfig:
        """Inverse of ``to_dict``; unknown keys are an error naming them."""
        _refuse_unknown_fields(cls, values)
        return cls(**dict(values))

    def protocol_dict(self) -> dict[str, Any]:
        """The fields that change what training learns and what it scores: ``to_dict`` less
        ``eval_batch_size`` and ``deterministic``, and less the fields that hold their legacy
        value (``LEGACY_FIELD_VALUES``)."""
        return {
            k: v
            for k, v in self.to_dict().items()
            if k not in _NON_PROTOCOL_FIELDS
            and not (k in LEGACY_FIELD_VALUES and v == LEGACY_FIELD_VALUES[k])
        }

    def protocol_key(self) -> str:
        """16 hex digits identifying everything that changes what training learns
        (``protocol_dict``)."""
        values = self.protocol_dict()
        text = json.dumps(values, sort_keys=True)
        return hashlib.sha256(text.encode()).hexdigest()[:16]

    def learning_rate(self, epoch: int) -> float:
        """The learning rate of (0-based) ``epoch``: cosine annealing from ``lr`` towards 0."""
        if self.schedule == "constant":
            return self.lr
        return 0.5 * self.lr * (1.0 + math.cos(math.pi * epoch / self.epochs))


@dataclass(frozen=True)
class TrainResult:
    """The outcome of training one network once.

    Args:
        status: "ok", "diverged" (a NaN or infinite loss ended training) or "failed".
        valid_acc: accuracy on the validation split, a fraction (NaN unless ok).
        test_acc: accuracy on the official test set, a fraction (NaN unless ok).
        wall_time_s: seconds of the whole evaluation (teacher preparation included).
        train_time_s: seconds of the training epochs alone.
        teacher_time_s: seconds spent training or loading the teacher and filling the cache.
        params: trainable parameters of the network.
        multiply_adds: multiply-accumulates of one forward pass on one image.
        epochs: epochs completed.
        final_loss: mean total loss over the last completed epoch (NaN/inf when diverged).
        seed: the seed of training (batch order, augmentation, initialisation).
        subset_hash: ``Subset.content_hash`` of the training data.
        device: where it ran ("cpu", "cuda:0 NVIDIA H100 ...").
        method: the loss's key.
        terms: mean of each named loss term over the last completed epoch.
        loss_settings: the loss's recorded hyperparameters and term weights.
        error: for "failed", the error message.
        teacher_cache_hits: epochs whose teacher summaries came from the teacher cache.
        teacher_cache_misses: epochs whose teacher summaries were computed by the teacher.
        reused_from: where a result that was read back rather than trained comes from (the
            teacher's key when the original network's evaluation is the teacher's training).
    """

    status: str
    valid_acc: float
    test_acc: float
    wall_time_s: float
    train_time_s: float
    teacher_time_s: float
    params: int
    multiply_adds: int
    epochs: int
    final_loss: float
    seed: int
    subset_hash: str
    device: str
    method: str = "nokd"
    terms: Mapping[str, float] = field(default_factory=dict)
    loss_settings: Mapping[str, float] = field(default_factory=dict)
    error: str = ""
    teacher_cache_hits: int = 0
    teacher_cache_misses: int = 0
    reused_from: str = ""

    def __post_init__(self) -> None:
        if self.status not in STATUSES:
            raise ValueError(f"unknown status {self.status!r}; valid: {', '.join(STATUSES)}")
        if self.status == "ok":
            for name in ("valid_acc", "test_acc"):
                value = getattr(self, name)
                if not 0.0 <= value <= 1.0:
                    raise ValueError(f"{name} must lie in [0, 1] for an ok result, got {value!r}")
        for name in ("wall_time_s", "train_time_s", "teacher_time_s"):
            if not getattr(self, name) >= 0:
                raise ValueError(f"{name} must be >= 0 seconds, got {getattr(self, name)!r}")
        object.__setattr__(self, "terms", dict(self.terms))
        object.__setattr__(self, "loss_settings", dict(self.loss_settings))

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-ready values (NaN and infinities become None)."""

        def clean(value: Any) -> Any:
            if isinstance(value, float) and not math.isfinite(value):
                return None
            if isinstance(value, dict):
                return {k: clean(v) for k, v in value.items()}
            return value

        return {k: clean(v) for k, v in dataclasses.asdict(self).items()}

    @classmethod
    def from_dict(cls, values: Mapping[str, Any]) -> TrainResult:
        """Inverse of ``to_dict`` (None becomes NaN); unknown keys are an error naming them."""
        _refuse_unknown_fields(cls, values)
        restored = dict(values)
        for name in ("valid_acc", "test_acc", "final_loss"):
            if restored.get(name) is None:
                restored[name] = math.nan
        for name in ("terms", "loss_settings"):
            restored[name] = {
                k: math.nan if v is None else v for k, v in (restored.get(name) or {}).items()
            }
        return cls(**restored)

    def to_eval_result(self, arch: Architecture, fidelity: Fidelity) -> EvalResult:
        """The search-facing ``EvalResult`` (its ``cost_s`` is ``wall_time_s``)."""
        metrics: dict[str, float] = {
            "params": float(self.params),
            "multiply_adds": float(self.multiply_adds),
            "epochs": float(self.epochs),
            "final_loss": float(self.final_loss),
            "train_time_s": self.train_time_s,
            "teacher_time_s": self.teacher_time_s,
        }
        metrics.update({f"term.{k}": v for k, v in self.terms.items()})
        metrics.update({f"loss.{k}": v for k, v in self.loss_settings.items()})
        if self.teacher_cache_hits or self.teacher_cache_misses:
            metrics["teacher_cache_hits"] = float(self.teacher_cache_hits)
            metrics["teacher_cache_misses"] = float(self.teacher_cache_misses)
        info = {"subset_hash": self.subset_hash, "device": self.device, "method": self.method}
        if self.error:
            info["error"] = self.error
        if self.reused_from:
            info["reused_from"] = self.reused_from
        return EvalResult(
            arch_key=arch.key(),
            fidelity=fidelity,
            valid_acc=self.valid_acc,
            test_acc=self.test_acc,
            cost_s=self.wall_time_s,
            status=self.status,
            seed=self.seed,
            metrics=metrics,
            info=info,
        )
