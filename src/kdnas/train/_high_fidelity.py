"""An objective whose high-fidelity evaluations train on several processes (DDP).

``DistributedHighFidelity`` wraps a ``TrainingObjective``: low fidelities stay one process each
(``TrainingObjective.evaluate``), while a high-fidelity evaluation (part 1, plain
cross-entropy) runs ``train_full`` on ``nproc`` local processes started with
``torch.multiprocessing`` (one per GPU with NCCL on CUDA, gloo on the CPU), checkpointing every
epoch under ``checkpoint_root``. An evaluation interrupted by a crash resumes from its last
checkpoint when the search asks for it again; a finished one is not trained again.
"""

from __future__ import annotations

import json
import logging
import math
import tempfile
import time
from pathlib import Path
from typing import Any

import torch

from kdnas.core import Architecture, EvalResult, Fidelity
from kdnas.data import stream_seed
from kdnas.train._config import TrainResult
from kdnas.train._distributed import DistributedContext, FullRun, ResidentBatches, train_full
from kdnas.train._objective import TrainingObjective
from kdnas.train._trainer import describe_device, seeded_generators

__all__ = ["DistributedHighFidelity"]

logger = logging.getLogger(__name__)


def _rank_main(
    rank: int,
    nproc: int,
    store: str,
    job: dict[str, Any],
    arch: Architecture,
    epochs: int,
    checkpoints: str,
    out: str,
) -> None:
    import torch.distributed as dist

    space, data, config, seed = job["space"], job["data"], job["config"], job["seed"]
    cuda = job["cuda"]
    device = torch.device("cuda", rank) if cuda else torch.device("cpu")
    if cuda:
        torch.cuda.set_device(device)
    else:
        torch.set_num_threads(max(1, torch.get_num_threads() // nproc))
    dist.init_process_group(
        "nccl" if cuda else "gloo", init_method=f"file://{store}", rank=rank, world_size=nproc
    )
    try:
        context = DistributedContext(rank, nproc, device)
        subset = data.subset(1, job["subset_seed"])
        run = FullRun(
            arch.key(), data.name, subset.content_hash, config.protocol_key(), seed, epochs
        )
        # The initialisation TrainingObjective gives the same architecture.
        with seeded_generators(device, stream_seed(seed, 0, "init")):
            network = space.build_network(
                arch,
                num_classes=data.num_classes,
                in_channels=data.in_channels,
                width_multiplier=config.width_multiplier,
            )
        batches = ResidentBatches(data, subset, config, context)
        outcome = train_full(
            network, batches, config, run, checkpoint_dir=checkpoints, context=context
        )
        if rank == 0:
            record = outcome.result.to_dict()
            record["resumed_from_epoch"] = outcome.resumed_from_epoch
            Path(out).write_text(json.dumps(record))
    finally:
        dist.destroy_process_group()


class DistributedHighFidelity:
    """``kdnas.core.Objective`` training high fidelity on ``nproc`` processes, the rest on one.

    Args:
        low: the objective of every evaluation (its data, protocol, seed, device); it trains
            the low fidelities itself.
        nproc: processes of a high-fidelity run (at most the GPU count on CUDA).
        checkpoint_root: folder of the runs' checkpoint folders (one per architecture, seed
            and epochs).
        start_method: how ``torch.multiprocessing`` starts the processes ("spawn", the safe
            default with CUDA; "fork" starts faster on the CPU).
    """

    def __init__(
        self,
        low: TrainingObjective,
        nproc: int,
        checkpoint_root: str | Path,
        start_method: str = "spawn",
    ) -> None:
        if nproc < 1:
            raise ValueError(f"nproc must be >= 1, got {nproc}")
        if low.device.type == "cuda" and nproc > torch.cuda.device_count():
            raise ValueError(
                f"nproc={nproc} needs as many GPUs; this machine has {torch.cuda.device_count()}"
            )
        self.low = low
        self.nproc = nproc
        self.checkpoint_root = Path(checkpoint_root)
        self.start_method = start_method

    def evaluate(self, arch: Architecture, fidelity: Fidelity) -> EvalResult:
        """Train ``arch`` at ``fidelity``: on ``nproc`` processes at high fidelity (part 1,
        "nokd"), else by ``low``. Never raises for a failed run: the status says so."""
        if fidelity.part != 1 or fidelity.method != "nokd":
            return self.low.evaluate(arch, fidelity)
        return self.train_high_fidelity(arch, fidelity.epochs).to_eval_result(arch, fidelity)

    def train_high_fidelity(self, arch: Architecture, epochs: int | None = None) -> TrainResult:
        """The detailed result of ``arch``'s high-fidelity run."""
        epochs = epochs or self.low.config.epochs
        folder = self.checkpoint_root / f"{arch.key()}-seed{self.low.seed}-epochs{epochs}"
        start = time.perf_counter()
        low = self.low
        job = {
            "space": low.space,
            "data": low.data,
            "config": low.config,
            "seed": low.seed,
            "subset_seed": low.subset_seed,
            "cuda": low.device.type == "cuda",
        }
        with tempfile.TemporaryDirectory() as temporary:
            out = Path(temporary) / "result.json"
            try:
                torch.multiprocessing.start_processes(
                    _rank_main,
                    args=(
                        self.nproc, str(Path(temporary) / "store"), job, arch, epochs,
                        str(folder), str(out),
                    ),
                    nprocs=self.nproc,
                    start_method=self.start_method,
                )  # fmt: skip
                record: dict[str, Any] = json.loads(out.read_text())
            except (torch.multiprocessing.ProcessRaisedException, OSError, ValueError) as error:
                logger.warning("high-fidelity run of %s failed: %s", arch.key(), error)
                return _failed(self.low, time.perf_counter() - start, error)
        record.pop("resumed_from_epoch", None)

        def number(value: Any) -> Any:
            if isinstance(value, dict):
                return {k: number(v) for k, v in value.items()}
            return math.nan if value is None else value

        return TrainResult(**{k: number(v) for k, v in record.items()})


def _failed(low: TrainingObjective, seconds: float, error: Exception) -> TrainResult:
    return TrainResult(
        status="failed",
        valid_acc=math.nan,
        test_acc=math.nan,
        wall_time_s=seconds,
        train_time_s=0.0,
        teacher_time_s=0.0,
        params=0,
        multiply_adds=0,
        epochs=0,
        final_loss=math.nan,
        seed=low.seed,
        subset_hash="",
        device=describe_device(low.device),
        error=f"{type(error).__name__}: {str(error).strip().splitlines()[-1]}",
    )
