"""Values the store tests write (a helper module)."""

from __future__ import annotations

from kdnas.core import Architecture, EvalResult, Fidelity

ARCH = Architecture("mobilenetv2", ((1, 16, 1, 1), (6, 24, 2, 2)))
LOW = Fidelity(part=27, method="nst")


def result_for(arch: Architecture, fidelity: Fidelity, acc: float, **kw: object) -> EvalResult:
    fields: dict[str, object] = {"cost_s": 12.5, "status": "ok", "seed": 3}
    fields.update(kw)
    return EvalResult(arch.key(), fidelity, acc, acc - 0.02, **fields)  # type: ignore[arg-type]
