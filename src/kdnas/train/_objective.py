"""``TrainingObjective``: evaluate an architecture at a fidelity by really training it.

``Fidelity.part`` picks the fixed 1/part subset, ``Fidelity.method`` the loss, and
``Fidelity.epochs`` (or the config's) the length of training. The teacher (the space's
original network) is trained once (or loaded from the ``TeacherStore``): by default on the whole
training pool with the high-fidelity protocol, as in the paper, so it serves every part. Its
summaries for every (epoch, batch) are computed once per loss and subset and reused by every
student through the ``TeacherCache``. Since the teacher's training is an evaluation of the
original network at the teacher's fidelity, ``evaluate`` answers that evaluation with it
rather than training the same network twice.
"""

from __future__ import annotations

import dataclasses
import logging
import math
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from torch import nn

from kdnas.core import Architecture, EvalResult, Fidelity
from kdnas.data import DeviceImages, ImageSet, PreparedData, Subset, stream_seed
from kdnas.distill import build_loss
from kdnas.distill.base import TrainingLoss
from kdnas.models.taps import network_taps
from kdnas.train._cache import CachedTeacher, TeacherCache
from kdnas.train._config import TrainConfig, TrainResult
from kdnas.train._epoch_checkpoint import EpochCheckpoint
from kdnas.train._teacher import TEACHER_DATA, ChanceLevel, TeacherStore
from kdnas.train._teacher_life import Teacher
from kdnas.train._trainer import (
    TeacherSource,
    accuracy,
    describe_device,
    pick_device,
    seeded_generators,
    train_network,
)
from kdnas.train._weights import WeightsFolder, weights_key

if TYPE_CHECKING:
    from kdnas.spaces import SearchSpace

__all__ = ["TrainingObjective"]

logger = logging.getLogger(__name__)

#: Images of the probe batch that shapes a loss's trainable parts.
_PROBE_SIZE = 4


