"""The teacher's life: trained once (or loaded), checked against chance, summarised, served.

The teacher of a ``TrainingObjective`` is its space's original network. ``Teacher`` owns
everything about it apart from training a network (which it asks of its objective): the
fidelity it learns at (the whole training pool with the high-fidelity protocol, as in the
paper, or a student's own subset), its key, loading it from the ``TeacherStore`` or training
and saving it, refusing it when it is no better than chance, the summary a report gives, its
per-batch summaries for the students through the ``TeacherCache``, and answering the original
network's own evaluation at the teacher's fidelity with the teacher's training.
"""

from __future__ import annotations

import copy
import dataclasses
import logging
import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from torch import nn

from kdnas.core import Architecture, Fidelity
from kdnas.data import stream_seed
from kdnas.distill.base import TrainingLoss
from kdnas.train._cache import CachedTeacher, TeacherCache, cache_key
from kdnas.train._config import TrainResult
from kdnas.train._epoch_checkpoint import EpochCheckpoint
from kdnas.train._teacher import (
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
    precision,
    seeded_generators,
)
from kdnas.train._user_teacher import file_sha256, load_exported_teacher

if TYPE_CHECKING:
    from kdnas.train._objective import TrainingObjective

__all__ = ["Teacher", "TeacherEntry"]

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class TeacherEntry:
    """A teacher in memory: its network (None when its training failed), its result, whether
    it was loaded from the store, and whether that result is a complete evaluation (teachers
    saved by earlier kdnas versions recorded only their accuracies)."""

    network: nn.Module | None
    result: TrainResult
    loaded: bool
    complete: bool = True


