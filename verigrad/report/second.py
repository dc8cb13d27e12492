"""Second-order reports: the certified Hessian (``verigrad truth --hessian``: text and JSON) and the
lines a second-order result adds to ``run`` reports (kind, direction seed, symmetry, kinks,
second-order bug shapes). Formatting only: the numbers come from
:class:`verigrad.engine.hessian.HessianTruth` and ``Result.extra["second_order"]``."""

from __future__ import annotations

import numpy as np

__all__ = ["hessian_lines", "hessian_record", "second_order_lines", "HESSIAN_TABLE_ENTRIES"]

#: matrices with at most this many rows print every entry (the JSON always has every entry)
HESSIAN_TABLE_ENTRIES = 12


def _labels(ht) -> list[str]:
    out = []
    for name, (a, b) in ht.offsets.items():
        shape = tuple(ht.shapes[name])
        for k in range(b - a):
            idx = np.unravel_index(k, shape) if shape else ()
            out.append(name + (f"[{', '.join(str(int(i)) for i in idx)}]" if shape else ""))
    return out


def hessian_lines(ht, *, verbose: bool = False, digits: int = 10) -> list[str]:
    """Plain lines: a header (size, backend, symmetry, exact zeros), then the matrix (small or ``verbose``)
    with ``digits`` significant digits, or the diagonal and the largest entries."""
    from verigrad.engine.truth import format_dd

    n = ht.size
    pairs = n * (n - 1) // 2
    sym = ("symmetric: the certified balls of H_ij and H_ji overlap for all "
           f"{pairs:,} pairs ({ht.exactly_symmetric:,} exactly equal)" if ht.symmetric else
           f"NOT symmetric within the certificates at {len(ht.asymmetric)} pairs "
           f"(first {list(ht.asymmetric[0])}): a defect of the exact machinery, please report it")
    lines = [f"{ht.case} · {ht.dtype.value} point · Hessian {n} × {n} · {ht.digits} certified digits per column "
             f"({ht.backend}, {ht.seconds * 1e3:.0f} ms)",
             sym,
             f"exact zeros: {int(ht.exact_zero.sum()):,} of {n * n:,} entries"]
    labels = _labels(ht)
    text = format_dd(ht.hi, ht.lo, digits)
    if verbose or n <= HESSIAN_TABLE_ENTRIES:
        width = max(len(s) for s in labels)
        cell = max(len(s) for s in text.ravel())
        lines.append(" " * (width + 2) + "  ".join(s.rjust(cell) for s in labels))
        for i in range(n):
            lines.append(labels[i].ljust(width + 2) + "  ".join(s.rjust(max(cell, len(labels[j])))
                                                             for j, s in enumerate(text[i])))
        return lines
    lines.append("diagonal: " + ", ".join(f"{labels[i]} {text[i, i]}" for i in range(min(n, 8)))
                 + (" ..." if n > 8 else "") + "   (every entry: -v or --json)")
    flat = np.argsort(-np.abs(ht.hi), axis=None)[:5]
    lines.append("largest: " + ", ".join(f"H[{labels[k // n]}, {labels[k % n]}] {text.reshape(-1)[k]}"
                                         for k in flat.tolist()))
    return lines


def hessian_record(ht) -> dict:
    """The JSON form (every entry as a decimal string with the certified digits)."""
    from verigrad.engine.truth import format_dd

    return {"n": ht.size, "variables": {n: {"offset": a, "shape": list(ht.shapes[n])} for n, (a, _b) in
                                        ht.offsets.items()},
            "digits": ht.digits, "backend": ht.backend, "symmetric": ht.symmetric,
            "asymmetric_pairs": [list(p) for p in ht.asymmetric], "exactly_symmetric_pairs": ht.exactly_symmetric,
            "exact_zeros": int(ht.exact_zero.sum()),
            "entries": format_dd(ht.hi, ht.lo, ht.digits).tolist()}


def second_order_lines(extra: dict | None) -> list[str]:
    """What a second-order result adds to the verbose and failure blocks of ``run``."""
    so = (extra or {}).get("second_order")
    if not so:
        return []
    head = f"second order: {so.get('kind')}"
    if "vector_seed" in so:
        head += (f"; direction v ~ N(0, 1) from numpy.random.default_rng({so['vector_seed']}), "
                 f"|v| = {so.get('vector_norm', float('nan')):.4g}")
    if so.get("diagonal_only"):
        head += (f"; exact diagonal of {so['n']:,} entries (one certified HVP per entry, without the full "
                 f"Hessian), {so.get('exact_zeros', 0)} exact zeros")
    elif "n" in so:
        head += (f"; exact Hessian {so['n']} × {so['n']}, "
                 f"{'symmetric within its certificates' if so.get('symmetric') else 'NOT symmetric'}, "
                 f"{so.get('exact_zeros', 0)} exact zeros")
    lines = [head]
    classic = so.get("classic")
    if classic:
        said = "pass" if classic["classic_pass"] else "fail"
        why = {"agree": "agrees with the exact grade", "false alarm": "a FALSE ALARM on a correct candidate",
               "missed bug": "a MISSED BUG"}.get(classic["outcome"], classic["outcome"])
        lines.append(f"a gradgradcheck-style check (central differences of the gradient, eps = {classic['eps']:g}, "
                     f"allclose rtol = {classic['rtol']:g}, atol = {classic['atol']:g}) would say {said}: {why}")
    lines.extend(d["message"] for d in so.get("diagnosis", []))
    lines.extend(so.get("kinks", []))
    return lines
