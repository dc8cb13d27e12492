"""A scheme or method as text and as a JSON document (``verigrad scheme``).

For a linear scheme: the formula, the exact offsets and weights, the order, the first terms of
the exact truncation series, the round-off amplification ``sum|w_k| / h^q`` and the
rule-of-thumb step per dtype. For Ridders and numDeriv: the parameters, the tableau, the exact
order of its entries and the reference.
"""

from __future__ import annotations

from verigrad.schemes import NumDeriv, Ridders, Scheme, SchemeKind, default_step
from verigrad.schemes.syntax import format_value as fv
from verigrad.schemes.weights import _fmt

__all__ = ["scheme_document", "scheme_text"]


def _hpow(p: int) -> str:
    return "h" if p == 1 else f"h^{p}"


def _series(scheme: Scheme, terms: int = 3) -> str:
    q = scheme.derivative
    if scheme.kind is SchemeKind.COMPLEX_STEP:
        series = scheme.truncation_series(9)
    else:
        series = scheme.truncation_series(scheme.leading_derivative + 4 * terms)
    parts = []
    for t in series[:terms]:
        c = t.coefficient
        sign = "-" if c < 0 else "+"
        parts.append(f"{sign} {_fmt(abs(c))} f^({t.derivative})(x) {_hpow(t.derivative - q)}")
    text = " ".join(parts).lstrip("+ ").replace("- ", "-", 1) if parts else "0"
    if parts and parts[0].startswith("-"):
        text = "-" + " ".join(parts)[2:]
    return text + " + ..."


def _linear_lines(s: Scheme) -> list[tuple[str, str]]:
    q = s.derivative
    rows = [("estimates", s.formula())]
    if s.kind is SchemeKind.LINEAR:
        rows += [("offsets", ", ".join(_fmt(c) for c in s.offsets)),
                 ("weights", ", ".join(_fmt(w) for w in s.weights) + "   (exact)")]
    rows += [("order", f"{s.order} (error ~ h^{s.order})"),
             ("leading term", f"{_fmt(s.leading_coefficient)} f^({s.leading_derivative})(x) {_hpow(s.order)}"),
             ("truncation", _series(s))]
    if s.kind is SchemeKind.LINEAR:
        rows.append(("round-off", f"~ u |f| sum|w_k| / {_hpow(q)} = {_fmt(s.sum_abs_weights())} u |f| / {_hpow(q)}"
                     " (u: unit round-off of the dtype)"))
    else:
        rows.append(("round-off", "~ u |f'| (no subtraction: no 1/h arm)"))
    rows.append(("default step", ", ".join(f"{dt} {default_step(s, dt):.2g}" for dt in ("float32", "float64"))
                 + f"  (eps^(1/{s.order + q}))" if s.kind is SchemeKind.LINEAR else
                 ", ".join(f"{dt} {default_step(s, dt):.2g}" for dt in ("float32", "float64"))))
    if s.error_reference is not None:
        rows.append(("error estimate", f"|D(h) - D_ref(h)|, D_ref = {s.error_reference.formula()} "
                     f"(order {s.error_reference.order}: the previous level at the finest steps)"))
    if s.requires_analytic:
        rows.append(("needs", "f analytic (refused for abs, relu, max, ...)"))
    return rows


