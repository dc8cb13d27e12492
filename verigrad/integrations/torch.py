"""PyTorch candidates: ``kind = "torch"`` and ``kind = "torch-autograd"`` (docs/frameworks.md).

Imported only in the worker process that runs a torch candidate
(:mod:`verigrad.runner.candidates` names this module when a case asks for it), so
``import verigrad`` and every numpy case stay free of PyTorch.

:func:`adapt` turns the user's code into the numpy calling convention of every other
candidate: numpy arrays of the dtype under test in, a mapping of numpy arrays out.

* Tensors in keep the dtype exactly (``float16``, ``bfloat16``, ``float32``, ``float64``;
  bfloat16 crosses as its bits, since numpy's bfloat16 is ``ml_dtypes``'), on the candidate's
  ``device`` (the CPU by default).
* Tensors out are copied to the CPU and converted without a cast, so a float64 gradient for
  float32 input is still seen as the upcast it is (verdict ``not exercised``).
* ``torch-autograd``: the forward is called with the variables as leaf tensors that require
  grad (constants do not), and ``torch.autograd.grad`` of the returned scalar gives the
  gradient.  The gradient of a leaf always has the leaf's dtype, even when the forward
  computed in a wider one; a loss wider than the inputs is therefore reported by returning
  the gradient in the loss's dtype, where the grading sees the upcast.
"""

from __future__ import annotations

from typing import Any, Callable, Sequence

import numpy as np
import torch

from verigrad.errors import CandidateError
from verigrad.integrations import map_nested
from verigrad.spec import CandidateKind

__all__ = ["adapt", "device", "to_numpy", "to_tensor"]


def device(name: str | None) -> torch.device:
    """The torch device called ``name`` (None: the CPU), checked to exist on this machine.

    Raises
    ------
    CandidateError
        The name is not a torch device, or this machine has no such device.
    """
    try:
        dev = torch.device(name or "cpu")
    except (RuntimeError, ValueError) as exc:
        raise CandidateError(f"device={name!r} is not a torch device ({exc}); use e.g. 'cpu', 'cuda', 'cuda:1'",
                             kind="device") from None
    available = _available()
    if dev.type == "cpu":
        return dev
    ok = False
    if dev.type == "cuda":
        ok = torch.cuda.is_available() and (dev.index or 0) < torch.cuda.device_count()
    elif dev.type == "mps":
        ok = bool(getattr(torch.backends, "mps", None) and torch.backends.mps.is_available())
    else:
        try:
            torch.empty(0, device=dev)
            ok = True
        except Exception:  # noqa: BLE001 - any backend's way of saying "not here"
            ok = False
    if not ok:
        raise CandidateError(f"device={name!r} is not available on this machine (torch {torch.__version__} sees: "
                             f"{', '.join(available)}); remove the device key to run on the CPU", kind="device")
    return dev


def _available() -> list[str]:
    out = ["cpu"]
    if torch.cuda.is_available():
        out += [f"cuda:{i}" for i in range(torch.cuda.device_count())]
    if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
        out.append("mps")
    return out


def to_tensor(a: np.ndarray, dev: torch.device, *, requires_grad: bool = False) -> torch.Tensor:
    """A numpy array as a tensor of the same dtype and shape on ``dev`` (a copy; bfloat16 by its bits)."""
    a = np.asarray(a)
    if a.dtype.name == "bfloat16":
        t = torch.from_numpy(np.array(a.view(np.int16), copy=True)).view(torch.bfloat16)
    else:
        t = torch.from_numpy(np.array(a, copy=True))
    t = t.to(dev)
    if requires_grad:
        t.requires_grad_(True)
    return t


def to_numpy(value: Any) -> Any:
    """Tensors (in mappings and sequences too) as numpy arrays of the same dtype, on the CPU; others as they are."""
    return map_nested(value, _leaf_to_numpy)


def _leaf_to_numpy(value: Any) -> Any:
    if isinstance(value, torch.Tensor):
        if value.layout != torch.strided or value.device.type == "meta":
            what = "a meta tensor (it has no data)" if value.device.type == "meta" else f"a {value.layout} tensor"
            raise CandidateError(f"the code returned {what} of shape {list(value.shape)}; return dense tensors "
                                 "with values (.to_dense())", kind="raised")
        t = value.detach().to("cpu").resolve_conj().resolve_neg()
        if t.dtype == torch.bfloat16:
            import ml_dtypes

            return t.contiguous().view(torch.int16).numpy().copy().view(ml_dtypes.bfloat16)
        return t.numpy().copy()
    return value


def adapt(fn: Callable, kind: CandidateKind, *, variables: Sequence[str], symbols: Sequence[str],
          device_name: str | None = None) -> Callable[..., Any]:
    """The user's torch code as a numpy candidate: ``f(**numpy arrays) -> gradient (numpy)``.

    Parameters
    ----------
    fn : callable or torch.autograd.Function subclass
        ``kind = "torch"``: returns the gradient (a mapping variable -> tensor, or tensors in
        declaration order). ``kind = "torch-autograd"``: returns the scalar loss; an
        ``autograd.Function`` subclass is called as ``Fn.apply(*symbols in declaration order)``.
    kind : CandidateKind
    variables : sequence of str
        The variables (differentiated), in declaration order.
    symbols : sequence of str
        Every symbol in declaration order (the positional order of ``Function.apply``).
    device_name : str or None
        The case file's ``device`` (None: the CPU).

    Returns
    -------
    callable
        Keyword arguments: numpy arrays (0-d for scalars). Returns numpy arrays.
    """
    dev = device(device_name)
    is_function = isinstance(fn, type) and issubclass(fn, torch.autograd.Function)
    if is_function and kind is not CandidateKind.TORCH_AUTOGRAD:
        raise CandidateError(f"{fn.__name__} is a torch.autograd.Function: set kind = \"torch-autograd\" so that "
                             "verigrad calls Fn.apply and backpropagates through its backward", kind="load")

    def call(**kwargs):
        if kind is CandidateKind.TORCH:
            return to_numpy(fn(**{k: to_tensor(v, dev) for k, v in kwargs.items()}))
        inputs = {k: to_tensor(v, dev, requires_grad=k in variables) for k, v in kwargs.items()}
        with torch.enable_grad():
            loss = fn.apply(*(inputs[s] for s in symbols)) if is_function else fn(**inputs)
            if not isinstance(loss, torch.Tensor) or loss.numel() != 1 or not loss.is_floating_point():
                what = (f"a tensor of shape {list(loss.shape)} and dtype {loss.dtype}" if isinstance(loss, torch.Tensor)
                        else type(loss).__name__)
                raise CandidateError(f"the forward returned {what}; torch-autograd needs the scalar loss as a "
                                     "floating tensor", kind="raised")
            if not loss.requires_grad:
                raise CandidateError("the forward's loss does not depend on the variables through torch operations "
                                     "(it does not require grad: was it computed with numpy, .item() or .detach()?)",
                                     kind="raised")
            leaves = [inputs[v] for v in variables]
            grads = torch.autograd.grad(loss.reshape(()), leaves, allow_unused=True)
        out = {}
        for v, leaf, g in zip(variables, leaves, grads):
            g = torch.zeros_like(leaf) if g is None else g  # the loss does not depend on v
            if loss.dtype.itemsize > g.dtype.itemsize:
                g = g.to(loss.dtype)  # the forward ran wider than the inputs: let grading see the upcast
            out[v] = to_numpy(g)
        return out

    call.__wrapped__ = fn
    return call
