"""The documented user spaces (docs/search_spaces.md, "Adding your own space") as modules a
user would write, for the tests that load and search them."""

from __future__ import annotations

import re
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from kdnas.spaces import unregister_space

DOCS = Path(__file__).resolve().parents[1] / "docs" / "search_spaces.md"

#: Module name -> the class the docs define in it.
EXAMPLES = {"toyspace": "ToyMLPSpace", "toycnn": "ToyCNNSpace"}


def documented_blocks() -> dict[str, str]:
    """The section's Python blocks by the space class each defines."""
    section = DOCS.read_text().split("## Adding your own space", 1)[1].split("\n## ", 1)[0]
    blocks = re.findall(r"```python\n(.*?)```", section, flags=re.DOTALL)
    found = {}
    for block in blocks:
        for name in EXAMPLES.values():
            if f"class {name}:" in block:
                found[name] = block
    return found


@contextmanager
def user_modules(folder: Path, extra: dict[str, str] | None = None) -> Iterator[Path]:
    """Write the documented spaces (and ``extra`` modules: name -> source) into ``folder``,
    put it on ``sys.path``, and undo everything afterwards (modules, registered spaces)."""
    blocks = documented_blocks()
    sources = {module: blocks[cls] for module, cls in EXAMPLES.items()}
    sources.update(extra or {})
    folder.mkdir(parents=True, exist_ok=True)
    for module, source in sources.items():
        (folder / f"{module}.py").write_text(source)
    sys.path.insert(0, str(folder))
    try:
        yield folder
    finally:
        sys.path.remove(str(folder))
        for module in sources:
            sys.modules.pop(module, None)
        for name in ("toy_mlp", "toy_cnn", "broken"):
            unregister_space(name)


def install_entry_point(site: Path, name: str, value: str, version: str = "0.3") -> None:
    """A ``.dist-info`` folder in ``site`` declaring ``name = value`` in the group
    ``kdnas.spaces``, as ``pip install`` writes it for a package's pyproject table."""
    info = site / f"toyspaces-{version}.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: toyspaces\nVersion: {version}\n")
    (info / "entry_points.txt").write_text(f"[kdnas.spaces]\n{name} = {value}\n")
