"""JAX candidates: ``kind = "jax"`` and ``kind = "jax-grad"`` (docs/frameworks.md).

Imported only in the worker process that runs a JAX candidate
(:mod:`verigrad.runner.candidates` names this module when a case asks for it), so
``import verigrad`` and every numpy case stay free of JAX.

* ``jax_enable_x64`` is switched on here, before any array is made: without it JAX turns
  every float64 input into float32 and a float64 grade would grade float32 code.
  With it, float32 (and float16, bfloat16) inputs keep their dtype.
* Arrays in keep the dtype exactly and are placed on the candidate's ``device`` (the first
  CPU device by default); arrays out are copied to host numpy arrays without a cast.
* ``jax-grad``: ``jax.value_and_grad`` of the forward with respect to the variables (the
  constants are closed over), so ``custom_vjp`` and ``custom_jvp`` rules are what is graded.
  A loss wider than the inputs (a forward computing in float64 for float32 input) returns the
  gradient in the loss's dtype, where the grading sees the upcast.
"""

from __future__ import annotations

from typing import Any, Callable, Sequence

import jax

jax.config.update("jax_enable_x64", True)  # before any array exists (see the module docstring)

import numpy as np  # noqa: E402

from verigrad.errors import CandidateError  # noqa: E402
from verigrad.integrations import map_nested  # noqa: E402
from verigrad.spec import CandidateKind  # noqa: E402

__all__ = ["adapt", "device", "to_numpy"]


def device(name: str | None):
    """The JAX device called ``name`` (``"cpu"``, ``"gpu"``, ``"gpu:1"``, ``"tpu"``; None: the CPU).

    Raises
    ------
    CandidateError
        This machine has no such device.
    """
    platform, _, index = (name or "cpu").partition(":")
    try:
        devices = jax.devices(platform)
    except RuntimeError:
        devices = []
    k = int(index) if index else 0
    if k >= len(devices):
        seen = ", ".join(f"{d.platform}:{d.id}" for d in jax.devices())
        raise CandidateError(f"device={name!r} is not available on this machine (JAX {jax.__version__} sees: {seen}); "
                             "remove the device key to run on the CPU", kind="device")
    return devices[k]


def to_numpy(value: Any) -> Any:
    """JAX arrays (in mappings and sequences too) as host numpy arrays of the same dtype."""
    return map_nested(value, _leaf_to_numpy)


def _leaf_to_numpy(value: Any) -> Any:
    return np.array(jax.device_get(value), copy=True) if isinstance(value, jax.Array) else value


def adapt(fn: Callable, kind: CandidateKind, *, variables: Sequence[str], symbols: Sequence[str],
          device_name: str | None = None) -> Callable[..., Any]:
    """The user's JAX code as a numpy candidate: ``f(**numpy arrays) -> gradient (numpy)``.

    Parameters
    ----------
    fn : callable
        ``kind = "jax"``: returns the gradient (a mapping variable -> array, or arrays in
        declaration order). ``kind = "jax-grad"``: returns the scalar loss.
    kind : CandidateKind
    variables : sequence of str
        The variables (differentiated), in declaration order.
    symbols : sequence of str
        Every symbol in declaration order (unused here; the same signature as the torch adapter).
    device_name : str or None
        The case file's ``device`` (None: the CPU).

    Returns
    -------
    callable
        Keyword arguments: numpy arrays (0-d for scalars). Returns numpy arrays.
    """
    dev = device(device_name)

    def call(**kwargs):
        arrays = {k: jax.device_put(np.asarray(v), dev) for k, v in kwargs.items()}
        if kind is CandidateKind.JAX:
            return to_numpy(fn(**arrays))
        params = {v: arrays[v] for v in variables}
        consts = {k: a for k, a in arrays.items() if k not in params}

        def loss(p):
            out = fn(**p, **consts)
            shape, dt = getattr(out, "shape", None), getattr(out, "dtype", None)
            # checked here, not left to jax.grad: its TypeError would point into this file, not the user's
            if not isinstance(out, jax.Array) or int(np.prod(shape)) != 1 or not np.issubdtype(dt, np.floating):
                what = (f"an array of shape {list(shape)} and dtype {dt}" if isinstance(out, jax.Array)
                        else type(out).__name__)
                raise CandidateError(f"the forward returned {what}; jax-grad needs the scalar loss as a floating "
                                     "JAX array (computed with jax.numpy from the arguments)", kind="raised")
            return out.reshape(())

        value, grads = jax.value_and_grad(loss)(params)
        out = {}
        for v in variables:
            g = grads[v]
            if value.dtype.itemsize > g.dtype.itemsize:
                g = g.astype(value.dtype)  # the forward ran wider than the inputs: let grading see the upcast
            out[v] = to_numpy(g)
        return out

    call.__wrapped__ = fn
    return call
