"""No process is left behind by a local Ray run, whatever ends its driver (kill -9 included)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from kdnas.execute._reaper import ray_descendants

pytestmark = pytest.mark.skipif(
    not sys.platform.startswith("linux"), reason="the watchdog reads /proc (Linux only)"
)

# A stand-in for Ray's agents: titled ray::..., deaf to SIGTERM, with a child of its own.
_AGENT = (
    "import signal, subprocess, sys, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); "
    "subprocess.Popen([sys.executable, '-c', 'import signal, time; "
    "signal.signal(signal.SIGTERM, signal.SIG_IGN); time.sleep(120)']); time.sleep(120)"
)

_DRIVER = textwrap.dedent(
    f"""
    import subprocess, sys, time
    from kdnas.execute._reaper import ProcessReaper
    reaper = ProcessReaper.start(poll_s=0.1, grace_s=0.5)
    agent = subprocess.Popen([sys.executable, "-c", {_AGENT!r}, "ray::FakeAgent"])
    bystander = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)"])
    print(agent.pid, bystander.pid, flush=True)
    time.sleep(120)
    """
)


def _start_time(pid: int) -> int | None:
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = text[text.rindex(")") + 2 :].split()
    return None if fields[0] == "Z" else int(fields[19])


def _wait_until(condition: object, timeout_s: float) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if condition():  # type: ignore[operator]
            return True
        time.sleep(0.1)
    return bool(condition())  # type: ignore[operator]


def test_kill_9_of_the_driver_ends_its_ray_processes_and_spares_the_rest() -> None:
    driver = subprocess.Popen([sys.executable, "-c", _DRIVER], stdout=subprocess.PIPE, text=True)
    bystander = None
    try:
        agent, bystander = (int(pid) for pid in driver.stdout.readline().split())  # type: ignore[union-attr]
        assert _wait_until(lambda: len(ray_descendants(driver.pid)) == 2, 10)
        doomed = ray_descendants(driver.pid)  # the agent and its child
        assert agent in doomed and bystander not in doomed
        time.sleep(1.0)  # the watchdog records every 0.1 s: ten chances, even on a loaded machine
        os.kill(driver.pid, signal.SIGKILL)
        driver.wait(timeout=10)
        assert _wait_until(
            lambda: all(_start_time(pid) != start for pid, start in doomed.items()), 15
        ), "a Ray process outlived its killed driver"
        assert _start_time(bystander) is not None, "a process that is not Ray's was ended"
    finally:
        if driver.poll() is None:
            driver.kill()
        if bystander is not None and _start_time(bystander) is not None:
            os.kill(bystander, signal.SIGKILL)


_RAY_DRIVER = textwrap.dedent(
    """
    import sys, time
    sys.path.insert(0, sys.argv[1])
    from fake_search import ShuffledOptimizer, ToyObjective, toy_candidates
    import fake_search
    from ray import cloudpickle
    cloudpickle.register_pickle_by_value(fake_search)
    from kdnas.execute import RayExecutor
    from kdnas.store import SQLiteStore

    class Announce:
        def on_start(self, suggestion):
            print("started", flush=True)
        def on_result(self, evaluation, replayed):
            pass

    with SQLiteStore(sys.argv[2]) as store:
        RayExecutor(max_concurrent=1, local_num_cpus=1).run(
            ShuffledOptimizer(toy_candidates(5), 5, seed=0), ToyObjective(sleep_s=60),
            store, run_id="r", callbacks=[Announce()],
        )
    """
)


@pytest.mark.slow
def test_kill_9_of_a_real_ray_driver_leaves_no_process(tmp_path: Path) -> None:
    pytest.importorskip("ray")
    command = [sys.executable, "-c", _RAY_DRIVER, str(Path(__file__).parent), str(tmp_path / "s")]
    driver = subprocess.Popen(command, stdout=subprocess.PIPE, text=True)
    try:
        assert driver.stdout.readline().strip() == "started"  # type: ignore[union-attr]
        time.sleep(3)  # Ray's agents are up by now
        doomed = ray_descendants(driver.pid)
        titles = {Path(f"/proc/{pid}/cmdline").read_bytes()[:20] for pid in doomed}
        assert len(doomed) >= 4, titles  # GCS, raylet, agents, the worker
        os.kill(driver.pid, signal.SIGKILL)
        driver.wait(timeout=10)
        assert _wait_until(
            lambda: all(_start_time(pid) != start for pid, start in doomed.items()), 30
        ), "a Ray process outlived its killed driver"
    finally:
        if driver.poll() is None:
            driver.kill()