def _adaptive_lines(m) -> list[tuple[str, str]]:
    if isinstance(m, Ridders):
        last = m.entry_scheme((m.ntab - 1, m.ntab - 1))
        return [
            ("method", m.description),
            ("first step", "h0 = " + (fv(m.h0) if m.h0 is not None else
                                      f"the study's or [check]'s step (default {fv(m.DEFAULT_H0)})")),
            ("columns", f"h_i = h0 / {fv(m.con)}^i, i = 0..{m.ntab - 1}; a[0][i] = (f(x+h_i) - f(x-h_i)) / (2 h_i)"),
            ("tableau", f"a[j][i] = ({fv(m.con)}^(2j) a[j-1][i] - a[j-1][i-1]) / ({fv(m.con)}^(2j) - 1); "
                        "entry a[j][i] has order 2(j+1)"),
            ("returns", "the entry with the smallest max(|a[j][i]-a[j-1][i]|, |a[j][i]-a[j-1][i-1]|), "
                        "and that value as its error estimate"),
            ("stops", f"when |a[i][i] - a[i-1][i-1]| >= {fv(m.safe)} x the best error so far"),
            ("deepest entry", f"order {last.order}, leading term {float(last.leading_coefficient):.3g} "
                              f"f^({last.leading_derivative})(x) h0^{last.order}"),
            ("status", "converged / not converged (error estimate > sqrt(eps) |estimate|) / non-finite"),
            ("reference", "Numerical Recipes, 3rd ed., section 5.7 (dfridr); Ridders (1982)"),
        ]
    entry = m.entry_scheme()
    return [
        ("method", m.description),
        ("first step", f"h = |d x| + eps (|x| < zero_tol): d = {fv(m.d)}, eps = {fv(m.eps)}, "
                       f"zero_tol = {m.zero_tolerance:.6g}"),
        ("columns", f"h_k = h / {fv(m.v)}^k, k = 0..{m.r - 1}"),
        ("tableau", "a_m[k] = (4^m a_(m-1)[k+1] - a_(m-1)[k]) / (4^m - 1), m = 1.." + str(m.r - 1)),
        ("final entry", f"{entry.formula()}"),
        ("order", f"{entry.order}, leading term {_fmt(entry.leading_coefficient)} f^({entry.leading_derivative})(x) "
                  f"h^{entry.order}" + ("" if m.v == 2 or m.r == 1 else "  (v != 2: numDeriv's 4^m does not cancel)")),
        ("error estimate", "|final - previous level on the finest steps| (verigrad's; numDeriv returns none)"),
        ("reference", "R package numDeriv, grad(method=\"Richardson\") (Gilbert & Varadhan)"),
    ]


def scheme_text(method) -> str:
    """The method as an aligned text block (first line: its canonical name)."""
    rows = _linear_lines(method) if isinstance(method, Scheme) else _adaptive_lines(method)
    width = max(len(k) for k, _ in rows)
    head = method.name + (f" — {method.description}" if isinstance(method, Scheme) and method.description else "")
    return "\n".join([head] + [f"  {k.ljust(width)}  {v}" for k, v in rows])


def scheme_document(method) -> dict:
    """The method as JSON-ready data (exact numbers as strings ``p/q``)."""
    if isinstance(method, Scheme):
        doc = {"name": method.name, "kind": method.kind.value, "derivative": method.derivative,
               "formula": method.formula(), "order": method.order,
               "offsets": [_fmt(c) for c in method.offsets], "weights": [_fmt(w) for w in method.weights],
               "leading_term": {"coefficient": _fmt(method.leading_coefficient),
                                "derivative": method.leading_derivative},
               "truncation_series": [{"derivative": t.derivative, "coefficient": _fmt(t.coefficient)}
                                     for t in method.truncation_series(method.leading_derivative + 6)],
               "sum_abs_weights": _fmt(method.sum_abs_weights()),
               "default_step": {dt: default_step(method, dt) for dt in ("float32", "float64")}}
        if method.error_reference is not None:
            ref = method.error_reference
            doc["error_reference"] = {"offsets": [_fmt(c) for c in ref.offsets],
                                      "weights": [_fmt(w) for w in ref.weights], "order": ref.order}
        return doc
    params = {k: (fv(v) if hasattr(v, "denominator") and not isinstance(v, int) else v)
              for k, v in vars(method).items()}
    entry = method.entry_scheme((method.ntab - 1, method.ntab - 1)) if isinstance(method, Ridders) \
        else method.entry_scheme()
    return {"name": method.name, "kind": method.kind, "parameters": params, "description": method.description,
            "deepest_entry": scheme_document(entry)}
