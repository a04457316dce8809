"""The GPU paths checked on the CPU: devices, the cache's policy and memory, precision, kernels.

No GPU is needed: a second device is the ``meta`` device, a GPU driver is torch.cuda
queries monkeypatched, and memory held is observed through weak references.
"""

from __future__ import annotations

import gc
import pickle
import weakref
from pathlib import Path

import pytest
import torch

from kdnas.core import Architecture, Fidelity
from kdnas.data import DeviceImages, ImageSet, epoch_plan, load_digits, prepare
from kdnas.train import (
    CachedTeacher,
    TeacherCache,
    TrainConfig,
    TrainingObjective,
)

META = torch.device("meta")
CPU = torch.device("cpu")


@pytest.fixture(scope="module")
def digits():
    return prepare(load_digits(), resolution=8)


def _config(**changes) -> TrainConfig:
    values = {"epochs": 2, "batch_size": 32, "crop_padding": 1, "horizontal_flip": False}
    values.update(changes)
    return TrainConfig(**values)


class CountingTeacher:
    """A stand-in ``LiveTeacher``: a fresh 4 x 25 float32 summary (400 bytes) per batch on
    ``device``, counting its calls and keeping weak references to what it handed out."""

    def __init__(self, device: torch.device = CPU) -> None:
        self.device = device
        self.calls = 0
        self.handed_out: list[weakref.ref] = []

    def summary(self, epoch: int, batch: int, images: torch.Tensor) -> dict[str, torch.Tensor]:
        self.calls += 1
        logits = torch.full((4, 25), float(100 * epoch + batch), device=self.device)
        self.handed_out.append(weakref.ref(logits))
        return {"logits": logits}


def _student(source: CachedTeacher, epochs: int, batches: int) -> None:
    """What ``train_network`` does with a teacher source: epochs in order, batches in order."""
    for epoch in range(epochs):
        for batch in range(batches):
            source.summary(epoch, batch, torch.empty(0))
        source.end_epoch(epoch)


# -- item 1: entries on the requested device ---------------------------------------------------
def test_an_in_memory_entry_is_handed_out_on_the_requested_device() -> None:
    cache = TeacherCache()
    cache.put("k", 0, [{"logits": torch.ones(2, 3)}])
    served = cache.get("k", 0, META)
    assert served is not None and served[0]["logits"].device == META
    assert cache.get("k", 0, META)[0]["logits"].device == META  # kept there for the next one


def test_a_prefilled_cache_directory_serves_the_student_on_its_device(tmp_path: Path) -> None:
    # The documented workflow: a cache directory filled by another process (on the CPU here).
    writer = TeacherCache(directory=tmp_path)
    for epoch in range(2):
        writer.put("k", epoch, [{"logits": torch.full((4, 25), float(epoch))}])
    source = CachedTeacher(TeacherCache(directory=tmp_path), "k", CountingTeacher(META))
    images = DeviceImages(
        ImageSet(torch.zeros(8, 1, 4, 4, dtype=torch.uint8), torch.zeros(8, dtype=torch.int64)),
        (0.5,),
        (0.25,),
        0,
        torch.device("cpu"),
    )
    source.prefill(images, _config(batch_size=8), seed=0, epochs=2)
    for epoch in range(2):
        assert source.summary(epoch, 0, torch.empty(0))["logits"].device == META
    assert source.live.calls == 0


# -- item 5: students read epochs in order, so the earliest epochs are the ones to keep --------
def test_a_budget_short_of_the_epochs_keeps_the_earliest_for_the_next_students() -> None:
    epochs, batches = 10, 2  # 800 bytes an epoch; the budget holds 3 of the 10
    cache = TeacherCache(max_bytes=3 * 800)
    first = CachedTeacher(cache, "k", CountingTeacher())
    _student(first, epochs, batches)
    assert first.live.calls == epochs * batches
    for _ in range(3):  # least-recently-used eviction gave 0 hits for every later student
        later = CachedTeacher(cache, "k", CountingTeacher())
        _student(later, epochs, batches)
        assert later.live.calls == 7 * batches
        assert (later.epochs_served, later.epochs_computed) == (3, 7)
    assert cache.hits == 3 * 3 and cache.bytes_in_memory == 3 * 800


