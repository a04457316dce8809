"""Full training on one process or many (DDP, gloo on the CPU), checkpoints and resume."""

from __future__ import annotations

import dataclasses
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from kdnas.data import epoch_plan, load_digits, prepare
from kdnas.spaces import get_space
from kdnas.train import DistributedContext, FullRun, ResidentBatches, TrainConfig, train_full
from kdnas.train._distributed import _usable

_CPU = torch.device("cpu")
_EPOCHS = 2


@pytest.fixture(scope="module")
def setup():
    data = prepare(load_digits(), resolution=8)
    subset = data.subset(27, seed=0)  # 50 images: 4 batches of 12 and one of 2
    config = TrainConfig.for_data(
        data, epochs=_EPOCHS, batch_size=12, width_multiplier=0.25, lr=0.05
    )
    run = FullRun("original", data.name, subset.content_hash, config.protocol_key(), 0, _EPOCHS)
    return data, subset, config, run


def _network(data, config):
    space = get_space("mobilenetv2")
    with torch.random.fork_rng():
        torch.manual_seed(0)
        network = space.build_network(
            space.original(), data.num_classes, data.in_channels, config.width_multiplier
        )
    network.dropout.p = 0.0  # dropout draws differ per rank; the comparison is of the rest
    return network


def _reference_losses(data, subset, config, run, world: int) -> list[float]:
    """One process, no DDP: each step averages the mean losses of the ranks' shards, which is
    what DDP's gradient averaging computes (BatchNorm over each shard, as DDP on the CPU)."""
    network = _network(data, config).to(memory_format=torch.channels_last)
    optimizer = torch.optim.SGD(
        network.parameters(), lr=config.lr, momentum=config.momentum,
        weight_decay=config.weight_decay,
    )  # fmt: skip
    sources = [
        ResidentBatches(data, subset, config, DistributedContext(rank, world, _CPU))
        for rank in range(world)
    ]
    losses = []
    for epoch in range(run.epochs):
        for group in optimizer.param_groups:
            group["lr"] = config.learning_rate(epoch)
        plan = epoch_plan(
            len(subset), config.batch_size, 0, epoch, config.crop_padding,
            config.horizontal_flip,
        )  # fmt: skip
        plan = _usable(plan, world)
        network.train()
        for shards in zip(*(s.train_batches(plan, epoch, 0) for s in sources), strict=True):
            assert sum(len(labels) for _, labels in shards) >= 2 * world
            total = sum(F.cross_entropy(network(x), y) for x, y in shards) / world
            optimizer.zero_grad()
            total.backward()
            optimizer.step()
            losses.append(float(total.detach()))
    return losses


def test_one_process_equals_a_plain_loop(setup) -> None:
    data, subset, config, run = setup
    outcome = train_full(
        _network(data, config),
        ResidentBatches(data, subset, config, DistributedContext(device=_CPU)),
        config,
        run,
        context=DistributedContext(device=_CPU),
    )
    assert outcome.result.status == "ok" and outcome.result.epochs == _EPOCHS
    assert 0.0 <= outcome.result.valid_acc <= 1.0 and outcome.world_size == 1
    reference = _reference_losses(data, subset, config, run, world=1)
    assert len(outcome.step_losses) == len(reference) == 10
    assert outcome.step_losses == pytest.approx(reference, rel=1e-5)


def _rank_main(rank: int, store: str, out: str, setup) -> None:
    import torch.distributed as dist

    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"file://{store}", rank=rank, world_size=2)
    data, subset, config, run = setup
    context = DistributedContext(rank, 2, _CPU)
    network = _network(data, config)
    outcome = train_full(
        network, ResidentBatches(data, subset, config, context), config, run, context=context
    )
    if rank == 0:
        result = outcome.result
        Path(out).write_text(
            json.dumps(
                {
                    "losses": outcome.step_losses,
                    "valid_acc": result.valid_acc,
                    "test_acc": result.test_acc,
                }
            )
        )
        # The weights every rank scored with (rank 0's BatchNorm statistics, broadcast).
        torch.save(network.state_dict(), Path(out).with_suffix(".pt"))
    torch.save(network.state_dict(), Path(out).with_suffix(f".rank{rank}.pt"))
    dist.destroy_process_group()


