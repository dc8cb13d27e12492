"""Case-file keys of a ``[[candidate]]`` that say how its code is called: ``kind`` and ``device``.

``kind`` is one of :class:`verigrad.spec.CandidateKind` (``"numpy"`` by default; ``"torch"``,
``"torch-autograd"``, ``"jax"``, ``"jax-grad"`` for framework code, docs/frameworks.md);
``device`` names a framework device (``"cpu"``, ``"cuda:1"``, ``"gpu:0"``) and is refused for
numpy code.  Whether the device exists is known only where the code runs (the worker), so it
is checked there.

The loader (:mod:`verigrad.casefile.loader`) calls :func:`kind_and_device` with its context and
its own field helpers (``ld``: ``_typed``, ``_sub``, ``_show``, ``_suggest``), as
:mod:`verigrad.casefile.fdkeys` does, so messages name file, case and field the same way.
"""

from __future__ import annotations

import re
from typing import Any

from verigrad.spec import CandidateKind

__all__: list[str] = []

_DEVICE_RE = re.compile(r"[A-Za-z][A-Za-z0-9_]{0,30}(:[0-9]{1,4})?")


def kind_and_device(ctx, item: dict, field: str, ld: Any) -> tuple[CandidateKind, str | None]:
    """``kind`` (how the code is called) and ``device`` (torch and JAX candidates only)."""
    text = ld._typed(ctx, item.get("kind", "numpy"), str, ld._sub(field, "kind"), "a string")
    try:
        kind = CandidateKind(text)
    except ValueError:
        allowed = ", ".join(k.value for k in CandidateKind)
        raise ctx.error(ld._sub(field, "kind"), f"kind={text!r} is not a candidate kind",
                        hint=ld._suggest(text, [k.value for k in CandidateKind]) + f"allowed: {allowed} "
                        "(docs/frameworks.md)") from None
    if "device" not in item:
        return kind, None
    device = ld._typed(ctx, item["device"], str, ld._sub(field, "device"), "a string")
    if kind.framework is None:  # numpy code: gradients, and the second-order kinds
        raise ctx.error(ld._sub(field, "device"), f"device={device!r} is for torch and JAX candidates; this "
                        "candidate is numpy code", hint='remove device, or set kind = "torch", "torch-autograd", '
                        '"jax" or "jax-grad"')
    if not _DEVICE_RE.fullmatch(device):
        raise ctx.error(ld._sub(field, "device"), f"device={ld._show(device)} is not a device name",
                        hint='e.g. device = "cpu", "cuda", "cuda:1" (torch) or "gpu:0" (JAX)')
    return kind, device
