"""Case files as pytest tests: one item per candidate × dtype (enabled by :mod:`verigrad.integrations.pytest_plugin`).

Modelled on pytest's "non-python tests" example (``doc/en/example/nonpython``):
:class:`CaseFile` collects a case file, :class:`CandidateItem` grades one
candidate in one dtype.  An item passes when the candidate's expectation holds,
so a buggy candidate declared ``expect = "fail"`` passes as a test when verigrad
catches it.  A failure is reported with verigrad's breadcrumbs (``case › W[2, :]
› float64: scaled by 2 (truth 0.4579, got 0.9158)``), never with a traceback.

The expensive work is shared: the case is compiled once per file, and the
certified truth and float baseline once per file and dtype, lazily, by the
first item that needs them (so ``-k float64`` never certifies float32).
Finite-difference schemes listed in ``[check]`` are informational and are not
collected (``verigrad run`` grades them).

Examples
--------
Run the shipped corpus as tests::

    pytest --verigrad cases/
    pytest --verigrad cases/linear-regression.toml -k float32
"""

from __future__ import annotations

from typing import Any

import pytest

from verigrad.casefile.loader import load_case, point_in_dtype
from verigrad.errors import VerigradError
from verigrad.engine.model import compile_case
from verigrad.runner.case import Result, baseline_gradient, grade_candidate, truth_digits
from verigrad.spec import CandidateSpec, Dtype, Expect
from verigrad.engine.truth import certify

__all__ = ["CaseFile", "CandidateItem", "ExpectationNotMet", "MAX_MESSAGES"]

#: Breadcrumbs shown per failing item (the rest are counted); ``-vv`` shows all.
MAX_MESSAGES = 12


class ExpectationNotMet(AssertionError):
    """A candidate's expectation did not hold; carries the :class:`~verigrad.runner.case.Result`."""

    def __init__(self, result: Result) -> None:
        super().__init__(result.message or result.verdict)
        self.result = result


def _fmt(x: Any) -> str:
    try:
        return f"{float(x):.3g}"
    except (TypeError, ValueError):
        return "?"


class _Cached:
    """A value or the exception computing it raised (re-raised on every use)."""

    def __init__(self, fn) -> None:
        try:
            self.value, self.error = fn(), None
        except VerigradError as exc:
            self.value, self.error = None, exc

    def get(self):
        if self.error is not None:
            raise self.error
        return self.value


class CaseFile(pytest.File):
    """A verigrad case file (``*.toml``): yields one :class:`CandidateItem` per candidate × dtype.

    An invalid case file is a collection error whose text is verigrad's
    message (file::case::field, the value, the fix).
    """

    def collect(self):
        case = load_case(self.path)
        self.case = case
        self._model: _Cached | None = None
        self._prepared: dict[Dtype, _Cached] = {}
        for dtype in case.check.dtypes:
            for cand in case.candidates:
                yield CandidateItem.from_parent(self, name=f"{cand.name}[{dtype.value}]", candidate=cand,
                                                dtype=dtype)

    def model(self):
        """The compiled case (computed once per file)."""
        if self._model is None:
            self._model = _Cached(lambda: compile_case(self.case))
        return self._model.get()

    def prepared(self, dtype: Dtype):
        """``(truth, baseline)`` at ``dtype``'s point (computed once per file and dtype).

        Raises
        ------
        VerigradError
            The case cannot be compiled, the loss is undefined at the point, or
            the truth cannot be certified (the same error for every item).
        """
        if dtype not in self._prepared:
            def compute():
                model = self.model()
                point = point_in_dtype(model.point, dtype)
                # same certification policy as verigrad.runner.case.run_case
                truth = certify(model, point, dtype, digits=truth_digits(self.case))
                return truth, baseline_gradient(model, point, dtype)
            self._prepared[dtype] = _Cached(compute)
        return self._prepared[dtype].get()

    def teardown(self) -> None:
        """Release the compiled case, truths and baselines once every item of the file has run."""
        self._model = None
        self._prepared = {}
        self.__dict__.pop("_second_caches", None)

    def repr_failure(self, excinfo, style=None):
        if isinstance(excinfo.value, VerigradError):
            return f"verigrad could not collect {self.path}:\n{excinfo.value}"
        return super().repr_failure(excinfo, style=style)