def test_two_gloo_processes_follow_the_one_process_trajectory(setup, tmp_path) -> None:
    data, subset, config, run = setup
    out = tmp_path / "rank0.json"
    torch.multiprocessing.start_processes(
        _rank_main,
        args=(str(tmp_path / "store"), str(out), setup),
        nprocs=2,
        start_method="fork",
    )
    saved = json.loads(out.read_text())
    reference = _reference_losses(data, subset, config, run, world=2)
    # The last batch of 2 cannot give each rank 2 samples: 4 steps per epoch, not 5.
    assert len(saved["losses"]) == len(reference) == 8
    # Same global batch, same steps: equal up to float reduction order.
    assert saved["losses"] == pytest.approx(reference, rel=1e-4)
    # Both ranks scored their shares of each split: the accuracy is one process's on the
    # same weights over the whole split (scoring one rank's share alone, or each rank with
    # its own BatchNorm statistics, differs).
    # Each rank's last forward updated its own BatchNorm statistics (its shard differs); both
    # ranks must score with rank 0's, so their weights and buffers agree when they score.
    ranks = [torch.load(out.with_suffix(f".rank{r}.pt"), weights_only=True) for r in (0, 1)]
    assert ranks[0].keys() == ranks[1].keys()
    for name, value in ranks[0].items():
        assert torch.equal(value, ranks[1][name]), name
    network = _network(data, config)
    network.load_state_dict(torch.load(out.with_suffix(".pt"), weights_only=True))
    for split in ("valid", "test"):
        assert saved[f"{split}_acc"] == _one_process_accuracy(network, data, subset, config, split)


def _one_process_accuracy(network, data, subset, config, split: str) -> float:
    """Top-1 accuracy over the whole split in one forward pass, counted here."""
    source = ResidentBatches(data, subset, config, DistributedContext(device=_CPU))
    (images, labels), *rest = source.eval_batches(split, 10**6)
    assert not rest and len(labels) == len(getattr(data, split).labels)
    network.eval()
    with torch.no_grad():
        correct = int((network(images).argmax(dim=1) == labels).sum())
    return correct / len(labels)


@pytest.mark.parametrize("world", [2, 3])
def test_rank_shards_concatenate_to_the_global_batch(setup, world: int) -> None:
    # Every global batch of the plan, as the ranks' shards in rank order, is the batch one
    # process trains on: the same samples (labels read from the data here) and the same
    # augmented images. A rank training on another rank's shard fails this.
    data, subset, config, _ = setup
    labels = torch.as_tensor(data.train.labels[subset.indices])
    # The batches train_full trains on: each gives every rank at least two samples.
    plan = _usable(
        epoch_plan(len(subset), config.batch_size, 0, 1, config.crop_padding, True), world
    )
    assert len(plan.bounds) == 4  # 50 images: 4 batches of 12 (the last one of 2 is left out)
    one = ResidentBatches(data, subset, config, DistributedContext(device=_CPU))
    ranks = [
        ResidentBatches(data, subset, config, DistributedContext(rank, world, _CPU))
        for rank in range(world)
    ]
    shards = zip(*(r.train_batches(plan, 1, 0) for r in ranks), strict=True)
    batches = zip(plan.bounds, one.train_batches(plan, 1, 0), shards, strict=True)
    for (start, stop), (images, _), per_rank in batches:
        assert all(len(y) >= 2 for _, y in per_rank)
        assert torch.equal(torch.cat([y for _, y in per_rank]), labels[plan.order[start:stop]])
        assert torch.equal(torch.cat([x for x, _ in per_rank]), images)


@pytest.mark.parametrize("world", [2, 3])
def test_rank_shares_of_a_split_cover_it_once(setup, world: int) -> None:
    data, subset, config, _ = setup
    split = data.valid
    whole = ResidentBatches(data, subset, config, DistributedContext(device=_CPU))
    (all_images, _), *_ = whole.eval_batches("valid", 10**6)
    shares = [
        ResidentBatches(data, subset, config, DistributedContext(rank, world, _CPU))
        for rank in range(world)
    ]
    seen = [x for share in shares for images, _ in share.eval_batches("valid", 7) for x in images]
    assert len(seen) == len(split.labels)
    assert sorted(x.numpy().tobytes() for x in seen) == sorted(
        x.numpy().tobytes() for x in all_images
    )


def test_one_process_in_a_process_group_trains_through_ddp(setup, tmp_path) -> None:
    """torchrun with one process (a one-GPU machine's NCCL check) gets a process group and
    DDP; the outcome names the backend, and the steps are the one-process steps."""
    import torch.distributed as dist

    data, subset, config, run = setup
    context = DistributedContext(device=_CPU)
    alone = train_full(
        _network(data, config), ResidentBatches(data, subset, config, context), config, run,
        context=context,
    )  # fmt: skip
    assert alone.backend is None
    dist.init_process_group(
        "gloo", init_method=f"file://{tmp_path / 'store'}", rank=0, world_size=1
    )
    try:
        grouped = train_full(
            _network(data, config), ResidentBatches(data, subset, config, context), config,
            run, context=context,
        )  # fmt: skip
    finally:
        dist.destroy_process_group()
    assert grouped.backend == "gloo" and grouped.world_size == 1
    assert grouped.step_losses == pytest.approx(alone.step_losses, rel=1e-5)


