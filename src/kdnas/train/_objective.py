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

import copy
import dataclasses
import logging
import math
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from torch import nn

from kdnas.core import Architecture, EvalResult, Fidelity
from kdnas.data import DeviceImages, ImageSet, PreparedData, Subset, stream_seed
from kdnas.distill import build_loss
from kdnas.distill.base import TrainingLoss
from kdnas.train._cache import CachedTeacher, TeacherCache, cache_key
from kdnas.train._config import TrainConfig, TrainResult
from kdnas.train._teacher import (
    TEACHER_DATA,
    ChanceLevel,
    TeacherAtChanceError,
    TeacherStore,
    TeacherTrainingError,
    chance_teacher_message,
    teacher_key,
)
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
        teacher_data: "full" (default, the paper's): the teacher learns from the whole
            training pool (never the validation split) at ``teacher_epochs``, one teacher for
            every part; "subset": from each student's own 1/part subset at the config's
            epochs (the behaviour of earlier kdnas versions).
        teacher_epochs: the teacher's epochs (None: the config's); pass the high fidelity's
            epochs so that the teacher's training is the original's high-fidelity evaluation.
        allow_chance_teacher: distill even from a teacher no better than chance (default:
            refuse with ``TeacherAtChanceError``; its students would learn noise).
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
        self.teacher_data = teacher_data
        self.teacher_epochs = teacher_epochs
        self.allow_chance_teacher = allow_chance_teacher
        self._teachers: dict[str, _Teacher] = {}

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
            key: dataclasses.replace(
                entry,
                network=None if entry.network is None else copy.deepcopy(entry.network).cpu(),
            )
            for key, entry in self._teachers.items()
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

    # -- the teacher -----------------------------------------------------------------------
    def teacher_fidelity(self, part: int) -> Fidelity:
        """The fidelity the teacher of 1/``part`` students is trained at (cross-entropy): the
        whole training pool for ``teacher_data="full"``, else the students' own subset."""
        teacher_part = 1 if self.teacher_data == "full" else part
        return Fidelity(part=teacher_part, method="nokd", epochs=self.teacher_epochs)

    def chance(self) -> ChanceLevel:
        """The chance level of the validation split (what a constant guess scores)."""
        return ChanceLevel.of_labels(self.data.valid.labels)

    def teacher_key(self, part: int) -> str:
        fidelity = self.teacher_fidelity(part)
        # Epochs join the key only when they differ from the protocol's, so that teachers
        # saved before the teacher had its own epochs keep their keys.
        extra = (
            {"epochs": fidelity.epochs}
            if fidelity.epochs not in (None, self.config.epochs)
            else {}
        )
        return teacher_key(
            dataset=self.data.name,
            subset=self.subset(fidelity.part).content_hash,
            protocol=self.config.protocol_key(),
            seed=self.seed,
            space=self.space.name,
            arch=self.space.original().key(),
            **extra,
        )

    def teacher(self, part: int) -> nn.Module:
        """The teacher of 1/part students: loaded if saved and intact, else trained.

        Raises:
            TeacherTrainingError: the teacher's training diverged or failed.
            TeacherAtChanceError: the teacher is no better than chance on the validation
                split and ``allow_chance_teacher`` is off.
        """
        entry = self._teacher_entry(part)
        if entry.network is None:
            raise TeacherTrainingError(
                f"the teacher's training {entry.result.status}"
                + (
                    f": {entry.result.error}"
                    if entry.result.error
                    else " (is the learning rate too high?)"
                )
            )
        chance = self.chance()
        if not self.allow_chance_teacher and not chance.beaten_by(entry.result.valid_acc):
            raise TeacherAtChanceError(
                chance_teacher_message(
                    self.teacher_summary(part),
                    "refusing to distill from it (allow_chance_teacher=True, or "
                    "--allow-chance-teacher, distills anyway)",
                )
            )
        return entry.network

    def teacher_result(self, part: int) -> TrainResult:
        """The teacher's own training result (trained or loaded now if needed; never raises
        for a teacher at chance, so that its accuracy can be reported)."""
        return self._teacher_entry(part).result

    def teacher_summary(self, part: int) -> dict[str, Any]:
        """What a report says about the teacher of 1/part students: where and how long it
        learned, its accuracies (fractions) and seconds, and how they compare with chance."""
        entry = self._teacher_entry(part)
        fidelity = self.teacher_fidelity(part)
        chance = self.chance()
        epochs = fidelity.epochs if fidelity.epochs is not None else self.config.epochs
        return {
            "key": self.teacher_key(part),
            "data": self.teacher_data,
            "part": fidelity.part,
            "images": len(self.subset(fidelity.part)),
            "epochs": epochs,
            "steps": self.optimisation_steps(fidelity.part, epochs),
            "status": entry.result.status,
            "valid_acc": entry.result.valid_acc,
            "test_acc": entry.result.test_acc,
            "train_time_s": entry.result.wall_time_s,
            "loaded": entry.loaded,
            "chance_acc": chance.accuracy,
            "chance_threshold": chance.threshold,
            "above_chance": chance.beaten_by(entry.result.valid_acc),
        }

    def optimisation_steps(self, part: int, epochs: int | None) -> int:
        """SGD steps of a run of ``epochs`` (None: the config's) on the 1/part subset."""
        images = len(self.subset(part))
        batches = images // self.config.batch_size
        if images % self.config.batch_size > 1:  # a last batch of one image is dropped
            batches += 1
        return batches * (epochs if epochs is not None else self.config.epochs)

    def _teacher_entry(self, part: int) -> _Teacher:
        key = self.teacher_key(part)
        if key in self._teachers:
            entry = self._teachers[key]
            if entry.network is not None:  # a copy made for another process holds CPU ones
                entry.network.to(self.device)
            return entry
        if self.teachers is None:
            entry = self._train_teacher(key, part)
        else:
            # Another process sharing the folder may be training this teacher: wait for it and
            # load its result rather than train a second copy.
            with self.teachers.lock(key):
                entry = self._load_teacher(key, part) or self._train_teacher(key, part)
        if entry.network is not None:
            entry.network.to(self.device).eval()
            for parameter in entry.network.parameters():
                parameter.requires_grad_(False)
        self._teachers[key] = entry
        return entry

    def _load_teacher(self, key: str, part: int) -> _Teacher | None:
        assert self.teachers is not None
        with _seeded(self.device, stream_seed(self.seed, 0, "init")):
            network = self.build(self.space.original())
        record = self.teachers.load(key, network)
        if record is None:
            return None
        try:
            result = TrainResult.from_dict(record["result"])
        except (KeyError, TypeError, ValueError):
            # Saved by an earlier kdnas without its full result: rebuild what reports need.
            result = self._result_from_old_record(record, network, part)
            return _Teacher(network, result, loaded=True, complete=False)
        return _Teacher(network, result, loaded=True)

    def _result_from_old_record(
        self, record: dict[str, Any], network: nn.Module, part: int
    ) -> TrainResult:
        from kdnas.models import count_parameters

        return TrainResult(
            status="ok",
            valid_acc=float(record.get("valid_acc", math.nan)),
            test_acc=float(record.get("test_acc", math.nan)),
            wall_time_s=float(record.get("train_time_s", 0.0)),
            train_time_s=float(record.get("train_time_s", 0.0)),
            teacher_time_s=0.0,
            params=count_parameters(network),
            multiply_adds=0,
            epochs=self.config.epochs,
            final_loss=math.nan,
            seed=self.seed,
            subset_hash=self.subset(self.teacher_fidelity(part).part).content_hash,
            device=describe_device(self.device),
        )

    def _train_teacher(self, key: str, part: int) -> _Teacher:
        original = self.space.original()
        fidelity = self.teacher_fidelity(part)
        logger.info(
            "training the teacher on 1/%d of %s (%s, key %s)",
            fidelity.part,
            self.data.name,
            fidelity.label(),
            key,
        )
        network, result = self._fit(original, fidelity)
        if result.status != "ok":
            return _Teacher(None, result, loaded=False)
        if self.teachers is not None:
            self.teachers.save(
                key,
                network,
                {
                    "dataset": self.data.name,
                    "subset_hash": result.subset_hash,
                    "part": fidelity.part,
                    "teacher_data": self.teacher_data,
                    "protocol": self.config.to_dict(),
                    "seed": self.seed,
                    "space": self.space.name,
                    "arch": original.to_json(),
                    "valid_acc": result.valid_acc,
                    "test_acc": result.test_acc,
                    "train_time_s": result.wall_time_s,
                    "result": result.to_dict(),
                },
            )
        return _Teacher(network, result, loaded=False)

    def _serves_as_teacher(self, arch: Architecture, fidelity: Fidelity) -> bool:
        """Whether evaluating ``arch`` at ``fidelity`` is exactly the teacher's training."""
        return arch == self.space.original() and fidelity == self.teacher_fidelity(fidelity.part)

    def _teacher_evaluation(self, fidelity: Fidelity) -> TrainResult:
        """The original network at the teacher's fidelity: the teacher's own result.

        Trained now if no teacher exists yet (and then kept as the teacher); otherwise read
        back, so this evaluation costs only the seconds of the look-up: the training's
        seconds are the teacher's, reported once per search.
        """
        start = time.perf_counter()
        key = self.teacher_key(fidelity.part)
        existed = key in self._teachers
        entry = self._teacher_entry(fidelity.part)
        if not entry.complete:  # an earlier kdnas saved too little to answer with it
            return self._fit(self.space.original(), fidelity)[1]
        if entry.loaded or existed:
            return _replace(
                entry.result, wall_time_s=time.perf_counter() - start, reused_from=f"teacher {key}"
            )
        return entry.result

    def _teacher_source(
        self, fidelity: Fidelity, loss: TrainingLoss, teacher: nn.Module
    ) -> TeacherSource:
        live = LiveTeacher(teacher, loss, self.config)
        if not self.use_cache:
            return live
        key = cache_key(
            teacher=self.teacher_key(fidelity.part),
            # One teacher serves every part, and each part's subset makes other batches.
            students=self.subset(fidelity.part).content_hash,
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
        """Train ``arch`` at ``fidelity``; the detailed ``TrainResult``.

        The original network at the teacher's fidelity is the teacher: its result is the
        teacher's (trained once, ``reused_from`` naming it when read back)."""
        if self._serves_as_teacher(arch, fidelity):
            return self._teacher_evaluation(fidelity)
        return self._fit(arch, fidelity)[1]

    def _fit(self, arch: Architecture, fidelity: Fidelity) -> tuple[nn.Module | None, TrainResult]:
        """Train ``arch`` at ``fidelity``: the trained network (None unless ok) and result."""
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
        return trained, _replace(result, wall_time_s=wall, teacher_time_s=teacher_s)

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


@dataclass(frozen=True)
class _Teacher:
    """A teacher in memory: its network (None when its training failed), its result, whether
    it was loaded from the store, and whether that result is a complete evaluation (teachers
    saved by earlier kdnas versions recorded only their accuracies)."""

    network: nn.Module | None
    result: TrainResult
    loaded: bool
    complete: bool = True


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