def test_the_directory_budget_keeps_the_earliest_epochs_too(tmp_path: Path) -> None:
    class Wide(CountingTeacher):  # 100 kB a batch, so the files' few hundred bytes of
        def summary(self, epoch, batch, images):  # pickling overhead are negligible
            return {"logits": super().summary(epoch, batch, images)["logits"].repeat(250, 1)}

    epoch_bytes = 2 * 100_000
    first = CachedTeacher(
        TeacherCache(max_bytes=0, directory=tmp_path, max_disk_bytes=int(3.5 * epoch_bytes)),
        "k",
        Wide(),
    )
    _student(first, epochs=10, batches=2)
    assert sorted(p.name for p in (tmp_path / "k").glob("epoch_*.pt")) == [
        "epoch_0000.pt",
        "epoch_0001.pt",
        "epoch_0002.pt",
    ]
    later = CachedTeacher(TeacherCache(max_bytes=0, directory=tmp_path), "k", Wide())
    _student(later, epochs=10, batches=2)
    assert (later.epochs_served, later.epochs_computed) == (3, 7)


# -- item 6: an epoch that will not be kept is not held ----------------------------------------
def test_an_epoch_that_cannot_be_kept_is_not_held_while_it_is_computed() -> None:
    cache = TeacherCache(max_bytes=1000)  # 2.5 batches of 400 bytes; no directory
    live = CountingTeacher()
    source = CachedTeacher(cache, "k", live)
    for batch in range(10):
        source.summary(0, batch, torch.empty(0))
    gc.collect()
    # Everything beyond the budget was let go at once (the student drops its own references).
    alive = sum(ref() is not None for ref in live.handed_out)
    assert alive == 0, f"{alive} batch summaries of an epoch that cannot be cached are held"
    source.end_epoch(0)
    assert cache.bytes_in_memory == 0 and cache.get("k", 0) is None


def test_an_epoch_too_large_for_memory_still_reaches_the_directory(tmp_path: Path) -> None:
    cache = TeacherCache(max_bytes=1000, directory=tmp_path)
    source = CachedTeacher(cache, "k", CountingTeacher())
    for batch in range(10):
        source.summary(0, batch, torch.empty(0))
    source.end_epoch(0)
    assert cache.bytes_in_memory == 0
    stored = TeacherCache(directory=tmp_path).get("k", 0)
    assert stored is not None and len(stored) == 10
    assert [float(b["logits"][0, 0]) for b in stored] == [float(b) for b in range(10)]


# -- item 3: the device is decided where the evaluation runs -----------------------------------
def test_an_auto_device_is_decided_in_the_process_that_trains(
    digits, tiny_space, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)  # a driver with a GPU
    objective = TrainingObjective(tiny_space, digits, _config(), seed=0)
    assert objective.device.type == "cuda"  # the driver itself would use its GPU
    shipped = pickle.dumps(objective)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)  # a task without one
    task_copy = pickle.loads(shipped)
    assert task_copy.device == torch.device("cpu")
    result = task_copy.train(Architecture("tiny", (4,)), Fidelity(part=27, method="nokd"))
    assert result.status == "ok" and result.device.startswith("cpu")
    # An explicit device is kept as asked.
    explicit = TrainingObjective(tiny_space, digits, _config(), seed=0, device="cuda:1")
    assert pickle.loads(pickle.dumps(explicit)).device == torch.device("cuda:1")


def test_a_pickled_objective_ships_its_teachers_and_cache_without_device_state(
    digits, tiny_space
) -> None:
    objective = TrainingObjective(tiny_space, digits, _config(), seed=0, device="cpu")
    objective.train(Architecture("tiny", (4,)), Fidelity(part=27, method="kd"))
    assert objective.cache.bytes_in_memory > 0 and objective._train_images
    copy = pickle.loads(pickle.dumps(objective))
    assert copy.cache.bytes_in_memory == 0 and not copy._train_images
    assert copy.teacher_life.known_keys() == objective.teacher_life.known_keys() != set()
    again = copy.train(Architecture("tiny", (4,)), Fidelity(part=27, method="kd"))
    assert again.status == "ok"