def test_torchrun_environment_joins_a_process_group_with_one_process(monkeypatch) -> None:
    import torch.distributed as dist

    joined = []
    monkeypatch.setattr(dist, "init_process_group", lambda backend: joined.append(backend))
    monkeypatch.setattr(dist, "is_initialized", lambda: False)
    for name, value in (("WORLD_SIZE", "1"), ("RANK", "0"), ("LOCAL_RANK", "0")):
        monkeypatch.setenv(name, value)
    monkeypatch.delenv("MASTER_ADDR", raising=False)
    DistributedContext.from_environment("cpu")  # WORLD_SIZE alone: not torchrun's rendezvous
    assert joined == []
    monkeypatch.setenv("MASTER_ADDR", "127.0.0.1")
    context = DistributedContext.from_environment("cpu")
    assert joined == ["gloo"] and context.world_size == 1


def test_stop_and_resume_equals_one_uninterrupted_run(setup, tmp_path) -> None:
    data, subset, config, run = setup
    config = dataclasses.replace(config, epochs=3)
    run = dataclasses.replace(run, epochs=3, protocol=config.protocol_key())
    context = DistributedContext(device=_CPU)
    batches = ResidentBatches(data, subset, config, context)
    whole = train_full(_network(data, config), batches, config, run, context=context)
    first = train_full(
        _network(data, config), batches, config, run, checkpoint_dir=tmp_path,
        context=context, stop_after_epochs=1,
    )  # fmt: skip
    assert first.result.epochs == 1 and len(first.step_losses) < len(whole.step_losses)
    assert json.loads((tmp_path / "progress.json").read_text()) == {"epochs_done": 1, "epochs": 3}
    # A fresh network: everything the run needs comes from the checkpoint.
    rest = train_full(
        _network(data, config), batches, config, run, checkpoint_dir=tmp_path, context=context
    )
    assert rest.resumed_from_epoch == 1 and rest.result.epochs == 3
    assert rest.step_losses == pytest.approx(whole.step_losses, rel=1e-6)
    assert rest.result.valid_acc == pytest.approx(whole.result.valid_acc)
    assert rest.result.final_loss == pytest.approx(whole.result.final_loss, rel=1e-6)
    # Started again once finished: nothing to train, the same result.
    again = train_full(
        _network(data, config), batches, config, run, checkpoint_dir=tmp_path, context=context
    )
    assert again.resumed_from_epoch == 3 and again.step_losses == rest.step_losses
    assert again.result.final_loss == rest.result.final_loss
    other = dataclasses.replace(run, seed=1)
    with pytest.raises(ValueError, match="belongs to another run"):
        train_full(
            _network(data, config), batches, config, other, checkpoint_dir=tmp_path,
            context=context,
        )  # fmt: skip


_KILLED_RUN = """
import sys, time, torch
torch.set_num_threads(1)
from kdnas.data import load_digits, prepare
from kdnas.spaces import get_space
from kdnas.train import DistributedContext, FullRun, ResidentBatches, TrainConfig, train_full
import kdnas.train._distributed as full

data = prepare(load_digits(), resolution=8)
subset = data.subset(27, seed=0)
config = TrainConfig.for_data(data, epochs=4, batch_size=12, width_multiplier=0.25, lr=0.05)
run = FullRun("original", data.name, subset.content_hash, config.protocol_key(), 0, 4)
space = get_space("mobilenetv2")
torch.manual_seed(0)
network = space.build_network(space.original(), 10, 1, 0.25)
network.dropout.p = 0.0
slow = full._train_epoch
def slowly(*args):
    time.sleep(0.5)  # time to be killed mid-run
    return slow(*args)
full._train_epoch = slowly
context = DistributedContext(device=torch.device("cpu"))
train_full(network, ResidentBatches(data, subset, config, context), config, run,
           checkpoint_dir=sys.argv[1], context=context)
"""


@pytest.mark.slow
def test_a_killed_run_resumes_from_its_last_checkpoint(setup, tmp_path) -> None:
    data, subset, config, run = setup
    config = dataclasses.replace(config, epochs=4)
    run = dataclasses.replace(run, epochs=4, protocol=config.protocol_key())
    process = subprocess.Popen([sys.executable, "-c", _KILLED_RUN, str(tmp_path)])
    progress = tmp_path / "progress.json"
    deadline = time.monotonic() + 120
    while not progress.exists() and time.monotonic() < deadline and process.poll() is None:
        time.sleep(0.05)
    os.kill(process.pid, signal.SIGKILL)
    process.wait()
    done = json.loads(progress.read_text())["epochs_done"]
    assert 1 <= done < 4, "the run was not killed mid-way"
    context = DistributedContext(device=_CPU)
    batches = ResidentBatches(data, subset, config, context)
    resumed = train_full(
        _network(data, config), batches, config, run, checkpoint_dir=tmp_path, context=context
    )
    # At most the epoch in progress is lost: training restarts after the last finished one.
    assert resumed.resumed_from_epoch == done
    assert resumed.result.epochs == 4
    whole = train_full(_network(data, config), batches, config, run, context=context)
    assert resumed.step_losses == pytest.approx(whole.step_losses, rel=1e-6)
