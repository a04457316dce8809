"""Search spaces: sampling, feature vectors, membership rules and sizes of architectures.

Nothing here imports torch; ``SearchSpace.build_network`` imports ``kdnas.models`` lazily.

Built-in spaces: "mobilenetv2" and "shufflenetv2", the paper's two. ``register_space`` adds
a user's own implementation of the ``SearchSpace`` protocol under its ``name``.
"""

from __future__ import annotations

from kdnas.spaces.base import SearchSpace, conv_output_size, make_divisible
from kdnas.spaces.listed import BENCHMARK_COUNTS, LISTED_FILES, load_listed_architectures
from kdnas.spaces.mobilenetv2 import MobileNetV2Space
from kdnas.spaces.shufflenetv2 import ShuffleNetV2Space

__all__ = [
    "BENCHMARK_COUNTS",
    "LISTED_FILES",
    "SPACE_NAMES",
    "MobileNetV2Space",
    "SearchSpace",
    "ShuffleNetV2Space",
    "conv_output_size",
    "get_space",
    "load_listed_architectures",
    "make_divisible",
    "register_space",
    "space_for_benchmark_key",
    "unregister_space",
]

_REGISTRY: dict[str, SearchSpace] = {}

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
    if not isinstance(space, SearchSpace):
        missing = [
            member
            for member in (
                "name",
                "benchmark_key",
                "feature_names",
                "features",
                "sample",
                "validate",
                "contains",
                "original",
                "parameter_count",
                "multiply_adds",
                "describe",
                "build_network",
                "feature_matrix",
            )
            if not hasattr(space, member)
        ]
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
    """Remove a user-registered space (built-ins stay)."""
    if name in _BUILTIN:
        raise ValueError(f"{name!r} is a built-in search space and cannot be removed")
    _REGISTRY.pop(name, None)


def get_space(name: str) -> SearchSpace:
    """The search space called ``name`` (built-in or registered).

    Raises:
        ValueError: no such space; the message lists the valid names.
    """
    if name in _BUILTIN:
        if name not in _REGISTRY:
            _REGISTRY[name] = _BUILTIN[name]()
        return _REGISTRY[name]
    if name in _REGISTRY:
        return _REGISTRY[name]
    valid = sorted(set(_BUILTIN) | set(_REGISTRY))
    raise ValueError(f"unknown search space {name!r}; valid: {', '.join(valid)}")


def space_for_benchmark_key(key: str) -> SearchSpace:
    """The built-in space whose tabular-benchmark key is ``key`` ("mobilenet", "shufflenet")."""
    for name in SPACE_NAMES:
        space = get_space(name)
        if space.benchmark_key == key:
            return space
    raise ValueError(f"unknown benchmark space key {key!r}; valid: mobilenet, shufflenet")
