"""Reading the paper's listed architectures (random_arcs_*.pickle) in benchmark order."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from kdnas.core import Architecture
from kdnas.safe_pickle import load_plain_pickle
from kdnas.spaces.mobilenetv2 import MobileNetV2Space
from kdnas.spaces.shufflenetv2 import ShuffleNetV2Space

__all__ = ["BENCHMARK_COUNTS", "DATA_ENV_VAR", "LISTED_FILES", "load_listed_architectures"]

#: space name -> file name of its listed architectures in the paper's repository.
LISTED_FILES: dict[str, str] = {
    "mobilenetv2": "random_arcs_mobilenetv2.pickle",
    "shufflenetv2": "random_arcs_shufflenetv2.pickle",
}
#: space name -> how many of the listed architectures the tabular benchmark evaluates
#: (the first ones of the file, benchmark index i = list element i).
BENCHMARK_COUNTS: dict[str, int] = {"mobilenetv2": 100, "shufflenetv2": 300}


#: Environment variable naming the folder that holds the paper's files (benchmark.pickle and
#: random_arcs_*.pickle), the default of ``load_listed_architectures``.
DATA_ENV_VAR = "KDNAS_DATA"


def _default_dir() -> Path:
    folder = os.environ.get(DATA_ENV_VAR)
    if not folder:
        raise FileNotFoundError(
            f"no folder of the paper's listed architectures given: pass it, or set "
            f"${DATA_ENV_VAR} to the folder holding random_arcs_*.pickle (from "
            "github.com/IlyaTrofimov/MF_NAS_KD)"
        )
    return Path(folder).expanduser()


def load_listed_architectures(
    space_name: str, path_or_dir: str | Path | None = None, count: int | None = None
) -> list[Architecture]:
    """The paper's listed architectures of a space, in benchmark order.

    Args:
        space_name: "mobilenetv2" or "shufflenetv2".
        path_or_dir: the pickle itself, or the folder holding it (random_arcs_<space>.pickle);
            None reads the folder named by ``$KDNAS_DATA``.
        count: how many to return from the start of the list; None gives the benchmark's
            architectures (100 MobileNetV2, 300 ShuffleNetV2).

    Raises:
        ValueError: unknown space, bad count, or malformed file content (the message names
            the file and the problem). ``kdnas.safe_pickle.UnsafePickleError`` (a ValueError)
            for a pickle naming any class or function.
        FileNotFoundError: the file does not exist (or no path and no ``$KDNAS_DATA``).
    """
    if space_name not in LISTED_FILES:
        raise ValueError(
            f"no listed architectures for space {space_name!r}; valid: {', '.join(LISTED_FILES)}"
        )
    path = Path(path_or_dir) if path_or_dir is not None else _default_dir()
    if path.is_dir():
        path = path / LISTED_FILES[space_name]
    if not path.is_file():
        raise FileNotFoundError(
            f"{path}: the paper's {LISTED_FILES[space_name]} is not there (download it from "
            "github.com/IlyaTrofimov/MF_NAS_KD and pass its path)"
        )
    count = BENCHMARK_COUNTS[space_name] if count is None else count
    if isinstance(count, bool) or not isinstance(count, int) or count < 0:
        raise ValueError(f"count must be an integer >= 0, got {count!r}")
    data: Any = load_plain_pickle(path)
    if not isinstance(data, list):
        raise ValueError(f"{path}: expected a list of architectures, got {type(data).__name__}")
    if count > len(data):
        raise ValueError(f"{path}: holds {len(data)} architectures, fewer than count={count}")
    convert = (
        MobileNetV2Space.from_paper
        if space_name == "mobilenetv2"
        else ShuffleNetV2Space.from_paper
    )
    archs = []
    for index, entry in enumerate(data[:count]):
        try:
            archs.append(convert(entry))
        except (ValueError, TypeError) as error:
            raise ValueError(f"{path}: entry {index} is malformed: {error}") from None
    return archs