class CandidateItem(pytest.Item):
    """One candidate of a case graded in one dtype; passes when its expectation holds."""

    def __init__(self, *, candidate: CandidateSpec, dtype: Dtype, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.candidate = candidate
        self.dtype = dtype
        self.result: Result | None = None

    @property
    def label(self) -> str:
        """``case › candidate › dtype``."""
        return f"{self.parent.case.name} › {self.candidate.name} › {self.dtype.value}"

    def runtest(self) -> None:
        case = self.parent.case
        if self.candidate.kind.order == 2:  # hessian, hvp, hessian_diag (docs/second-order.md)
            from verigrad.runner.case import grade_second_order

            model = self.parent.model()
            caches = self.parent.__dict__.setdefault("_second_caches", {})
            caches[self.dtype], result = grade_second_order(model, self.candidate,
                                                            point_in_dtype(model.point, self.dtype), self.dtype,
                                                            caches.get(self.dtype))
        else:
            truth, baseline = self.parent.prepared(self.dtype)
            result = grade_candidate(self.parent.model(), self.candidate, truth, baseline,
                                     timeout=case.limits.candidate_seconds)
        self.result = result
        errors = result.grade.to_dict().get("errors", {}) if result.grade is not None else {}
        self.user_properties.extend([("verdict", result.verdict), ("expect", result.expect),
                                     ("max_ulps", errors.get("max_ulps"))])
        if result.stdout:
            self.add_report_section("call", "candidate output", result.stdout)
        if result.met is False:
            raise ExpectationNotMet(result)

    def repr_failure(self, excinfo, style=None):
        exc = excinfo.value
        if isinstance(exc, ExpectationNotMet):
            return "\n".join(self._failure_lines(exc.result))
        if isinstance(exc, VerigradError):
            return f"{self.label}: could not be graded:\n{exc}"
        return super().repr_failure(excinfo, style=style)

    def _failure_lines(self, r: Result) -> list[str]:
        """Headline breadcrumb first (pytest's short summary shows it), then the verdict, then the rest."""
        messages: list[str] = []
        if r.grade is not None and hasattr(r.grade, "messages"):
            messages = list(r.grade.messages())
        if r.message and r.message not in messages:
            messages.insert(0, r.message)
        diagnoses = [d.message for d in getattr(r.grade, "diagnosis", ()) or () if d.message]
        expect = r.expect or "pass"
        if r.verdict == "pass":
            head = (f"{self.label}: expected fail, but every entry is within tolerance: the bug was not caught "
                    "(or the candidate is correct and its expectation is wrong)")
        else:
            head = diagnoses[0] if diagnoses else (messages[0] if messages else f"{self.label}: verdict {r.verdict}")
            if not head.startswith(self.parent.case.name + " "):
                head = f"{self.label}: {head}"
        rest = [m for m in messages if m != head and f"{self.label}: {m}" != head]
        errors = r.grade.to_dict().get("errors", {}) if r.grade is not None else {}
        figures = ""
        if errors:
            figures = (f" (max {_fmt(errors.get('max_ulps'))} ulps, norm-wise relative error "
                       f"{_fmt(errors.get('normwise_relative'))})")
        what = "could not be run" if r.verdict == "error" else f"verdict {r.verdict}"
        lines = [head, f"  expected {expect}, {what}{figures}"]
        if r.expect == Expect.FAIL.value and r.verdict == "error":
            lines.append("  a candidate expected to fail must be caught by the grading, not crash")
        limit = None if (self.config.getoption("verbose", 0) or 0) >= 2 else MAX_MESSAGES
        shown = rest if limit is None else rest[:limit]
        lines += ["  " + m for m in shown]
        if len(rest) > len(shown):
            lines.append(f"  … {len(rest) - len(shown)} more (pytest -vv shows all; verigrad run --json lists "
                         "every entry)")
        return lines

    def reportinfo(self):
        return self.path, 0, f"verigrad: {self.label}"
