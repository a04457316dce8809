"""Reading pickles that may only hold plain data (dicts, lists, tuples, numbers, strings).

The paper's released files are such pickles. A pickle can name any importable callable
(``os.system``, say) and have it run during loading; ``load_plain_pickle`` refuses every
global reference before anything is called, so a hostile file is rejected harmlessly.
"""

from __future__ import annotations

import importlib
import io
import pickle
from pathlib import Path
from typing import Any

__all__ = ["UnsafePickleError", "load_array_pickle", "load_plain_pickle"]


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


# The only globals a pickle of numpy arrays needs (numpy 1.x and 2.x spellings). Each of them
# builds an array, a scalar (numpy integers in a list of labels) or a dtype from plain data;
# nothing else can be called.
_NUMPY_ARRAY_GLOBALS: frozenset[tuple[str, str]] = frozenset(
    {
        ("numpy.core.multiarray", "_reconstruct"),
        ("numpy._core.multiarray", "_reconstruct"),
        ("numpy.core.multiarray", "scalar"),
        ("numpy._core.multiarray", "scalar"),
        ("numpy.core.numeric", "_frombuffer"),
        ("numpy._core.numeric", "_frombuffer"),
        ("numpy", "ndarray"),
        ("numpy", "dtype"),
    }
)


def _encode_latin1(text: str, encoding: str = "latin1") -> bytes:
    if encoding not in ("latin1", "latin-1"):
        raise UnsafePickleError(f"refuses to encode with {encoding!r}: only latin1 is accepted")
    return text.encode("latin1")


class _ArrayDataUnpickler(_PlainDataUnpickler):
    def find_class(self, module: str, name: str) -> Any:
        if (module, name) == ("_codecs", "encode"):
            # Python 3 writes bytes at protocol 2 as encode(text, "latin1").
            return _encode_latin1
        if (module, name) not in _NUMPY_ARRAY_GLOBALS:
            return super().find_class(module, name)
        import numpy as np

        if name == "ndarray":
            return np.ndarray
        if name == "dtype":
            return np.dtype
        try:
            core = importlib.import_module("numpy._core." + module.rsplit(".", 1)[-1])
        except ImportError:  # numpy < 2 has no numpy._core
            core = importlib.import_module("numpy.core." + module.rsplit(".", 1)[-1])
        return getattr(core, name)


def load_array_pickle(data: bytes, source: str, encoding: str = "latin1") -> Any:
    """Load a pickle of plain data and numpy arrays (CIFAR's python batches, for example).

    Besides plain data it admits only the numpy functions that rebuild an array or a dtype;
    every other global is refused before anything is called. ``encoding`` decodes Python 2
    byte strings (CIFAR's batches were written by Python 2; "latin1" keeps array bytes intact).

    Args:
        data: the pickle's bytes.
        source: what the bytes are (a path, an archive member), for error messages.

    Raises:
        UnsafePickleError: the pickle names another global, or is truncated or corrupt.
    """
    try:
        return _ArrayDataUnpickler(io.BytesIO(data), encoding=encoding).load()
    except UnsafePickleError as error:
        raise UnsafePickleError(f"{source}: {error}") from None
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
        raise UnsafePickleError(f"{source}: {kind} or not a pickle ({error})") from None
