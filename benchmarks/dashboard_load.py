"""The dashboard under load: time to first view and memory on a store of 100,000 evaluations,
and its effect on the wall time of a search that runs while the page follows it.

1. First view. A store of ``--evaluations`` evaluations (default 100,000, a fifth at full
   data, 4 workers, 2,000 architectures of the MobileNetV2 space) is written through the
   store's own ``put`` (on /dev/shm when there is one, where a commit's fsync is free, then
   copied beside the other files), and a baseline store of ``--baseline`` evaluations (1,000)
   the same way. ``--first-view-repeats`` times for each store (alternating), ``kdnas
   dashboard`` starts in its own process and a fresh headless chromium (nothing cached)
   opens the page the moment the server prints its address. The first view is the overview
   with the runs' figures, the evaluations grid's first page in place and the first chart
   (incumbent over time) drawn: the page marks it ``kdnas-first-view`` (the overview and
   grid alone: ``kdnas-overview``). Measured: seconds until the server listens; from the
   browser's request to each mark (the browser's own clock); from the command's start to
   the first view; a reload of the page in the same browser; the server's peak resident
   memory (VmHWM). Then, on a fresh server, the seconds of the page's one data request
   (``api/first``, asked as soon as the server listens) and of one incremental update with
   nothing new. Medians printed, with the ratio large / baseline.
2. Effect on a search. The same tiny digits search (width x0.125, 1 epoch, one thread)
   ``--repeats`` times alone and ``--repeats`` times followed by the dashboard and a headless
   browser polling it (alternating, alone first), in fresh stores; printed: each wall time,
   the medians and their ratio (with / without).

    .venv/bin/python benchmarks/dashboard_load.py [--evaluations 100000] [--baseline 1000]
        [--first-view-repeats 3] [--compare-with OLD/src] [--repeats 2] [--skip-search]
        [--skip-first-view]
"""

from __future__ import annotations

import argparse
import json
import math
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import numpy as np

from kdnas.core import EvalResult, Fidelity, Suggestion
from kdnas.spaces import get_space
from kdnas.store import SQLiteStore

SRC = Path(__file__).resolve().parents[1] / "src"


def write_store(path: Path, evaluations: int, seed: int = 0) -> Path:
    """A store of ``evaluations`` evaluations written through ``SQLiteStore.put``."""
    space = get_space("mobilenetv2")
    rng = np.random.default_rng(seed)
    archs = [space.sample(rng) for _ in range(2000)]
    scratch_root = "/dev/shm" if os.path.isdir("/dev/shm") else None
    with tempfile.TemporaryDirectory(dir=scratch_root) as scratch:
        scratch_path = Path(scratch) / path.name
        with SQLiteStore(scratch_path, worker="bench") as store:
            store.open_run("bench", {"evaluations": evaluations, "seed": seed})
            start = 1.7e9
            for trial in range(evaluations):
                arch = archs[int(rng.integers(len(archs)))]
                full = trial % 5 == 0
                fidelity = Fidelity(1, "nokd") if full else Fidelity(9, "kd")
                quality = 0.01 + 0.98 * float(rng.random())
                cost = 8.0 if full else 2.0
                result = EvalResult(
                    arch.key(), fidelity, quality, quality - 0.01, cost, metrics={"params": 1}
                )
                worker = trial % 4
                store.put(
                    "bench",
                    Suggestion(trial, arch, fidelity),
                    result,
                    started_at=start + trial * 0.5,
                    finished_at=start + trial * 0.5 + cost,
                    worker=f"worker-{worker}",
                )
        shutil.copyfile(scratch_path, path)
    return path


def _env(source: Path = SRC) -> dict[str, str]:
    path = str(source) + os.pathsep + os.environ.get("PYTHONPATH", "")
    return {**os.environ, "PYTHONPATH": path}


