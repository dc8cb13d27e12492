"""Vectorised double-double arithmetic with rigorous float64 error bounds.

A double-double (dd) number is an unevaluated sum ``hi + lo`` of two float64 numbers.
Every function here works elementwise on numpy float64 arrays (numpy broadcasting
applies) and returns the dd result ``(hi, lo)`` *and* a float64 array ``err`` that is a
proved upper bound of ``|exact result of the operation on the exact inputs - (hi + lo)|``.
Ball operations (midpoint in dd, float64 radius) are built on these in
:mod:`verigrad.engine.fastball`.

Conventions used in every proof below
-------------------------------------
* ``u = 2**-53`` is the unit roundoff of float64 (round to nearest, ties to even).
  numpy performs each ufunc call as one correctly rounded IEEE operation per element; no
  two ufunc calls are ever fused (no FMA contraction across calls), so the model
  ``fl(a op b) = (a op b)(1 + d), |d| <= u`` holds for every ``+ - * /`` and ``sqrt`` in the
  normal range.  In the subnormal range a product or quotient has an additional absolute
  error of at most ``eta/2 = 2**-1075``; sums and differences are exact there.
* ``gamma_n = n u / (1 - n u)``; ``prod_{i<=n} (1 + d_i)^{+-1}`` lies in ``[1 - gamma_n, 1 + gamma_n]``.
* A dd pair is *normalised* when ``hi = fl(hi + lo)``, hence ``|lo| <= u |hi|`` and ``hi = 0``
  implies ``lo = 0``.  Every function returns normalised pairs (the last step is an
  error-free :func:`two_sum`) and assumes normalised inputs.
* **Range precondition.** The callers (the ball evaluator) refuse any value whose ``hi`` is
  non-zero with ``|hi|`` outside ``[2**-900, 2**900]`` and any product whose float
  product would leave that range; under it :func:`two_prod` is exact (Dekker/Veltkamp:
  exact when no overflow and ``e_a + e_b >= -970``, i.e. ``|ab| >= 2**-968``; the split
  needs ``|a| < 2**995``), which is what the bounds below use.  Bounds themselves are valid
  whatever the range, because each is rounded up by :func:`up`, which also covers
  underflow.
* **Upward rounding.** A bound is an expression of at most ``m <= 256`` float operations on
  non-negative numbers, each with relative error at most ``u``; the computed value ``v``
  then satisfies ``exact <= v (1 - u)^-m + m eta``.  :func:`up` returns
  ``fl(v * UP)`` with ``UP = 1 + 2**-44``, plus ``TINY = 2**-1060`` where ``v < 2**-1000`` and
  the expression contains a product of non-zero numbers: since
  ``(1 - u)^-(m + 1) <= 1 + 257 u < 1 + 2**-44`` and ``257 eta < 2**-1060``, the result is a
  proved upper bound (see :func:`up` for why ``v >= 2**-1000`` needs no absolute term).  Every ``err`` returned here has been passed through :func:`up`.
"""

from __future__ import annotations

import numpy as np

__all__ = ["U", "UP", "DOWN", "TINY", "up", "two_sum", "fast_two_sum", "split", "two_prod", "two_square", "two_prod_const",
           "add", "add_float", "sqr", "sub", "mul", "square", "div", "sqrt", "pow_int", "gamma", "lower_pos"]

#: unit roundoff of float64
U = 2.0 ** -53
#: upward safety factor, covering (1 - u)^-m for bound expressions of m <= 256 operations
UP = 1.0 + 2.0 ** -44
#: downward factor: fl(x * DOWN) <= x (1 - 2**-45) for normal x >= 0
DOWN = 1.0 - 2.0 ** -44
#: absolute term covering the underflow errors (<= 2**-1075 each) of up to 2**14 operations
TINY = 2.0 ** -1060
_SPLITTER = 134217729.0  # 2**27 + 1


