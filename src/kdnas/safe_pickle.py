"""Reading pickles that may only hold plain data (dicts, lists, tuples, numbers, strings).

The paper's released files are such pickles. A pickle can name any importable callable
(``os.system``, say) and have it run during loading; ``load_plain_pickle`` refuses every
global reference before anything is called, so a hostile file is rejected harmlessly.
"""

from __future__ import annotations

import io
import pickle
from pathlib import Path
from typing import Any

__all__ = ["UnsafePickleError", "load_plain_pickle"]


class UnsafePickleError(ValueError):
    """The file is not a plain-data pickle (hostile, corrupt or of another kind)."""


class _PlainDataUnpickler(pickle.Unpickler):
    def find_class(self, module: str, name: str) -> Any:
        raise UnsafePickleError(
            f"refuses to load the global {module}.{name}: only plain data "
            "(dicts, lists, numbers, strings) is accepted"
        )

    def persistent_load(self, pid: Any) -> Any:
        raise UnsafePickleError("refuses persistent references: only plain data is accepted")


def load_plain_pickle(path: str | Path) -> Any:
    """Load a pickle made only of plain Python data, refusing any class or function reference.

    Raises:
        FileNotFoundError: the file does not exist.
        UnsafePickleError: the file names a global, or is truncated or not a pickle at all.
            The message names the file and the problem in one line.
    """
    path = Path(path)
    data = path.read_bytes()
    try:
        return _PlainDataUnpickler(io.BytesIO(data)).load()
    except UnsafePickleError as error:
        raise UnsafePickleError(f"{path}: {error}") from None
    except (
        pickle.UnpicklingError,
        EOFError,
        ValueError,
        TypeError,
        IndexError,
        KeyError,
        AttributeError,
        MemoryError,
        OverflowError,
    ) as error:
        kind = "truncated" if isinstance(error, EOFError) else "corrupt"
        raise UnsafePickleError(f"{path}: {kind} or not a pickle ({error})") from None