def start_dashboard(store: Path, source: Path = SRC) -> tuple[subprocess.Popen[str], str, float]:
    """``kdnas dashboard`` (of the ``source`` tree) in its own process: the process, its
    address, seconds until it printed the address (it listens then)."""
    clock = time.perf_counter()
    process = subprocess.Popen(
        [sys.executable, "-m", "kdnas", "dashboard", str(store), "--port", "0"],
        env=_env(source),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    assert process.stdout is not None
    line = process.stdout.readline()
    if "http://" not in line:
        raise RuntimeError(f"the dashboard did not start: {line}")
    return process, line.split(": ", 1)[1].split()[0], time.perf_counter() - clock


def peak_memory_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def fetch(url: str) -> bytes:
    with urllib.request.urlopen(url, timeout=120) as answer:
        return answer.read()


def browser_available() -> bool:
    try:
        import selenium  # noqa: F401
    except ImportError:
        return False
    return bool(shutil.which("chromium") and shutil.which("chromedriver"))


def browser() -> Any | None:
    """A headless chromium driven by selenium, or None when either is missing."""
    chromium, driver = shutil.which("chromium"), shutil.which("chromedriver")
    try:
        from selenium import webdriver
        from selenium.webdriver.chrome.service import Service
    except ImportError:
        return None
    if chromium is None or driver is None:
        return None
    options = webdriver.ChromeOptions()
    options.binary_location = chromium
    for argument in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage"):
        options.add_argument(argument)
    os.environ["SE_OFFLINE"] = "true"
    return webdriver.Chrome(service=Service(executable_path=driver), options=options)


def _marks(driver: Any) -> dict[str, float]:
    """The page's marks, seconds since its navigation started (the browser's clock)."""
    return driver.execute_script(
        "const out = {}; for (const m of performance.getEntriesByType('mark')) "
        "out[m.name] = m.startTime / 1000; return out;"
    )


def _open_page(driver: Any, url: str) -> dict[str, float]:
    clock = time.perf_counter()
    driver.get(url)
    while driver.execute_script("return document.body.dataset.ready") != "1":
        time.sleep(0.01)
    wall = time.perf_counter() - clock
    marks = _marks(driver)
    # (An older page without these marks: its ready flag, on this side's clock.)
    return {
        "overview_s": marks.get("kdnas-overview", math.nan),
        "first_view_s": marks.get("kdnas-first-view", wall),
        "first_view_wall_s": wall,
    }


def first_view(store: Path, source: Path = SRC) -> dict[str, float]:
    """One cold start: a fresh browser waits on a blank page, the server starts, and the
    page is opened the moment it listens (seconds; MiB)."""
    driver = browser()
    if driver is None:
        raise RuntimeError("no chromium/selenium")
    process = None
    try:
        driver.get("about:blank")
        process, url, listening = start_dashboard(store, source)
        shown = _open_page(driver, url)
        reload = _open_page(driver, url)
        memory = peak_memory_mib(process.pid)
    finally:
        driver.quit()
        if process is not None:
            process.terminate()
            process.wait(timeout=30)
    return {
        "listening_s": listening,
        **shown,
        "command_to_first_view_s": listening + shown["first_view_s"],
        "reload_first_view_s": reload["first_view_s"],
        "peak_memory_mib": memory,
    }


def data_requests(store: Path, source: Path = SRC) -> dict[str, float]:
    """The page's data as soon as the server listens (``api/first``; a version without it:
    the requests its page made one after the other), then an empty update."""
    process, url, _ = start_dashboard(store, source)
    try:
        clock = time.perf_counter()
        try:
            latest = json.loads(fetch(url + "api/first"))["latest"]
        except urllib.error.HTTPError:
            latest = json.loads(fetch(url + "api/store"))["latest"]
            for path in ("runs", f"incumbent?upto={latest}", f"workers?upto={latest}"):
                fetch(url + "api/" + path)
            fetch(url + "api/evaluations?page=0&page_size=50&sort=id&desc=1")
        request = time.perf_counter() - clock
        clock = time.perf_counter()
        fetch(url + f"api/updates?since={latest}")
        update = time.perf_counter() - clock
    finally:
        process.terminate()
        process.wait(timeout=30)
    return {"first_view_request_s": request, "update_s": update}


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds a process has used so far (Linux /proc)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def search_wall(store: Path, watched: bool, driver: Any | None) -> float:
    command = [
        sys.executable, "-m", "kdnas", "search", "--dataset", "digits", "--algorithm", "alg2",
        "--method", "kd", "--part", "9", "--candidates", "8", "--n-lf", "5",
        "--budget-evaluations", "8", "--epochs", "1", "--width-multiplier", "0.125",
        "--batch-size", "256", "--threads", "1", "--allow-chance-teacher",
        "--store", str(store), "--run-id", "timed",
    ]  # fmt: skip
    clock = time.perf_counter()
    search = subprocess.Popen(command, env=_env(), stdout=subprocess.DEVNULL)
    dashboard = None
    try:
        if watched:
            while not store.exists():
                time.sleep(0.05)
            time.sleep(0.5)  # the store's tables are made in the search's first transaction
            dashboard, url, _ = start_dashboard(store)
            if driver is not None:
                driver.get(url)
        if search.wait(timeout=1800) != 0:
            raise RuntimeError("the search failed")
        wall = time.perf_counter() - clock
        if dashboard is not None:
            print(f"  (the dashboard's server used {cpu_seconds(dashboard.pid):.1f} CPU s)")
        return wall
    finally:
        if dashboard is not None:
            dashboard.terminate()
            dashboard.wait(timeout=30)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--evaluations", type=int, default=100_000)
    parser.add_argument("--baseline", type=int, default=1_000)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--skip-search", action="store_true")
    parser.add_argument("--skip-first-view", action="store_true")
    parser.add_argument("--first-view-repeats", type=int, default=3)
    parser.add_argument(
        "--compare-with",
        type=Path,
        default=None,
        metavar="SRC",
        help="another version's src folder (e.g. git archive OLD src | tar -x -C DIR): its "
        "first view measured in turn with this one's, on the same stores",
    )
    args = parser.parse_args()
    with_browser = browser_available()
    if not with_browser:
        print("(no chromium/selenium: the browser's first view is not measured)")
    with tempfile.TemporaryDirectory() as folder:
        stores = {}
        sizes = (
            {} if args.skip_first_view else {"baseline": args.baseline, "large": args.evaluations}
        )
        for label, count in sizes.items():
            clock = time.perf_counter()
            stores[label] = write_store(Path(folder) / f"{label}.sqlite", count)
            print(f"wrote {count:,} evaluations in {time.perf_counter() - clock:.1f} s "
                  f"({stores[label].stat().st_size / 2**20:.1f} MiB)")  # fmt: skip
        versions = {"this": SRC} | ({"other": args.compare_with} if args.compare_with else {})
        runs: dict[tuple[str, str], list[dict[str, float]]] = {
            (version, label): [] for version in versions for label in stores
        }
        for repeat in range(args.first_view_repeats if stores else 0):
            for version, source in versions.items():
                for label, store in stores.items():
                    measured = data_requests(store, source)
                    if with_browser:
                        measured |= first_view(store, source)
                    runs[version, label].append(measured)
                    shown = ", ".join(f"{key} {value:.3f}" for key, value in measured.items())
                    print(f"{version} {label} #{repeat + 1}: {shown}")
        for version in versions if stores else ():
            print(f"\n{version} ({versions[version]}), medians of {args.first_view_repeats}:")
            print(f"{'':28}{args.baseline:>12,}{args.evaluations:>12,}   ratio")
            for key in runs[version, "baseline"][0]:
                small = statistics.median(run[key] for run in runs[version, "baseline"])
                large = statistics.median(run[key] for run in runs[version, "large"])
                print(f"{key:28}{small:12.3f}{large:12.3f}{large / small:8.2f}")
        if args.skip_search:
            return
        driver = browser()
        walls: dict[bool, list[float]] = {False: [], True: []}
        for repeat in range(args.repeats):
            for watched in (False, True):
                store = Path(folder) / f"search-{repeat}-{int(watched)}.sqlite"
                walls[watched].append(search_wall(store, watched, driver))
                print(f"search {'with' if watched else 'without'} dashboard: "
                      f"{walls[watched][-1]:.1f} s")  # fmt: skip
        alone, watched_median = statistics.median(walls[False]), statistics.median(walls[True])
        print(f"\nmedian wall: alone {alone:.1f} s, watched {watched_median:.1f} s, "
              f"ratio {watched_median / alone:.3f}")  # fmt: skip
        if driver is not None:
            driver.quit()


if __name__ == "__main__":
    main()