def up(v: np.ndarray, maybe: np.ndarray | bool = True) -> np.ndarray:
    """Round a computed non-negative bound upwards (see the module Notes).

    Parameters
    ----------
    v : ndarray of float64, >= 0
        The float evaluation of a bound expression of at most 256 operations.
    maybe : bool or ndarray of bool, or a callable returning one
        Where the expression contains a product or quotient of non-zero numbers (so that an
        underflow may have lost up to ``eta/2`` per operation).  A callable is called only when
        some ``v < 2**-1000`` (the mask is then needed), which saves its cost on the common path.  False for expressions of
        additions only, and where every product has an exactly-zero factor (such products are
        exact), so that exact zeros stay exact.

    Returns
    -------
    ndarray of float64
        ``fl(v * UP)``, plus ``TINY`` where ``maybe`` and ``v < 2**-1000``.

    Notes
    -----
    Where ``v >= 2**-1000`` the underflow errors need no absolute term: ``fl(v UP) >=
    v (1 + 2**-44)(1 - u) >= v (1 - u)^-256 + v 2**-46`` and ``v 2**-46 >= 2**-1046`` exceeds the
    at most ``256 eta (1 - u)^-256 < 2**-1065`` that underflows can add to the exact value.
    """
    out = v * UP
    return _tiny(out, v, maybe)


def up_inplace(v: np.ndarray, maybe: np.ndarray | bool = True) -> np.ndarray:
    """:func:`up` written into ``v`` (a temporary of the caller's, an ndarray); the same value."""
    if type(v) is not np.ndarray or not v.flags.writeable:
        return up(v, maybe)
    small = None if maybe is False else v < 2.0 ** -1000
    v *= UP
    return _tiny(v, None, maybe, small)


def _tiny(out, v, maybe, small=None):
    """``out`` plus ``TINY`` where ``maybe`` and the unrounded bound is below ``2**-1000``."""
    if maybe is not False:
        if small is None:
            small = v < 2.0 ** -1000
        if small.any():  # rare: only then is the (possibly costly) mask evaluated
            if callable(maybe):
                maybe = maybe()
            out += np.where(small & maybe, TINY, 0.0)
    return out


def gamma(n: int) -> float:
    """An upper bound (float) of ``gamma_n = n u / (1 - n u)``, for ``n u < 1/2``.

    Computed in exact rational arithmetic (Python ints) and rounded up, so no float rounding
    is involved.
    """
    from fractions import Fraction

    n = int(n)
    if n * 2 >= 2**53:
        raise ValueError("n too large for gamma_n")
    g = Fraction(n, 2**53 - n)
    f = float(g)
    if Fraction(f) < g:
        f = np.nextafter(f, np.inf)
    return float(f)


