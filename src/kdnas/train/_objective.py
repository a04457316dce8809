"""``TrainingObjective``: evaluate an architecture at a fidelity by really training it.

``Fidelity.part`` picks the fixed 1/part subset, ``Fidelity.method`` the loss, and
``Fidelity.epochs`` (or the config's) the length of training. The teacher of a subset is
trained once (or loaded from the ``TeacherStore``), and its summaries for every (epoch, batch)
are computed once per loss and reused by every student through the ``TeacherCache``.
"""

from __future__ import annotations

import copy
import logging
import math
import time
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from torch import nn

from kdnas.core import Architecture, EvalResult, Fidelity
from kdnas.data import DeviceImages, ImageSet, PreparedData, Subset, stream_seed
from kdnas.distill import build_loss
from kdnas.distill.base import TrainingLoss
from kdnas.distill.logit import CrossEntropyLoss
from kdnas.train._cache import CachedTeacher, TeacherCache, cache_key
from kdnas.train._config import TrainConfig, TrainResult
from kdnas.train._teacher import TeacherStore, TeacherTrainingError, teacher_key
from kdnas.train._trainer import (
    LiveTeacher,
    TeacherSource,
    accuracy,
    describe_device,
    pick_device,
    precision,
    train_network,
)

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
    ) -> None:
        self.space = space
        self.data = data
        self.config = config if config is not None else TrainConfig.for_data(data)
        self.teachers = TeacherStore(teacher_dir) if teacher_dir is not None else None
        self.seed = int(seed)
        self.subset_seed = self.seed if subset_seed is None else int(subset_seed)
        self._device_request = device
        self._device = (
            device if isinstance(device, torch.device) else pick_device(device) if device else None
        )
        self.cache = cache if cache is not None else TeacherCache()
        self.use_cache = use_cache
        self.hyperparameters = {k: dict(v) for k, v in (hyperparameters or {}).items()}
        self._train_images: dict[int, DeviceImages] = {}
        self._eval_images: dict[str, DeviceImages] = {}
        self._teachers: dict[str, nn.Module] = {}

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
        state["_teachers"] = {
            key: copy.deepcopy(network).cpu() for key, network in self._teachers.items()
        }
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

    def teacher_key(self, part: int) -> str:
        return teacher_key(
            dataset=self.data.name,
            subset=self.subset(part).content_hash,
            protocol=self.config.protocol_key(),
            seed=self.seed,
            space=self.space.name,
            arch=self.space.original().key(),
        )

    def teacher(self, part: int) -> nn.Module:
        """The teacher of the 1/part subset: loaded if saved and intact, else trained."""
        key = self.teacher_key(part)
        if key in self._teachers:
            return self._teachers[key].to(self.device)
        original = self.space.original()
        with _seeded(self.device, stream_seed(self.seed, 0, "init")):
            network = self.build(original)
        if self.teachers is None:
            self._train_teacher(key, part, network)
        else:
            # Another process sharing the folder may be training this teacher: wait for it and
            # load its result rather than train a second copy.
            with self.teachers.lock(key):
                if self.teachers.load(key, network) is None:
                    self._train_teacher(key, part, network)
        network.to(self.device).eval()
        for parameter in network.parameters():
            parameter.requires_grad_(False)
        self._teachers[key] = network
        return network

    def _train_teacher(self, key: str, part: int, network: nn.Module) -> None:
        original = self.space.original()
        logger.info("training the teacher for 1/%d of %s (key %s)", part, self.data.name, key)
        result = self._train(original, network, CrossEntropyLoss(), part, None, None)
        if result.status != "ok":
            raise TeacherTrainingError(
                f"the teacher's training {result.status}"
                + (f": {result.error}" if result.error else " (is the learning rate too high?)")
            )
        if self.teachers is not None:
            self.teachers.save(
                key,
                network,
                {
                    "dataset": self.data.name,
                    "subset_hash": result.subset_hash,
                    "part": part,
                    "protocol": self.config.to_dict(),
                    "seed": self.seed,
                    "space": self.space.name,
                    "arch": original.to_json(),
                    "valid_acc": result.valid_acc,
                    "test_acc": result.test_acc,
                    "train_time_s": result.train_time_s,
                },
            )

    def _teacher_source(
        self, fidelity: Fidelity, loss: TrainingLoss, teacher: nn.Module
    ) -> TeacherSource:
        live = LiveTeacher(teacher, loss, self.config)
        if not self.use_cache:
            return live
        key = cache_key(
            teacher=self.teacher_key(fidelity.part),
            summary=loss.name,
            batch_size=self.config.batch_size,
            padding=self.config.crop_padding,
            flip=self.config.horizontal_flip,
            precision=precision(self.device, self.config),
            channels_last=self.config.channels_last,
            device=self.device.type,
        )
        return CachedTeacher(self.cache, key, live)

    def warm_up(self, part: int, methods: tuple[str, ...] = ("kd",)) -> float:
        """Train (or load) the 1/part teacher and fill the cache for ``methods``; seconds spent.

        Optional: the first student does both otherwise. Calling it once before a search fans
        out to parallel workers (sharing ``teacher_dir`` and a cache directory) keeps them from
        training the same teacher at once, and keeps the one-off cost out of every student's
        measured cost.
        """
        start = time.perf_counter()
        teacher = self.teacher(part)
        for method in methods:
            if method == "nokd":
                continue
            fidelity = Fidelity(part=part, method=method)
            with _seeded(self.device, stream_seed(self.seed, 0, "init")):
                loss = self._loss(fidelity, self.build(self.space.original()), teacher)
            source = self._teacher_source(fidelity, loss, teacher)
            if isinstance(source, CachedTeacher):
                source.prefill(self.train_images(part), self.config, self.seed, self.config.epochs)
        return time.perf_counter() - start

    # -- evaluation ------------------------------------------------------------------------
    def evaluate(self, arch: Architecture, fidelity: Fidelity) -> EvalResult:
        """Train ``arch`` at ``fidelity`` and return the search-facing result (never raises
        for a bad architecture or a diverged run: the status says so)."""
        return self.train(arch, fidelity).to_eval_result(arch, fidelity)

    def train(self, arch: Architecture, fidelity: Fidelity) -> TrainResult:
        """Train ``arch`` at ``fidelity``; the detailed ``TrainResult``."""
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
            with _seeded(self.device, stream_seed(self.seed, 0, "init")):
                network = self.build(arch)
                loss = self._loss(fidelity, network, teacher)
            if teacher is not None:
                source = self._teacher_source(fidelity, loss, teacher)
            result = self._train(arch, network, loss, fidelity.part, fidelity.epochs, source)
        except (ValueError, RuntimeError, TypeError) as error:
            logger.warning(
                "evaluation of %s at %s failed: %s", arch.key(), fidelity.label(), error
            )
            return TrainResult(
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
        return _replace(result, wall_time_s=wall, teacher_time_s=teacher_s)

    def _loss(
        self, fidelity: Fidelity, network: nn.Module, teacher: nn.Module | None
    ) -> TrainingLoss:
        images = self.train_images(fidelity.part)
        probe = images.batch(torch.arange(min(_PROBE_SIZE, len(images)), device=self.device))
        with torch.no_grad():
            network.eval()
            student_probe = network.forward_taps(probe)
            teacher_probe = teacher.forward_taps(probe) if teacher is not None else None
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
    ) -> TrainResult:
        images = self.train_images(part)
        with _seeded(self.device, stream_seed(self.seed, 0, "dropout")):
            outcome = train_network(
                network, loss, images, self.config, self.seed, epochs=epochs, teacher=source
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


def _replace(result: TrainResult, **changes: Any) -> TrainResult:
    from dataclasses import replace

    return replace(result, **changes)


class _seeded:
    """Run a block with torch's global generators seeded, restoring them afterwards."""

    def __init__(self, device: torch.device, seed: int) -> None:
        devices: list[int] = []
        if device.type == "cuda":
            devices = [device.index if device.index is not None else torch.cuda.current_device()]
        self._fork = torch.random.fork_rng(devices=devices)
        self._seed = seed

    def __enter__(self) -> None:
        self._fork.__enter__()
        torch.manual_seed(self._seed)

    def __exit__(self, *exc: object) -> None:
        self._fork.__exit__(*exc)
