"""A user's own search space, found from the command line: ``package.module:attribute`` or
the name of an entry point of the ``kdnas.spaces`` group of an installed package.

Pure Python (importlib only): loading a space imports the user's module, which should import
torch inside ``build_network`` only, as the built-in spaces do.
"""

from __future__ import annotations

import importlib
import logging
import os
import sys
from dataclasses import dataclass
from importlib import metadata
from typing import Any

__all__ = [
    "ENTRY_POINT_GROUP",
    "PROTOCOL_MEMBERS",
    "UserSpace",
    "entry_point_space_names",
    "is_space_spec",
    "load_entry_point_space",
    "load_space_spec",
    "missing_members",
]

logger = logging.getLogger(__name__)

#: Installed packages name their search spaces in this entry-point group.
ENTRY_POINT_GROUP = "kdnas.spaces"

#: What a search space must have (``kdnas.spaces.SearchSpace``), in the order a user would
#: write them: the three attributes, then the methods.
PROTOCOL_MEMBERS: tuple[str, ...] = (
    "name",
    "benchmark_key",
    "feature_names",
    "original",
    "validate",
    "contains",
    "features",
    "feature_matrix",
    "parameter_count",
    "multiply_adds",
    "sample",
    "describe",
    "build_network",
)

_ATTRIBUTES = ("name", "benchmark_key", "feature_names")


@dataclass(frozen=True)
class UserSpace:
    """A space found outside kdnas and where it came from.

    Args:
        space: the space object (an instance implementing the protocol).
        source: how it was named: the ``module:attribute`` spec or the entry point's name.
        version: the space's own ``version`` attribute, else the version of the installed
            distribution that provides it, else None.
    """

    space: Any
    source: str
    version: str | None


def is_space_spec(text: str) -> bool:
    """Whether ``text`` names a space as ``package.module:attribute``."""
    module, sep, attribute = text.partition(":")
    return bool(sep) and bool(module) and bool(attribute)


def missing_members(space: object) -> list[str]:
    """The protocol's members that ``space`` lacks (attributes present, methods callable)."""
    missing = []
    for member in PROTOCOL_MEMBERS:
        if not hasattr(space, member):
            missing.append(member)
        elif member not in _ATTRIBUTES and not callable(getattr(space, member)):
            missing.append(f"{member} (not callable)")
    return missing


def _as_space(value: object, source: str) -> Any:
    """``value`` as a space instance: a class (or zero-argument factory) is called once.

    Raises:
        ValueError: calling it failed, or the result lacks protocol members (the message
            names them).
    """
    candidate = value
    if isinstance(value, type) or (callable(value) and not hasattr(value, "sample")):
        try:
            candidate = value()
        except Exception as error:  # the user's constructor: any failure is input
            raise ValueError(
                f"search space {source}: calling {getattr(value, '__name__', value)}() "
                f"failed: {type(error).__name__}: {error}"
            ) from None
    missing = missing_members(candidate)
    if missing:
        raise ValueError(
            f"search space {source} ({type(candidate).__name__}) does not implement the "
            f"SearchSpace protocol; missing: {', '.join(missing)}"
        )
    name = candidate.name
    if not isinstance(name, str) or not name or ":" in name:
        raise ValueError(
            f"search space {source}: name must be a non-empty string without ':', got {name!r}"
        )
    return candidate


def _version_of(space: object, distribution: str | None) -> str | None:
    own = getattr(space, "version", None)
    if own is not None:
        return str(own)
    if distribution is not None:
        try:
            return metadata.version(distribution)
        except metadata.PackageNotFoundError:
            return None
    return None


def _distribution_of(module: str) -> str | None:
    top = module.split(".")[0]
    names = metadata.packages_distributions().get(top)
    return names[0] if names else None


def load_space_spec(spec: str) -> UserSpace:
    """The space named by ``package.module:attribute`` (``attribute`` may be dotted).

    The module is imported as Python would (``sys.path``); when it is not found there, the
    current directory is tried too, so ``--space myspace:MySpace`` finds ``./myspace.py``
    from the ``kdnas`` command as it would from ``python -m kdnas``.

    Raises:
        ValueError: the module cannot be imported, the attribute is absent, or the object
            breaks the protocol (one line each, naming what is wrong).
    """
    module_name, _, attribute = spec.partition(":")
    try:
        module = _import(module_name)
    except ModuleNotFoundError as error:
        raise ValueError(
            f"search space {spec}: no module named {error.name!r} (is it installed, or in the "
            f"current directory?)"
        ) from None
    except Exception as error:  # the user's module failed while importing
        raise ValueError(
            f"search space {spec}: importing {module_name} failed: {type(error).__name__}: {error}"
        ) from None
    value: object = module
    for part in attribute.split("."):
        if not hasattr(value, part):
            raise ValueError(f"search space {spec}: {module_name} has no attribute {attribute!r}")
        value = getattr(value, part)
    space = _as_space(value, spec)
    return UserSpace(space, spec, _version_of(space, _distribution_of(module_name)))


def _import(module_name: str) -> Any:
    try:
        return importlib.import_module(module_name)
    except ModuleNotFoundError as error:
        here = os.getcwd()
        top = module_name.split(".")[0]
        if error.name != top or here in sys.path or "" in sys.path:
            raise
        sys.path.append(here)
        return importlib.import_module(module_name)


def entry_point_space_names() -> list[str]:
    """Names of the spaces installed packages offer (entry-point group ``kdnas.spaces``)."""
    return sorted({point.name for point in metadata.entry_points(group=ENTRY_POINT_GROUP)})


def load_entry_point_space(name: str) -> UserSpace | None:
    """The space of the installed entry point ``name``, or None when there is none.

    Raises:
        ValueError: the entry point cannot be loaded or breaks the protocol, or its space's
            ``name`` differs from the entry point's (architectures carry the space's name).
    """
    points = [p for p in metadata.entry_points(group=ENTRY_POINT_GROUP) if p.name == name]
    if not points:
        return None
    point = points[0]
    source = f"{name} (entry point {point.value})"
    try:
        value = point.load()
    except Exception as error:  # a broken plugin: say which, in one line
        raise ValueError(
            f"search space {source} could not be loaded: {type(error).__name__}: {error}"
        ) from None
    space = _as_space(value, source)
    if space.name != name:
        raise ValueError(
            f"search space {source}: the entry point's name must equal the space's name "
            f"{space.name!r}"
        )
    distribution = point.dist.name if point.dist is not None else None
    return UserSpace(space, name, _version_of(space, distribution))