def two_sum(a: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Error-free sum (Knuth): ``s + e = a + b`` exactly, ``s = fl(a + b)``.

    Notes
    -----
    Exact for all finite inputs whose sum does not overflow (Knuth 1969; underflow cannot
    make a sum inexact).  6 float operations.
    """
    s = a + b
    bb = s - a
    e = s - bb
    if type(e) is not np.ndarray or type(bb) is not np.ndarray:  # numpy scalars (0-d inputs)
        return s, (a - e) + (b - bb)
    np.subtract(a, e, out=e)  # in place: the same operations, fewer temporaries
    np.subtract(b, bb, out=bb)
    e += bb
    return s, e


def fast_two_sum(a: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Error-free sum (Dekker) assuming ``|a| >= |b|`` or ``a = 0`` elementwise: ``s + e = a + b``.

    Notes
    -----
    Exact when the exponent of ``a`` is at least that of ``b`` (in particular when
    ``|a| >= |b|``) and nothing overflows.  3 float operations.
    """
    s = a + b
    e = b - (s - a)
    return s, e


def split(a: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Veltkamp split: ``a = ah + al`` exactly, each with at most 26 significant bits.

    Notes
    -----
    Exact for ``|a| < 2**995`` (the product by ``2**27 + 1`` must not overflow).
    """
    c = a * _SPLITTER
    t = c - a
    if type(t) is not np.ndarray:  # numpy scalars (0-d inputs)
        ah = c - t
        return ah, a - ah
    np.subtract(c, t, out=c)  # ah = c - (c - a), in place
    np.subtract(a, c, out=t)  # al = a - ah
    return c, t


def two_prod(a: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Error-free product (Dekker): ``p + e = a b`` exactly, ``p = fl(a b)``.

    Notes
    -----
    Exact when ``|a|, |b| < 2**995``, ``|ab| < 2**1023`` and ``|ab| >= 2**-968`` or
    ``ab = 0`` (Dekker 1971; Boldo 2006: the condition is ``e_a + e_b >= emin + p - 1``).
    The callers guarantee this by the range precondition of the module Notes.
    """
    p = a * b
    ah, al = split(a)
    bh, bl = split(b)
    e = ah * bh
    if type(e) is not np.ndarray or type(ah) is not np.ndarray or type(bh) is not np.ndarray \
            or e.shape != ah.shape or e.shape != bh.shape:  # scalars, broadcasting
        return p, ((ah * bh - p) + ah * bl + al * bh) + al * bl
    # ((ah bh - p) + ah bl + al bh) + al bl, the same operations in the same order, in place
    e -= p
    np.multiply(ah, bl, out=ah)
    e += ah
    np.multiply(al, bh, out=bh)
    e += bh
    np.multiply(al, bl, out=al)
    e += al
    return p, e


def two_square(a: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Error-free square: :func:`two_prod` ``(a, a)`` with one split, bitwise the same result.

    Notes
    -----
    With ``ah, al = split(a)``, :func:`two_prod` computes ``fl(ah al) + fl(al ah)``, which equals
    ``2 fl(ah al)`` exactly (doubling is exact); the other operations are the same, so the
    exactness conditions of :func:`two_prod` apply.
    """
    p = a * a
    ah, al = split(a)
    if type(ah) is not np.ndarray or type(al) is not np.ndarray:  # numpy scalars (0-d inputs)
        return p, ((ah * ah - p) + 2 * (ah * al)) + al * al
    t = ah * al
    t += t
    e = ah * ah
    e -= p
    e += t
    al *= al
    e += al
    return p, e


def two_prod_const(a: np.ndarray, c: float) -> tuple[np.ndarray, np.ndarray]:
    """Error-free product by a float constant: :func:`two_prod` ``(a, c)`` with ``c`` split once.

    Notes
    -----
    The split of ``c`` is computed once (in numpy, as :func:`split` does); when its low part is 0
    (``c`` has at most 26 significant bits: small integers, short decimals times powers of two)
    the terms ``ah * 0`` and ``al * 0`` of :func:`two_prod` are zeros and are left out, which does not
    change the value.  The exactness conditions of :func:`two_prod` apply.
    """
    ch, cl = (float(v) for v in split(np.array(c, dtype=np.float64)))
    p = a * c
    ah, al = split(a)
    e = ah * ch
    if type(e) is not np.ndarray:  # numpy scalars (0-d inputs)
        return two_prod(a, np.float64(c))
    e -= p
    if cl != 0.0:
        e += ah * cl
    al_c = al * ch
    e += al_c
    if cl != 0.0:
        al *= cl
        e += al
    return p, e


def two_diff(a: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Error-free difference: ``s + e = a - b`` exactly, bitwise :func:`two_sum` ``(a, -b)``.

    Notes
    -----
    :func:`two_sum` with ``-b`` computes ``e = (a - (s - bb)) + (-b - bb)``; negation is exact and
    rounding is symmetric, so ``fl(-b - bb) = -fl(b + bb)`` and the last step is ``(a - (s - bb)) - (b + bb)``.
    """
    s = a - b
    bb = s - a
    e = s - bb
    if type(e) is not np.ndarray or type(bb) is not np.ndarray:  # numpy scalars (0-d inputs)
        return s, (a - e) - (b + bb)
    np.subtract(a, e, out=e)
    np.add(b, bb, out=bb)
    e -= bb
    return s, e


def float_sub(b, ah, al) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """dd difference ``b - (ah + al)`` of a float and a dd: bitwise :func:`add_float` ``(-ah, -al, b)``.

    Notes
    -----
    ``s, e = two_diff(b, ah)``; ``f, ef = two_diff(e, al)``; ``hi, lo = two_sum(s, f)`` are the
    operations of :func:`add_float` on ``(-ah, -al, b)`` (``two_sum(-ah, b)`` and ``two_diff(b, ah)``
    give the same ``s`` and ``e`` as ``two_sum(b, -ah)``: Knuth's TwoSum is symmetric in its operands);
    the bound is the same, ``err = up(|ef|)``.
    """
    s, e = two_diff(b, ah)
    f, ef = two_diff(e, al)
    hi, lo = two_sum(s, f)
    return hi, lo, up(np.abs(ef), maybe=False)


def add_float(ah, al, b) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """dd sum ``(ah + al) + b`` of a dd and a float: :func:`add` with ``bl = 0``.

    Notes
    -----
    With ``bl = 0``, :func:`add`'s ``two_sum(al, 0)`` is ``(al, 0)`` exactly, so the algorithm is
    ``s, e = two_sum(ah, b)``; ``f, ef = two_sum(e, al)``; ``hi, lo = two_sum(s, f)``, error free
    except for the dropped ``ef``: ``err = up(|ef|)`` (no product: no underflow term).
    """
    s, e = two_sum(ah, b)
    f, ef = two_sum(e, al)
    hi, lo = two_sum(s, f)
    return hi, lo, up(np.abs(ef), maybe=False)


def sqr(ah, al) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """dd square ``(ah + al)**2``: the algorithm and bound of :func:`mul` with ``b = a``, fewer operations.

    Notes
    -----
    :func:`mul` with ``bh = ah``, ``bl = al`` computes ``p, e = two_prod(ah, ah)`` (here
    :func:`two_square`, the same values), ``c = fl(fl(ah al) + fl(al ah)) = 2 fl(ah al)`` (doubling
    is exact), ``f, ef = two_sum(e, c)``, ``hi, lo = two_sum(p, f)`` and the bound
    ``err = up(|ef| + al^2 + 2.01 u X)`` with ``X = 2 |ah| |al|``; the same numbers are computed
    here.  The mask of :func:`up` (a product of non-zero numbers) is ``al != 0`` (then ``ah != 0``
    for a normalised pair).
    """
    p, e = two_square(ah)
    c = np.asarray(ah * al)
    c = c + c
    f, ef = two_sum(e, c)
    hi, lo = two_sum(p, f)
    v = np.abs(ef) + np.abs(c) * (2.01 * U)  # |c| = fl(2 |ah||al|) = X exactly as mul computes it
    v += al * al
    err = up(v, maybe=lambda: al != 0)
    return hi, lo, err


def add(ah, al, bh, bl) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """dd sum ``(ah + al) + (bh + bl)``.

    Returns
    -------
    hi, lo : ndarray of float64
        Normalised dd result.
    err : ndarray of float64
        Upper bound of ``|(ah + al + bh + bl) - (hi + lo)|``.

    Notes
    -----
    Algorithm: ``s, e = two_sum(ah, bh)``; ``t, et = two_sum(al, bl)``;
    ``f, ef = two_sum(e, t)``; ``hi, lo = two_sum(s, f)``.  Every step is error free, so
    the exact sum is ``hi + lo + et + ef``: the only dropped quantities are ``et`` and
    ``ef``, which are *computed exactly*, and ``err = up(|et| + |ef|)`` (one addition, no
    underflow error).  ``err`` is exactly 0 whenever the result is exact (e.g. when
    ``al = bl = 0``).  A priori, ``|et| <= u |al + bl| <= u^2 (|ah| + |bh|)`` and
    ``|ef| <= u |e + t| <= 2.01 u^2 (|ah| + |bh|)``.
    """
    s, e = two_sum(ah, bh)
    t, et = two_sum(al, bl)
    f, ef = two_sum(e, t)
    hi, lo = two_sum(s, f)
    err = up(np.abs(et) + np.abs(ef), maybe=False)
    return hi, lo, err


def sub(ah, al, bh, bl) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """dd difference ``(ah + al) - (bh + bl)``; the bound of :func:`add` (negation is exact)."""
    return add(ah, al, -bh, -bl)


def mul(ah, al, bh, bl) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """dd product ``(ah + al)(bh + bl)``.

    Returns
    -------
    hi, lo : ndarray of float64
        Normalised dd result.
    err : ndarray of float64
        Upper bound of ``|(ah + al)(bh + bl) - (hi + lo)|``.

    Notes
    -----
    Algorithm: ``p, e = two_prod(ah, bh)`` (exact by the range precondition);
    ``c = fl(fl(ah bl) + fl(al bh))``; ``f, ef = two_sum(e, c)``; ``hi, lo = two_sum(p, f)``.
    The exact product is ``p + e + ah bl + al bh + al bl``; the computed pair equals
    ``p + e + c + ef`` exactly, so the error is ``|(ah bl + al bh - c) + al bl - ef|``
    with ``|ah bl + al bh - c| <= u|ah bl| + u|al bh| + u|fl(ah bl) + fl(al bh)|
    <= (2 + u) u X``, ``X = |ah||bl| + |al||bh|``.  Hence
    ``err = up(|ef| + |al||bl| + 2.01 u X)`` (the products there are of non-zero numbers only
    where ``al`` or ``bl`` is non-zero: that is the ``maybe`` of :func:`up`).  ``err = 0`` when ``al = bl = 0``
    and ``ef = 0``.  A priori ``err <= 9 u^2 |ah bh|``.
    """
    p, e = two_prod(ah, bh)
    t1 = np.asarray(ah * bl)
    t2 = np.asarray(al * bh)
    c = t1 + t2
    f, ef = two_sum(e, c)
    hi, lo = two_sum(p, f)
    # |ah||bl| = |fl(ah bl)| and |al||bh| = |fl(al bh)| exactly (rounding is symmetric): reuse the products
    x = np.abs(t1) + np.abs(t2)
    v = np.abs(ef) + np.abs(al * bl)
    v += x * (2.01 * U)
    err = up_inplace(v, maybe=lambda: ((al != 0) & (bh != 0)) | ((bl != 0) & (ah != 0)))
    return hi, lo, err


def mul_float(ah, al, b) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """dd times float, ``(ah + al) b``: :func:`mul` with ``bl = 0``.

    Notes
    -----
    ``p, e = two_prod(ah, b)`` (exact); ``t = fl(al b)``; ``f, ef = two_sum(e, t)``;
    ``hi, lo = two_sum(p, f)``.  The exact product is ``p + e + al b`` and the pair equals
    ``p + e + t + ef``, so the error is ``|al b - t - ef| <= u |t| + |ef|`` (``|al b - t| <= u|t|``
    in the normal range; the underflow case is the ``maybe`` term of :func:`up`, where ``al b != 0``):
    ``err = up(|ef| + 2.01 u |t|)``, the bound of :func:`mul` with ``bl = 0``.
    """
    p, e = two_prod(ah, b)
    t = np.asarray(al * b)
    f, ef = two_sum(e, t)
    hi, lo = two_sum(p, f)
    v = np.abs(ef) + np.abs(t) * (2.01 * U)
    return hi, lo, up_inplace(v, maybe=lambda: (al != 0) & (b != 0))


def square(ah, al) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """dd square; the bound of :func:`mul`."""
    return mul(ah, al, ah, al)


def lower_pos(hi: np.ndarray, err: np.ndarray) -> np.ndarray:
    """A float lower bound of ``hi (1 - u) - err`` (for ``hi > 0``; may be <= 0).

    Notes
    -----
    ``t = fl(hi (1 - 2**-50)) <= hi (1 - 2**-50)(1 + u) <= hi (1 - u)``;
    ``d = fl(t - err) <= (t - err)(1 + u)`` when positive (exact when subnormal);
    ``fl(d DOWN) <= d (1 - 2**-44)(1 + u) < d / (1 + u)``, so the result is at most
    ``t - err``.  A non-positive result is returned as is (the caller refuses it).
    With ``|lo| <= u hi`` this bounds ``hi + lo - err`` from below.
    """
    t = hi * (1.0 - 2.0 ** -50)
    d = t - err
    return np.where(d > 0, d * DOWN, d)


def div(ah, al, bh, bl) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """dd quotient ``(ah + al) / (bh + bl)`` for ``bh != 0``.

    Returns
    -------
    hi, lo : ndarray of float64
    err : ndarray of float64
        Upper bound of ``|(ah + al)/(bh + bl) - (hi + lo)|``.

    Notes
    -----
    Midpoint: ``q1 = fl(ah/bh)``, residual ``r ~ a - q1 b`` using the exact
    ``two_prod(q1, bh)``, ``q2 = fl(r/bh)``, ``hi, lo = two_sum(q1, q2)``.  The bound is
    *a posteriori*: with ``q = hi + lo``, the residual ``rho = a - q b`` is computed as
    ``d = sub(a, mul(q, b))`` with the proved errors ``e_m``, ``e_d`` of :func:`mul` and
    :func:`add`, so ``|rho| <= |dh|(1 + u) + e_m + e_d``; and ``|a/b - q| = |rho|/|b|``
    with ``|b| >= |bh|(1 - u)``.  Hence ``err = up((|dh| + e_m + e_d) / |bh|)`` (the factors
    ``(1 + u)/(1 - u)`` count as two of the operations covered by ``UP``).
    """
    q1 = ah / bh
    p, e = two_prod(q1, bh)
    r = (((ah - p) - e) + al) - q1 * bl
    q2 = r / bh
    hi, lo = two_sum(q1, q2)
    mh, ml, em = mul(hi, lo, bh, bl)
    dh, _, ed = sub(ah, al, mh, ml)
    num = np.abs(dh) + em + ed
    err = up(num / np.abs(bh), maybe=num > 0)  # num = 0: a = q b exactly (dl = 0 as dh = 0)
    return hi, lo, err


def sqrt(ah, al) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """dd square root of ``ah + al > 0`` (``ah >= 2**-900``).

    Returns
    -------
    hi, lo : ndarray of float64
    err : ndarray of float64
        Upper bound of ``|sqrt(ah + al) - (hi + lo)|``.

    Notes
    -----
    Midpoint: ``s1 = fl(sqrt(ah))``, one Newton correction ``s2 = (a - s1^2)/(2 s1)`` with
    the exact ``two_prod(s1, s1)``, ``hi, lo = two_sum(s1, s2)``.  A posteriori bound: with
    ``q = hi + lo > 0``, ``|sqrt(a) - q| = |a - q^2| / (sqrt(a) + q) <= |a - q^2| / q``, and
    ``a - q^2`` is computed as ``d = sub(a, mul(q, q))`` with proved errors, so
    ``err = up((|dh| + e_m + e_d) / hi)`` (``q >= hi (1 - u)``; the ``(1+u)/(1-u)`` factors
    are covered by ``UP``).
    """
    s1 = np.sqrt(ah)
    p, e = two_prod(s1, s1)
    r = ((ah - p) - e) + al
    s2 = r / (2.0 * s1)
    hi, lo = two_sum(s1, s2)
    mh, ml, em = mul(hi, lo, hi, lo)
    dh, _, ed = sub(ah, al, mh, ml)
    num = np.abs(dh) + em + ed
    err = up(num / hi, maybe=num > 0)
    return hi, lo, err


def pow_int(ah, al, n: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """dd power ``(ah + al)**n`` for an integer ``n >= 1``, by binary powering.

    Returns
    -------
    hi, lo : ndarray of float64
    err : ndarray of float64
        Upper bound of ``|(ah + al)**n - (hi + lo)|``.

    Notes
    -----
    Each intermediate is carried as a ball ``[x ± r]`` and multiplied with the rule of
    :func:`verigrad.engine.fastball.ball_mul`:
    ``|xy - mid| <= |xh| r_y (1 + u) + r_x |yh| (1 + u) + r_x r_y + err_mul``, rounded up.
    """
    if n < 1:
        raise ValueError("pow_int needs n >= 1")
    rh, rl, rr = None, None, None
    bh, bl, br = ah, al, np.zeros_like(np.asarray(ah, dtype=np.float64))
    while True:
        if n & 1:
            if rh is None:
                rh, rl, rr = bh, bl, br
            else:
                rh, rl, rr = _ball_mul(rh, rl, rr, bh, bl, br)
        n >>= 1
        if not n:
            return rh, rl, rr
        bh, bl, br = _ball_mul(bh, bl, br, bh, bl, br)


def _ball_mul(ah, al, ar, bh, bl, br):
    hi, lo, err = mul(ah, al, bh, bl)
    rad = up(np.abs(ah) * br + ar * np.abs(bh) + ar * br + err,
             maybe=((ah != 0) & (br != 0)) | ((ar != 0) & ((bh != 0) | (br != 0))))
    return hi, lo, rad