# -- item 9: channels_last=False, bfloat16 only where native, kernels ---------------------------
@pytest.mark.parametrize("channels_last", [True, False])
def test_batches_follow_the_configured_memory_layout(digits, tiny_space, channels_last) -> None:
    rgb = ImageSet(
        torch.randint(0, 256, (6, 3, 5, 5), dtype=torch.uint8), torch.zeros(6, dtype=torch.int64)
    )
    images = DeviceImages(
        rgb, (0.5,) * 3, (0.25,) * 3, 1, torch.device("cpu"), channels_last=channels_last
    )
    plan = epoch_plan(6, 4, seed=0, epoch=0, padding=1, flip=True)
    for batch, _, _ in images.plan_batches(plan):
        assert batch.is_contiguous(memory_format=torch.channels_last) == channels_last
        assert batch.is_contiguous() != channels_last
    evaluation, _ = next(images.eval_batches(4))
    assert evaluation.is_contiguous() != channels_last
    classic = DeviceImages(rgb, (0.5,) * 3, (0.25,) * 3, 1, torch.device("cpu"))
    assert torch.equal(images.batch(torch.arange(6)), classic.batch(torch.arange(6)))
    # The objective builds its images in the configured layout.
    objective = TrainingObjective(
        tiny_space, digits, _config(channels_last=channels_last), seed=0, device="cpu"
    )
    assert objective.train_images(27).channels_last == channels_last
    assert objective.eval_images("test").channels_last == channels_last


@pytest.mark.filterwarnings("ignore:CUDA is not available")
@pytest.mark.parametrize(
    ("capability", "expected"), [((7, 0), "float32"), ((7, 5), "float32"), ((8, 0), "bfloat16")]
)
def test_bfloat16_autocast_only_on_gpus_that_compute_it_natively(
    monkeypatch: pytest.MonkeyPatch, capability, expected
) -> None:
    from kdnas.train import autocast

    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda device=None: capability)
    gpu = torch.device("cuda:0")
    context = autocast(gpu, _config())
    if expected == "bfloat16":
        assert isinstance(context, torch.autocast) and context.fast_dtype == torch.bfloat16
    else:
        assert not isinstance(context, torch.autocast)
    from kdnas.train import precision

    assert precision(gpu, _config()) == expected
    assert precision(gpu, _config(amp=False)) == "float32"
    assert precision(torch.device("cpu"), _config()) == "float32"


@pytest.fixture
def restore_kernel_flags():
    saved = (
        torch.backends.cudnn.benchmark,
        torch.backends.cudnn.deterministic,
        torch.are_deterministic_algorithms_enabled(),
        torch.is_deterministic_algorithms_warn_only_enabled(),
    )
    yield
    torch.backends.cudnn.benchmark, torch.backends.cudnn.deterministic = saved[:2]
    torch.use_deterministic_algorithms(saved[2], warn_only=saved[3])


@pytest.mark.parametrize("deterministic", [False, True])
def test_training_turns_autotuning_on_or_deterministic_kernels(
    digits, tiny_space, restore_kernel_flags, deterministic
) -> None:
    seen: list[tuple[bool, bool, bool]] = []
    config = _config(epochs=1, deterministic=True) if deterministic else _config(epochs=1)
    objective = TrainingObjective(tiny_space, digits, config, seed=0, device="cpu")
    network = objective.build(Architecture("tiny", (4,)))

    def record(*_: object) -> None:
        seen.append(
            (
                torch.backends.cudnn.benchmark,
                torch.backends.cudnn.deterministic,
                torch.are_deterministic_algorithms_enabled(),
            )
        )

    network.stem.register_forward_pre_hook(record)
    from kdnas.distill.logit import CrossEntropyLoss

    outcome = objective._train(
        Architecture("tiny", (4,)), network, CrossEntropyLoss(), 27, None, None
    )
    assert outcome.status == "ok" and seen
    assert set(seen) == {(not deterministic, deterministic, deterministic)}


def test_deterministic_is_not_part_of_the_protocol() -> None:
    assert _config(deterministic=True).protocol_key() == _config().protocol_key()
