"""Candidates that misbehave in every way the runner must survive.

The loss is sum(w**2)/2 + b*c with w of shape (3,), b a scalar and c = 2 a
constant, so the gradient is {"w": w, "b": c}.
"""
import sys

import mpmath
import numpy as np


def good(w, b, c):
    return {"w": np.array(w, copy=True), "b": np.array(c, copy=True)}


def wrong_signature(w, b):
    return {"w": w, "b": b}


def wrong_shape(w, b, c):
    return {"w": np.concatenate([w, w]), "b": np.array(c, copy=True)}


def missing_variable(w, b, c):
    return {"w": np.array(w, copy=True)}


def raising(w, b, c):
    raise ZeroDivisionError("planted failure")


def nan(w, b, c):
    return {"w": np.full_like(w, np.nan), "b": np.array(c, copy=True)}


def loop_forever(w, b, c):
    while True:
        pass


def chatty(w, b, c):
    print("hello from the candidate")
    print("to stderr", file=sys.stderr)
    return good(w=w, b=b, c=c)


def exits(w, b, c):
    sys.exit(3)


def changes_global_state(w, b, c):
    np.seterr(all="raise")
    mpmath.mp.prec = 10
    return good(w=w, b=b, c=c)


def surrogate_text(w, b, c):
    print("unpaired \ud800 surrogate")
    raise ValueError("bad \udfff text")


def raw_descriptors(w, b, c):
    import os

    os.write(1, b"straight to fd 1\n")
    os.write(2, b"straight to fd 2\n")
    return good(w=w, b=b, c=c)


def closes_descriptors(w, b, c):
    import os

    os.closerange(0, 4096)
    return good(w=w, b=b, c=c)


not_a_function = 42
