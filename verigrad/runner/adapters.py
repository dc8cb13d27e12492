"""Framework candidates (PyTorch, JAX): how the worker process calls them.

A ``[[candidate]]`` with ``kind = "torch"``, ``"torch-autograd"``, ``"jax"`` or ``"jax-grad"``
(:class:`verigrad.spec.CandidateKind`) is sent to the worker as a :class:`FrameworkRef`: its
code reference plus what the adapter needs (the kind, the device, the variables and the
symbols in declaration order).  In the worker, after the user's module is imported afresh,
:func:`adapted` wraps the user's function with ``verigrad.integrations.<framework>.adapt``,
imported there *by name*: the runner layer does not import the integrations layer above it,
and a case without framework candidates never loads PyTorch or JAX (docs/architecture.md).
The wrapped function keeps the numpy calling convention of every candidate (numpy arrays in,
numpy arrays out), so the isolation, time limits and messages of
:mod:`verigrad.runner.candidates` apply unchanged.

When the framework is not installed the batch ends with kind ``"missing"``; the runner turns
that into the verdict ``skipped`` (informational), never a failure (docs/frameworks.md).
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from typing import Callable

from verigrad.errors import CandidateError
from verigrad.spec import CandidateKind, CandidateSpec, Case, CodeRef

__all__ = ["FRAMEWORK_IMPORT_SECONDS", "FrameworkRef", "adapted", "candidate_ref"]

#: seconds allowed, on top of ``[limits] candidate_seconds``, for importing the framework in a
#: worker (``import torch`` takes about a second on an idle machine, several on a loaded one);
#: the runner imports it in a batch of no calls before the candidate's call is timed
FRAMEWORK_IMPORT_SECONDS = 120.0


@dataclass(frozen=True)
class FrameworkRef(CodeRef):
    """A :class:`CodeRef` to framework code, with what its adapter needs (picklable).

    Attributes
    ----------
    kind : CandidateKind
        A framework kind (not ``NUMPY``).
    device : str or None
        The case file's ``device`` (None: the CPU).
    variables : tuple of str
        The differentiated symbols, in declaration order.
    symbols : tuple of str
        Every symbol, in declaration order (the positional order of ``autograd.Function.apply``).
    """

    kind: CandidateKind = CandidateKind.TORCH
    device: str | None = None
    variables: tuple[str, ...] = ()
    symbols: tuple[str, ...] = ()

    @property
    def extra(self) -> str:
        """The pip extra that installs the framework, e.g. ``verigrad[torch]``."""
        return f"verigrad[{self.kind.framework}]"


def candidate_ref(case: Case, cand: CandidateSpec) -> CodeRef:
    """What the worker is sent for ``cand``: its CodeRef, or a :class:`FrameworkRef` for framework code."""
    if cand.kind is CandidateKind.NUMPY:
        return cand.code
    return FrameworkRef(cand.code.path, cand.code.function, cand.code.text, kind=cand.kind, device=cand.device,
                        variables=tuple(s.name for s in case.variables), symbols=tuple(s.name for s in case.symbols))


def adapted(load: Callable[[], Callable], ref: CodeRef):
    """The user's function (``load()``) as the worker calls it: as is for numpy code, else wrapped by its adapter.

    For framework code the framework is imported *before* the user's module, so that a
    missing framework is reported as such (``skipped``), not as the user's module failing
    to import.

    Raises
    ------
    CandidateError
        ``kind="missing"``: the framework is not installed (the message names the pip extra);
        ``kind="device"``: the device is not on this machine; ``kind="load"``: the code is not
        what its kind calls (e.g. an ``autograd.Function`` with ``kind = "torch"``).
    """
    if not isinstance(ref, FrameworkRef):
        return load()
    framework = ref.kind.framework
    try:
        integration = importlib.import_module(f"verigrad.integrations.{framework}")
    except ImportError as exc:
        raise CandidateError(f"{ref.text}: skipped: {framework} is not installed: pip install \"{ref.extra}\" "
                             f"(kind = \"{ref.kind.value}\" needs it; {type(exc).__name__}: {exc})",
                             kind="missing") from None
    fn = load()
    try:
        wrapped = integration.adapt(fn, ref.kind, variables=ref.variables, symbols=ref.symbols,
                                    device_name=ref.device)
    except CandidateError as exc:
        raise CandidateError(f"{ref.text}: {exc}", kind=exc.fields.get("kind", "load")) from None
    wrapped.__wrapped__ = fn  # the signature check reads the user's function
    return wrapped