class TrainingObjective:
    """Trains architectures of ``space`` on ``data``; implements ``kdnas.core.Objective``.

    Args:
        space: the search space (builds networks; its ``original()`` is the teacher).
        data: the prepared dataset (splits, normalisation, resolution).
        config: the training protocol (default: the paper's, adapted to ``data``).
        teacher_dir: folder of saved teachers; None keeps teachers in memory only.
        seed: seeds initialisation, batch order and augmentation of every evaluation (the
            same for every student: common random numbers) and the teacher's training.
        subset_seed: seed of the 1/k subsets (default: ``seed``).
        device: "cpu", "cuda", "cuda:1", ...; None picks CUDA when available, decided in the
            process that trains: a pickled copy (a Ray task's) decides again where it runs.
        cache: the shared teacher cache; None creates one in memory (1 GiB budget).
            Pass ``use_cache=False`` to run the teacher on every batch instead.
        hyperparameters: per-method overrides of the loss defaults, e.g.
            ``{"kd": {"tau": 4, "lambda": 0.9}}``.
        use_cache: reuse teacher summaries across students (default True).
        teacher_data: "full" (default, the paper's): the teacher learns from the whole
            training pool (never the validation split) at ``teacher_epochs``, one teacher for
            every part; "subset": from each student's own 1/part subset at the config's
            epochs (the behaviour of earlier kdnas versions).
        teacher_epochs: the teacher's epochs (None: the config's); pass the high fidelity's
            epochs so that the teacher's training is the original's high-fidelity evaluation.
        allow_chance_teacher: distill even from a teacher no better than chance (default:
            refuse with ``TeacherAtChanceError``; its students would learn noise).
        teacher_file: a ``torch.export`` program (``.pt2``) the user trained: the teacher,
            instead of training the original network (its logits only: Hinton's KD).
        weights: where full-data (part 1, cross-entropy) evaluations keep their trained
            weights, under its keep policy (``kdnas.train.WeightsFolder``); None keeps none.
    """

    def __init__(
        self,
        space: SearchSpace,
        data: PreparedData,
        config: TrainConfig | None = None,
        teacher_dir: str | Path | None = None,
        seed: int = 0,
        *,
        subset_seed: int | None = None,
        device: str | torch.device | None = None,
        cache: TeacherCache | None = None,
        hyperparameters: Mapping[str, Mapping[str, float]] | None = None,
        use_cache: bool = True,
        teacher_data: str = "full",
        teacher_epochs: int | None = None,
        allow_chance_teacher: bool = False,
        teacher_file: str | Path | None = None,
        weights: WeightsFolder | None = None,
    ) -> None:
        if teacher_data not in TEACHER_DATA:
            raise ValueError(
                f"unknown teacher_data {teacher_data!r}; valid: {', '.join(TEACHER_DATA)}"
            )
        if teacher_epochs is not None and (
            isinstance(teacher_epochs, bool)
            or not isinstance(teacher_epochs, int)
            or teacher_epochs < 1
        ):
            raise ValueError(f"teacher_epochs must be a positive integer, got {teacher_epochs!r}")
        self.space = space
        self.data = data
        self.config = config if config is not None else TrainConfig.for_data(data)
        self.seed = int(seed)
        self.subset_seed = self.seed if subset_seed is None else int(subset_seed)
        self._device_request = device
        self._device = (
            device if isinstance(device, torch.device) else pick_device(device) if device else None
        )
        self.cache = cache if cache is not None else TeacherCache()
        self.hyperparameters = {k: dict(v) for k, v in (hyperparameters or {}).items()}
        self._train_images: dict[int, DeviceImages] = {}
        self._eval_images: dict[str, DeviceImages] = {}
        self.teacher_data = teacher_data
        self.teacher_epochs = teacher_epochs
        self.allow_chance_teacher = allow_chance_teacher
        self.weights = weights
        #: The teacher's whole life (train or load, check, summarise, serve).
        self.teacher_life = Teacher(
            self,
            TeacherStore(teacher_dir) if teacher_dir is not None else None,
            teacher_data,
            teacher_epochs,
            allow_chance_teacher,
            self.cache,
            use_cache,
            teacher_file,
        )

    @property
    def device(self) -> torch.device:
        """Where training runs (auto-detected at first use in this process when not given)."""
        if self._device is None:
            self._device = pick_device(None)
        return self._device

    def __getstate__(self) -> dict[str, Any]:
        """A copy for another process: device-bound state stays here, teachers go as CPU
        copies, and an auto-detected device is detected again where the copy runs."""
        state = self.__dict__.copy()
        if not self._device_request:
            state["_device"] = None
        state["_train_images"] = {}
        state["_eval_images"] = {}
        return state

    # -- data ------------------------------------------------------------------------------
    def subset(self, part: int) -> Subset:
        return self.data.subset(part, self.subset_seed)

    def train_images(self, part: int) -> DeviceImages:
        """The 1/part subset on the device, padded for crops (built once per part)."""
        if part not in self._train_images:
            subset = self.subset(part)
            images = ImageSet(
                self.data.train.images[subset.indices], self.data.train.labels[subset.indices]
            )
            self._train_images[part] = DeviceImages(
                images,
                self.data.mean,
                self.data.std,
                self.config.crop_padding,
                self.device,
                channels_last=self.config.channels_last,
            )
        return self._train_images[part]

    def eval_images(self, split: str) -> DeviceImages:
        """The "valid" or "test" split on the device."""
        if split not in self._eval_images:
            images = self.data.valid if split == "valid" else self.data.test
            self._eval_images[split] = DeviceImages(
                images,
                self.data.mean,
                self.data.std,
                0,
                self.device,
                channels_last=self.config.channels_last,
            )
        return self._eval_images[split]

    # -- networks --------------------------------------------------------------------------
    def build(self, arch: Architecture) -> nn.Module:
        """The network of ``arch`` on the device, in the configured memory layout."""
        network = self.space.build_network(
            arch,
            num_classes=self.data.num_classes,
            in_channels=self.data.in_channels,
            width_multiplier=self.config.width_multiplier,
        )
        memory = torch.channels_last if self.config.channels_last else torch.contiguous_format
        return network.to(self.device, memory_format=memory)

    # -- the teacher (``Teacher``) -----------------------------------------------------------
    @property
    def teachers(self) -> TeacherStore | None:
        """Where trained teachers are saved (None: memory only)."""
        return self.teacher_life.store

    def teacher_fidelity(self, part: int) -> Fidelity:
        """The fidelity the teacher of 1/``part`` students is trained at (cross-entropy): the
        whole training pool for ``teacher_data="full"``, else the students' own subset."""
        return self.teacher_life.fidelity(part)

    def chance(self) -> ChanceLevel:
        """The chance level of the validation split (what a constant guess scores)."""
        return self.teacher_life.chance()

    def teacher_key(self, part: int) -> str:
        return self.teacher_life.key(part)

    def teacher(self, part: int) -> nn.Module:
        """The teacher of 1/part students: loaded if saved and intact, else trained.

        Raises:
            TeacherTrainingError: the teacher's training diverged or failed.
            TeacherAtChanceError: the teacher is no better than chance on the validation
                split and ``allow_chance_teacher`` is off.
        """
        return self.teacher_life.network(part)

    def teacher_result(self, part: int) -> TrainResult:
        """The teacher's own training result (never raises for a teacher at chance)."""
        return self.teacher_life.result(part)

    def teacher_summary(
        self, part: int, on_epoch: Callable[[int, int], None] | None = None
    ) -> dict[str, Any]:
        """What a report says about the teacher of 1/part students (``Teacher.summary``);
        ``on_epoch(done, epochs)`` follows its training, if it trains now (``Teacher.entry``)."""
        return self.teacher_life.summary(part, on_epoch)

    def warm_up(self, part: int, methods: tuple[str, ...] = ("kd",)) -> float:
        """Train (or load) the 1/part teacher and fill the cache for ``methods``; seconds
        spent (``Teacher.warm_up``)."""
        return self.teacher_life.warm_up(part, methods)

    def optimisation_steps(self, part: int, epochs: int | None) -> int:
        """SGD steps of a run of ``epochs`` (None: the config's) on the 1/part subset."""
        images = len(self.subset(part))
        batches = images // self.config.batch_size
        if images % self.config.batch_size > 1:  # a last batch of one image is dropped
            batches += 1
        return batches * (epochs if epochs is not None else self.config.epochs)

    # -- evaluation ------------------------------------------------------------------------
    def evaluate(self, arch: Architecture, fidelity: Fidelity) -> EvalResult:
        """Train ``arch`` at ``fidelity`` and return the search-facing result (never raises
        for a bad architecture or a diverged run: the status says so)."""
        return self.train(arch, fidelity).to_eval_result(arch, fidelity)

    def train(self, arch: Architecture, fidelity: Fidelity) -> TrainResult:
        """Train ``arch`` at ``fidelity``; the detailed ``TrainResult``.

        The original network at the teacher's fidelity is the teacher: its result is the
        teacher's (trained once, ``reused_from`` naming it when read back)."""
        if self.teacher_life.serves(arch, fidelity):
            result = self.teacher_life.evaluation(fidelity)
            network = (
                self.teacher_life.entry(fidelity.part).network if result.status == "ok" else None
            )
        else:
            checkpoint = self.checkpoint(arch, fidelity)
            network, result = self._fit(arch, fidelity, checkpoint)
            if checkpoint is not None and result.status != "failed":
                checkpoint.clear()  # finished (or diverged): nothing left to resume
        if network is not None and self.weights is not None and self.keeps(fidelity):
            self.weights.save(
                self.weights_key(arch, fidelity),
                network,
                self.weights_record(arch, fidelity, result),
            )
        return result

    def checkpoint(self, arch: Architecture, fidelity: Fidelity) -> EpochCheckpoint | None:
        """Where a full-data evaluation saves its state after every epoch, to resume an
        interrupted one: beside its kept weights (None when weights are not kept)."""
        if self.weights is None or not self.keeps(fidelity):
            return None
        key = self.weights_key(arch, fidelity)
        return EpochCheckpoint(self.weights.directory / f"{key}.ckpt", key)

    @staticmethod
    def keeps(fidelity: Fidelity) -> bool:
        """Whether evaluations at ``fidelity`` keep their weights: the full-data ones (part
        1, plain cross-entropy), the networks a search hands over."""
        return fidelity.part == 1 and fidelity.method == "nokd"

    def weights_key(self, arch: Architecture, fidelity: Fidelity) -> str:
        """The key ``arch``'s weights at ``fidelity`` are kept under (``weights_key``)."""
        return weights_key(
            arch.key(),
            fidelity.epochs or self.config.epochs,
            self.seed,
            self.config.protocol_dict(),
            self.subset(fidelity.part).content_hash,
        )

    def weights_record(
        self, arch: Architecture, fidelity: Fidelity, result: TrainResult
    ) -> dict[str, Any]:
        """What kept weights are recorded with: enough to rebuild, preprocess and name
        classes without the store or the data, and the evaluation they come from."""
        from kdnas import __version__

        data = self.data
        return {
            "space": self.space.name,
            "arch": arch.to_json(),
            "arch_key": arch.key(),
            "fidelity": {
                "part": fidelity.part,
                "method": fidelity.method,
                "epochs": fidelity.epochs,
            },
            "epochs": fidelity.epochs or self.config.epochs,
            "seed": self.seed,
            "dataset": data.name,
            "subset_hash": self.subset(fidelity.part).content_hash,
            "num_classes": data.num_classes,
            "class_names": list(data.dataset.class_names),
            "preprocessing": {
                "resolution": data.resolution,
                "channels": data.in_channels,
                "mean": list(data.mean),
                "std": list(data.std),
                "valid_fraction": data.valid_fraction,
                "split_seed": data.split_seed,
            },
            "train_config": self.config.to_dict(),
            "valid_acc": result.valid_acc,
            "test_acc": result.test_acc,
            "params": result.params,
            "multiply_adds": result.multiply_adds,
            "kdnas_version": __version__,
            "torch_version": torch.__version__,
        }

    def _fit(
        self,
        arch: Architecture,
        fidelity: Fidelity,
        checkpoint: EpochCheckpoint | None = None,
        on_epoch: Callable[[int, int], None] | None = None,
    ) -> tuple[nn.Module | None, TrainResult]:
        """Train ``arch`` at ``fidelity``: the trained network (None unless ok) and result;
        with ``checkpoint``, saved after every epoch and resumed from it; ``on_epoch`` as
        ``train_network``'s."""
        start = time.perf_counter()
        teacher_s = 0.0
        subset_hash = ""
        try:
            subset_hash = self.subset(fidelity.part).content_hash
            source: TeacherSource | None = None
            teacher: nn.Module | None = None
            if fidelity.method != "nokd":
                teacher_start = time.perf_counter()
                teacher = self.teacher(fidelity.part)
                teacher_s = time.perf_counter() - teacher_start
            with seeded_generators(self.device, stream_seed(self.seed, 0, "init")):
                network = self.build(arch)
                loss = self._loss(fidelity, network, teacher)
            if teacher is not None:
                source = self.teacher_life.source(fidelity, loss, teacher)
            result = self._train(
                arch, network, loss, fidelity.part, fidelity.epochs, source, checkpoint, on_epoch
            )
        except (ValueError, RuntimeError, TypeError) as error:
            logger.warning(
                "evaluation of %s at %s failed: %s", arch.key(), fidelity.label(), error
            )
            return None, TrainResult(
                status="failed",
                valid_acc=math.nan,
                test_acc=math.nan,
                wall_time_s=time.perf_counter() - start,
                train_time_s=0.0,
                teacher_time_s=teacher_s,
                params=0,
                multiply_adds=0,
                epochs=0,
                final_loss=math.nan,
                seed=self.seed,
                subset_hash=subset_hash,
                device=describe_device(self.device),
                method=fidelity.method,
                error=f"{type(error).__name__}: {error}",
            )
        wall = time.perf_counter() - start
        trained = network if result.status == "ok" else None
        return trained, dataclasses.replace(result, wall_time_s=wall, teacher_time_s=teacher_s)

    def _loss(
        self, fidelity: Fidelity, network: nn.Module, teacher: nn.Module | None
    ) -> TrainingLoss:
        images = self.train_images(fidelity.part)
        probe = images.batch(torch.arange(min(_PROBE_SIZE, len(images)), device=self.device))
        with torch.no_grad():
            network.eval()
            student_probe = network_taps(network, probe)
            teacher_probe = network_taps(teacher, probe) if teacher is not None else None
            network.train()
        subset = self.subset(fidelity.part)
        loss = build_loss(
            fidelity.method,
            student_probe=student_probe,
            teacher_probe=teacher_probe,
            num_classes=self.data.num_classes,
            n_train=len(subset),
            space=self.space.name,
            hyperparameters=self.hyperparameters.get(fidelity.method),
            labels=self.data.train.labels[subset.indices],
        )
        return loss.to(self.device)

    def _train(
        self,
        arch: Architecture,
        network: nn.Module,
        loss: TrainingLoss,
        part: int,
        epochs: int | None,
        source: TeacherSource | None,
        checkpoint: EpochCheckpoint | None = None,
        on_epoch: Callable[[int, int], None] | None = None,
    ) -> TrainResult:
        images = self.train_images(part)
        with seeded_generators(self.device, stream_seed(self.seed, 0, "dropout")):
            outcome = train_network(
                network,
                loss,
                images,
                self.config,
                self.seed,
                epochs=epochs,
                teacher=source,
                checkpoint=checkpoint,
                on_epoch=on_epoch,
            )
        ok = outcome.status == "ok"
        valid = accuracy(network, self.eval_images("valid"), self.config) if ok else math.nan
        test = accuracy(network, self.eval_images("test"), self.config) if ok else math.nan
        from kdnas.models import count_multiply_adds, count_parameters

        settings: dict[str, float] = dict(getattr(loss, "hyperparameters", {}) or {})
        settings.update(
            {f"weight.{k}": v for k, v in (getattr(loss, "weights", {}) or {}).items()}
        )
        return TrainResult(
            status=outcome.status,
            valid_acc=valid,
            test_acc=test,
            wall_time_s=outcome.train_time_s,
            train_time_s=outcome.train_time_s,
            teacher_time_s=0.0,
            params=count_parameters(network),
            multiply_adds=count_multiply_adds(
                network, (self.data.in_channels, self.data.resolution, self.data.resolution)
            ),
            epochs=outcome.epochs,
            final_loss=outcome.final_loss,
            seed=self.seed,
            subset_hash=self.subset(part).content_hash,
            device=describe_device(self.device),
            method=loss.name,
            terms=outcome.terms,
            loss_settings=settings,
            teacher_cache_hits=source.epochs_served if isinstance(source, CachedTeacher) else 0,
            teacher_cache_misses=(
                source.epochs_computed if isinstance(source, CachedTeacher) else 0
            ),
        )