class Teacher:
    """The teacher of ``objective``'s students (module docstring).

    Args:
        objective: the objective it serves (its space, data, protocol, seed and device, and
            the training it asks for).
        store: where trained teachers are saved and loaded (None: memory only).
        teacher_data: "full" (the whole training pool) or "subset" (a student's own).
        epochs: the teacher's epochs (None: the protocol's).
        allow_chance: serve a teacher no better than chance instead of refusing it.
        cache: the shared per-batch summaries; ``use_cache`` False runs the teacher live.
        teacher_file: a ``torch.export`` program (``.pt2``) the user trained, taught from
            instead of the original network, which is then not trained (``_user_teacher``).
    """

    def __init__(
        self,
        objective: TrainingObjective,
        store: TeacherStore | None,
        teacher_data: str,
        epochs: int | None,
        allow_chance: bool,
        cache: TeacherCache,
        use_cache: bool,
        teacher_file: str | Path | None = None,
    ) -> None:
        self._objective = objective
        self.teacher_file = None if teacher_file is None else Path(teacher_file).resolve()
        self._file_hash = None if teacher_file is None else file_sha256(self.teacher_file)
        self.store = store
        self.teacher_data = teacher_data
        self.teacher_epochs = epochs
        self.allow_chance_teacher = allow_chance
        self.cache = cache
        self.use_cache = use_cache
        self._entries: dict[str, TeacherEntry] = {}

    def __getstate__(self) -> dict[str, Any]:
        """A copy for another process: the teachers go as CPU copies."""
        state = self.__dict__.copy()
        state["_entries"] = {
            key: dataclasses.replace(
                entry,
                network=None if entry.network is None else copy.deepcopy(entry.network).cpu(),
            )
            for key, entry in self._entries.items()
        }
        return state

    def known_keys(self) -> set[str]:
        """Keys of the teachers held in memory."""
        return set(self._entries)

    def fidelity(self, part: int) -> Fidelity:
        """The fidelity the teacher of 1/``part`` students is trained at (cross-entropy): the
        whole training pool for ``teacher_data="full"``, else the students' own subset."""
        teacher_part = 1 if self.teacher_data == "full" else part
        return Fidelity(part=teacher_part, method="nokd", epochs=self.teacher_epochs)

    def chance(self) -> ChanceLevel:
        """The chance level of the validation split (what a constant guess scores)."""
        return ChanceLevel.of_labels(self._objective.data.valid.labels)

    def key(self, part: int) -> str:
        if self._file_hash is not None:
            return f"teacher-file-{self._file_hash[:20]}"
        fidelity = self.fidelity(part)
        # Epochs join the key only when they differ from the protocol's, so that teachers
        # saved before the teacher had its own epochs keep their keys.
        extra = (
            {"epochs": fidelity.epochs}
            if fidelity.epochs not in (None, self._objective.config.epochs)
            else {}
        )
        return teacher_key(
            dataset=self._objective.data.name,
            subset=self._objective.subset(fidelity.part).content_hash,
            protocol=self._objective.config.protocol_key(),
            seed=self._objective.seed,
            space=self._objective.space.name,
            arch=self._objective.space.original().key(),
            **extra,
        )

    def network(self, part: int) -> nn.Module:
        """The teacher of 1/part students: loaded if saved and intact, else trained.

        Raises:
            TeacherTrainingError: the teacher's training diverged or failed.
            TeacherAtChanceError: the teacher is no better than chance on the validation
                split and ``allow_chance_teacher`` is off.
        """
        entry = self.entry(part)
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
                    self.summary(part),
                    "refusing to distill from it (allow_chance_teacher=True, or "
                    "--allow-chance-teacher, distills anyway)",
                )
            )
        return entry.network

    def result(self, part: int) -> TrainResult:
        """The teacher's own training result (trained or loaded now if needed; never raises
        for a teacher at chance, so that its accuracy can be reported)."""
        return self.entry(part).result

    def summary(
        self, part: int, on_epoch: Callable[[int, int], None] | None = None
    ) -> dict[str, Any]:
        """What a report says about the teacher of 1/part students: where and how long it
        learned, its accuracies (fractions) and seconds, and how they compare with chance
        (``on_epoch`` as ``entry``'s)."""
        entry = self.entry(part, on_epoch)
        fidelity = self.fidelity(part)
        chance = self.chance()
        if self.teacher_file is not None:
            return {
                "key": self.key(part),
                "data": "file",
                "file": str(self.teacher_file),
                "sha256": self._file_hash,
                "part": None,
                "images": None,
                "epochs": None,
                "steps": None,
                "status": entry.result.status,
                "valid_acc": entry.result.valid_acc,
                "test_acc": entry.result.test_acc,
                "train_time_s": 0.0,  # trained elsewhere: no seconds of this search
                "load_time_s": entry.result.wall_time_s,
                "params": entry.result.params,
                "loaded": True,
                "chance_acc": chance.accuracy,
                "chance_threshold": chance.threshold,
                "above_chance": chance.beaten_by(entry.result.valid_acc),
            }
        epochs = fidelity.epochs if fidelity.epochs is not None else self._objective.config.epochs
        return {
            "key": self.key(part),
            "data": self.teacher_data,
            "part": fidelity.part,
            "images": len(self._objective.subset(fidelity.part)),
            "epochs": epochs,
            "steps": self._objective.optimisation_steps(fidelity.part, epochs),
            "status": entry.result.status,
            "valid_acc": entry.result.valid_acc,
            "test_acc": entry.result.test_acc,
            "train_time_s": entry.result.wall_time_s,
            "loaded": entry.loaded,
            "chance_acc": chance.accuracy,
            "chance_threshold": chance.threshold,
            "valid_images": chance.n,
            "above_chance": chance.beaten_by(entry.result.valid_acc),
        }

    def entry(self, part: int, on_epoch: Callable[[int, int], None] | None = None) -> TeacherEntry:
        """The teacher of 1/part students: held, loaded, or trained now.

        Args:
            part: the students' part.
            on_epoch: called as ``on_epoch(done, epochs)`` only if the teacher trains now:
                when it starts (``done``: the epochs its epoch checkpoint restored, else 0)
                and after each epoch. Never for a teacher held, loaded or from a file.
        """
        key = self.key(part)
        if key in self._entries:
            entry = self._entries[key]
            if entry.network is not None:  # a copy made for another process holds CPU ones
                entry.network.to(self._objective.device)
            return entry
        if self.teacher_file is not None:
            entry = self._from_file()
        elif self.store is None:
            entry = self._train(key, part, on_epoch)
        else:
            # Another process sharing the folder may be training this teacher: wait for it and
            # load its result rather than train a second copy.
            with self.store.lock(key):
                entry = self._load(key, part) or self._train(key, part, on_epoch)
        if entry.network is not None:
            entry.network.to(self._objective.device).eval()
            for parameter in entry.network.parameters():
                parameter.requires_grad_(False)
        self._entries[key] = entry
        return entry

    def _from_file(self) -> TeacherEntry:
        """The user's exported teacher, loaded and checked against this data, its validation
        and test accuracy measured here (the students' splits and normalisation)."""
        from kdnas.models import count_parameters

        assert self.teacher_file is not None
        objective = self._objective
        start = time.perf_counter()
        network = load_exported_teacher(
            self.teacher_file,
            objective.data.in_channels,
            objective.data.resolution,
            objective.data.num_classes,
        ).to(objective.device)
        result = TrainResult(
            status="ok",
            valid_acc=accuracy(network, objective.eval_images("valid"), objective.config),
            test_acc=accuracy(network, objective.eval_images("test"), objective.config),
            wall_time_s=time.perf_counter() - start,
            train_time_s=0.0,
            teacher_time_s=0.0,
            params=count_parameters(network, trainable_only=False),
            multiply_adds=0,
            epochs=0,
            final_loss=math.nan,
            seed=objective.seed,
            subset_hash="",
            device=describe_device(objective.device),
        )
        logger.info(
            "teacher %s: valid %.4f, test %.4f",
            self.teacher_file,
            result.valid_acc,
            result.test_acc,
        )
        return TeacherEntry(network, result, loaded=True)

    def _load(self, key: str, part: int) -> TeacherEntry | None:
        assert self.store is not None
        with seeded_generators(
            self._objective.device, stream_seed(self._objective.seed, 0, "init")
        ):
            network = self._objective.build(self._objective.space.original())
        record = self.store.load(key, network)
        if record is None:
            return None
        try:
            result = TrainResult.from_dict(record["result"])
        except (KeyError, TypeError, ValueError):
            # Saved by an earlier kdnas without its full result: rebuild what reports need.
            result = self._result_from_old_record(record, network, part)
            return TeacherEntry(network, result, loaded=True, complete=False)
        return TeacherEntry(network, result, loaded=True)

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
            epochs=self._objective.config.epochs,
            final_loss=math.nan,
            seed=self._objective.seed,
            subset_hash=self._objective.subset(self.fidelity(part).part).content_hash,
            device=describe_device(self._objective.device),
        )

    def _train(
        self, key: str, part: int, on_epoch: Callable[[int, int], None] | None = None
    ) -> TeacherEntry:
        original = self._objective.space.original()
        fidelity = self.fidelity(part)
        logger.info(
            "training the teacher on 1/%d of %s (%s, key %s)",
            fidelity.part,
            self._objective.data.name,
            fidelity.label(),
            key,
        )
        # Saved after every epoch, so that an interrupted teacher resumes from its last one.
        checkpoint = (
            EpochCheckpoint(self.store.directory / f"{key}.ckpt", key)
            if self.store is not None
            else None
        )
        network, result = self._objective._fit(original, fidelity, checkpoint, on_epoch)
        if result.status != "ok":
            if checkpoint is not None and result.status == "diverged":
                checkpoint.clear()
            return TeacherEntry(None, result, loaded=False)
        if self.store is not None:
            self.store.save(
                key,
                network,
                {
                    "dataset": self._objective.data.name,
                    "subset_hash": result.subset_hash,
                    "part": fidelity.part,
                    "teacher_data": self.teacher_data,
                    "protocol": self._objective.config.to_dict(),
                    "seed": self._objective.seed,
                    "space": self._objective.space.name,
                    "arch": original.to_json(),
                    "valid_acc": result.valid_acc,
                    "test_acc": result.test_acc,
                    "train_time_s": result.wall_time_s,
                    "result": result.to_dict(),
                },
            )
        if checkpoint is not None:
            checkpoint.clear()  # the teacher is saved whole: nothing left to resume
        return TeacherEntry(network, result, loaded=False)

    def serves(self, arch: Architecture, fidelity: Fidelity) -> bool:
        """Whether evaluating ``arch`` at ``fidelity`` is exactly the teacher's training (never
        for a teacher from a file: the original network is then trained like any other)."""
        if self.teacher_file is not None:
            return False
        return arch == self._objective.space.original() and fidelity == self.fidelity(
            fidelity.part
        )

    def evaluation(self, fidelity: Fidelity) -> TrainResult:
        """The original network at the teacher's fidelity: the teacher's own result.

        Trained now if no teacher exists yet (and then kept as the teacher); otherwise read
        back, so this evaluation costs only the seconds of the look-up: the training's
        seconds are the teacher's, reported once per search.
        """
        start = time.perf_counter()
        key = self.key(fidelity.part)
        existed = key in self._entries
        entry = self.entry(fidelity.part)
        if not entry.complete:  # an earlier kdnas saved too little to answer with it
            return self._objective._fit(self._objective.space.original(), fidelity)[1]
        if entry.loaded or existed:
            return dataclasses.replace(
                entry.result, wall_time_s=time.perf_counter() - start, reused_from=f"teacher {key}"
            )
        return entry.result

    def source(self, fidelity: Fidelity, loss: TrainingLoss, teacher: nn.Module) -> TeacherSource:
        live = LiveTeacher(teacher, loss, self._objective.config)
        if not self.use_cache:
            return live
        key = cache_key(
            teacher=self.key(fidelity.part),
            # One teacher serves every part, and each part's subset makes other batches.
            students=self._objective.subset(fidelity.part).content_hash,
            summary=loss.name,
            batch_size=self._objective.config.batch_size,
            padding=self._objective.config.crop_padding,
            flip=self._objective.config.horizontal_flip,
            precision=precision(self._objective.device, self._objective.config),
            channels_last=self._objective.config.channels_last,
            device=self._objective.device.type,
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
        teacher = self.network(part)
        for method in methods:
            if method == "nokd":
                continue
            fidelity = Fidelity(part=part, method=method)
            with seeded_generators(
                self._objective.device, stream_seed(self._objective.seed, 0, "init")
            ):
                loss = self._objective._loss(
                    fidelity, self._objective.build(self._objective.space.original()), teacher
                )
            source = self.source(fidelity, loss, teacher)
            if isinstance(source, CachedTeacher):
                source.prefill(
                    self._objective.train_images(part),
                    self._objective.config,
                    self._objective.seed,
                    self._objective.config.epochs,
                )
        return time.perf_counter() - start
