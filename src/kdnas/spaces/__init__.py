"""Search spaces: sampling, feature vectors, membership rules and sizes of architectures.

Nothing here imports torch; ``SearchSpace.build_network`` imports ``kdnas.models`` lazily.

Built-in spaces: "mobilenetv2" and "shufflenetv2", the paper's two. ``register_space`` adds
a user's own implementation of the ``SearchSpace`` protocol under its ``name``; ``get_space``
also finds a space named ``package.module:attribute`` and the spaces installed packages offer
in the entry-point group ``kdnas.spaces`` (``kdnas.spaces.user``).
"""

from __future__ import annotations

from kdnas.spaces.base import SearchSpace, conv_output_size, make_divisible
from kdnas.spaces.listed import BENCHMARK_COUNTS, LISTED_FILES, load_listed_architectures
from kdnas.spaces.mobilenetv2 import MobileNetV2Space
from kdnas.spaces.shufflenetv2 import ShuffleNetV2Space
from kdnas.spaces.user import (
    entry_point_space_names,
    is_space_spec,
    load_entry_point_space,
    load_space_spec,
    missing_members,
)

__all__ = [
    "BENCHMARK_COUNTS",
    "LISTED_FILES",
    "SPACE_NAMES",
    "MobileNetV2Space",
    "SearchSpace",
    "ShuffleNetV2Space",
    "conv_output_size",
    "get_space",
    "is_builtin_space",
    "load_listed_architectures",
    "make_divisible",
    "register_space",
    "space_for_benchmark_key",
    "space_identity",
    "space_names",
    "unregister_space",
]

_REGISTRY: dict[str, SearchSpace] = {}
#: Versions of spaces found by ``module:attribute`` or entry point, by the name they were
#: asked for and by their own name.
_VERSIONS: dict[str, str | None] = {}

#: Names of the built-in spaces.
SPACE_NAMES: tuple[str, ...] = ("mobilenetv2", "shufflenetv2")

_BUILTIN = {"mobilenetv2": MobileNetV2Space, "shufflenetv2": ShuffleNetV2Space}


def register_space(space: SearchSpace, *, replace: bool = False) -> None:
    """Make ``space`` available to ``get_space(space.name)`` (and so to the CLI and configs).

    Args:
        space: an object implementing the ``SearchSpace`` protocol.
        replace: allow replacing a registered space of the same name (built-ins excepted).

    Raises:
        TypeError: ``space`` lacks members of the protocol.
        ValueError: the name is empty, a built-in's, or taken and ``replace`` is False.
    """
    missing = missing_members(space)
    if missing or not isinstance(space, SearchSpace):
        raise TypeError(
            f"{type(space).__name__} does not implement SearchSpace; missing: {', '.join(missing)}"
        )
    name = space.name
    if not isinstance(name, str) or not name:
        raise ValueError(f"a search space needs a non-empty string name, got {name!r}")
    if name in _BUILTIN:
        raise ValueError(f"{name!r} is a built-in search space and cannot be replaced")
    if name in _REGISTRY and not replace:
        raise ValueError(f"a search space named {name!r} is already registered")
    _REGISTRY[name] = space


def unregister_space(name: str) -> None:
    """Remove a user-registered space, and every name it was found under (built-ins stay)."""
    if name in _BUILTIN:
        raise ValueError(f"{name!r} is a built-in search space and cannot be removed")
    space = _REGISTRY.pop(name, None)
    for alias in [key for key, value in _REGISTRY.items() if value is space]:
        del _REGISTRY[alias]
    for alias in [key for key in _VERSIONS if key == name or key not in _REGISTRY]:
        del _VERSIONS[alias]


def get_space(name: str) -> SearchSpace:
    """The search space called ``name``: built-in, registered, ``package.module:attribute``
    (a class is instantiated once), or an installed package's entry point (group
    ``kdnas.spaces``). A space found by the last two is registered under both names.

    Raises:
        ValueError: no such space (the message lists the valid names), or a space that breaks
            the protocol (the message names what is missing).
    """
    if name in _BUILTIN:
        if name not in _REGISTRY:
            _REGISTRY[name] = _BUILTIN[name]()
        return _REGISTRY[name]
    if name in _REGISTRY:
        return _REGISTRY[name]
    found = load_space_spec(name) if is_space_spec(name) else load_entry_point_space(name)
    if found is None:
        raise ValueError(f"unknown search space {name!r}; valid: {', '.join(space_names())}")
    space = found.space
    if space.name in _BUILTIN:
        raise ValueError(f"search space {name}: {space.name!r} is a built-in space's name")
    existing = _REGISTRY.get(space.name)
    if existing is not None and type(existing) is not type(space):
        raise ValueError(
            f"search space {name}: a different space named {space.name!r} is registered already"
        )
    _REGISTRY[name] = _REGISTRY[space.name] = existing or space
    _VERSIONS[name] = _VERSIONS[space.name] = found.version
    return _REGISTRY[name]


def space_names() -> list[str]:
    """What ``--space`` accepts, for help texts and errors: the built-in spaces, registered
    and installed ones, and the ``package.module:attribute`` form."""
    named = [n for n in _REGISTRY if n not in _BUILTIN and not is_space_spec(n)]
    extra = sorted(set(named) | set(entry_point_space_names()))
    return [*SPACE_NAMES, *extra, "package.module:attribute"]


def is_builtin_space(name: str) -> bool:
    """Whether ``name`` is one of kdnas's own spaces (the paper's two)."""
    return name in _BUILTIN


def space_identity(name: str) -> dict[str, str | None] | None:
    """What identifies a user's space in a run's fingerprint: its own name and version (its
    ``version`` attribute, else its distribution's); None for the built-in spaces, whose
    fingerprints predate user spaces and stay as they were."""
    if name in _BUILTIN:
        return None
    space = get_space(name)
    version = _VERSIONS.get(name, getattr(space, "version", None))
    return {"name": space.name, "version": None if version is None else str(version)}


def space_for_benchmark_key(key: str) -> SearchSpace:
    """The built-in space whose tabular-benchmark key is ``key`` ("mobilenet", "shufflenet")."""
    for name in SPACE_NAMES:
        space = get_space(name)
        if space.benchmark_key == key:
            return space
    raise ValueError(f"unknown benchmark space key {key!r}; valid: mobilenet, shufflenet")
