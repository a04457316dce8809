"""Training networks for real: the paper's protocol, teachers, and the shared teacher cache.

Typical use::

    from kdnas import Fidelity
    from kdnas.data import load_dataset, prepare
    from kdnas.spaces import get_space
    from kdnas.train import TrainConfig, TrainingObjective

    data = prepare(load_dataset("digits"))
    objective = TrainingObjective(get_space("mobilenetv2"), data,
                                  TrainConfig.for_data(data, epochs=10, width_multiplier=0.25),
                                  teacher_dir="teachers", seed=0)
    result = objective.evaluate(arch, Fidelity(part=3, method="kd"))
"""

from __future__ import annotations

from kdnas.train._cache import CachedTeacher, TeacherCache, cache_key
from kdnas.train._config import LEGACY_FIELD_VALUES, SCHEDULES, TrainConfig, TrainResult
from kdnas.train._distributed import (
    BatchSource,
    DistributedContext,
    FullRun,
    FullTrainingOutcome,
    ResidentBatches,
    train_full,
)
from kdnas.train._epoch_checkpoint import EpochCheckpoint
from kdnas.train._high_fidelity import DistributedHighFidelity
from kdnas.train._objective import TrainingObjective
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
    TrainOutcome,
    accuracy,
    autocast,
    check_device_available,
    describe_device,
    kernel_mode,
    pick_device,
    precision,
    recompute_batchnorm_statistics,
    train_network,
)
from kdnas.train._user_teacher import ExportedTeacher, file_sha256, load_exported_teacher
from kdnas.train._weights import (
    DEFAULT_KEEP,
    KeepPolicy,
    WeightsError,
    WeightsFolder,
    weights_dir_for,
    weights_key,
)

__all__ = [
    "DEFAULT_KEEP",
    "LEGACY_FIELD_VALUES",
    "SCHEDULES",
    "TEACHER_DATA",
    "BatchSource",
    "CachedTeacher",
    "ChanceLevel",
    "DistributedContext",
    "DistributedHighFidelity",
    "EpochCheckpoint",
    "ExportedTeacher",
    "FullRun",
    "FullTrainingOutcome",
    "KeepPolicy",
    "LiveTeacher",
    "ResidentBatches",
    "TeacherAtChanceError",
    "TeacherCache",
    "TeacherSource",
    "TeacherStore",
    "TeacherTrainingError",
    "TrainConfig",
    "TrainOutcome",
    "TrainResult",
    "TrainingObjective",
    "WeightsError",
    "WeightsFolder",
    "accuracy",
    "autocast",
    "cache_key",
    "chance_teacher_message",
    "check_device_available",
    "describe_device",
    "file_sha256",
    "kernel_mode",
    "load_exported_teacher",
    "pick_device",
    "precision",
    "recompute_batchnorm_statistics",
    "teacher_key",
    "train_full",
    "train_network",
    "weights_dir_for",
    "weights_key",
]
