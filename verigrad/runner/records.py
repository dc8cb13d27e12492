"""The records of a run: one :class:`Result` per graded candidate x dtype, one :class:`CaseReport`
per case file, one :class:`RunReport` per ``verigrad run``.  Plain frozen data: the reports
(:mod:`verigrad.report`) read them, nothing here computes."""

from __future__ import annotations

from dataclasses import dataclass, field

__all__ = ["Result", "CaseReport", "RunReport"]


@dataclass(frozen=True)
class Result:
    """One graded candidate (hand-written code or a finite difference) in one dtype.

    Attributes
    ----------
    case, candidate : str
    kind : str
        ``"code"`` (hand-written) or ``"fd"`` (finite difference ``scheme`` at ``step``).
    dtype : str
    expect : str or None
        ``"pass"``/``"fail"`` for code; None for finite differences (informational).
    verdict : str
        ``pass``, ``fail``, ``nonfinite``, ``error``.
    met : bool or None
        Whether the expectation held (None without expectation).
    grade : Grade or None
        The full grade (None when the candidate could not be run).
    message : str
        Why, for errors; the first breadcrumb for failures.
    stdout : str
        What the candidate printed.
    seconds : float
    """

    case: str
    candidate: str
    kind: str
    dtype: str
    expect: str | None
    verdict: str
    met: bool | None
    grade: object | None = None
    message: str = ""
    stdout: str = ""
    seconds: float = 0.0
    scheme: str | None = None
    step: float | None = None
    extra: dict = field(default_factory=dict)
    value: dict | None = field(default=None, repr=False, compare=False)

    @property
    def label(self) -> str:
        """``case › candidate › dtype`` (the candidate of a finite difference is ``scheme h=STEP``)."""
        return f"{self.case} › {self.candidate} › {self.dtype}"

    def __repr__(self) -> str:
        ulps = getattr(getattr(self.grade, "errors", None), "max_ulps", None)
        met = {True: "met", False: "NOT MET", None: "informational"}[self.met]
        expect = f"expected {self.expect}: {met}" if self.expect else met
        return (f"<Result {self.label}: {self.verdict} ({expect})"
                + (f", max {ulps:.3g} ulps" if isinstance(ulps, float) and ulps == ulps else "") + ">")

    def _repr_html_(self) -> str:
        """The grade as in the HTML report, inline in Jupyter (:mod:`verigrad.report.notebook`)."""
        import verigrad

        return verigrad.repr_html(self)


@dataclass(frozen=True)
class CaseReport:
    """Everything about one case file."""

    path: str
    name: str
    description: str = ""
    error: str = ""
    results: tuple[Result, ...] = ()
    truths: dict = field(default_factory=dict)
    seconds: float = 0.0
    parameters: int = 0
    seed: int | None = None
    rng: str | None = None
    loss_code: dict = field(default_factory=dict)

    @property
    def loss_code_mismatch(self) -> bool:
        """``loss_code`` disagrees with the declared loss beyond its dtype's baseline in some dtype."""
        return any(lc.get("verdict") in ("fail", "nonfinite") for lc in (self.loss_code or {}).values())

    @property
    def ok(self) -> bool:
        return (not self.error and all(r.met is not False for r in self.results)
                and not self.loss_code_mismatch)

    def __repr__(self) -> str:
        if self.error:
            return f"<CaseReport {self.name}: case error: {self.error.splitlines()[0] if self.error else ''}>"
        unmet = sum(1 for r in self.results if r.met is False)
        met = sum(1 for r in self.results if r.met is True)
        return (f"<CaseReport {self.name}: {'ok' if self.ok else 'FAILED'}; expectations met {met}, not met {unmet}; "
                f"grades {len(self.results)}; parameters {self.parameters}>")

    def _repr_html_(self) -> str:
        """The case as in the HTML report, inline in Jupyter (:mod:`verigrad.report.notebook`)."""
        import verigrad

        return verigrad.repr_html(self)


@dataclass(frozen=True)
class RunReport:
    """Every case of one run.

    Attributes
    ----------
    cases : tuple of CaseReport
        The finished cases, in file order.
    seconds : float
    interrupted : bool
        The run was stopped (Ctrl-C, SIGTERM) before every case finished: the report holds
        the finished cases only, and the run is *not* ok whatever they say.
    """

    cases: tuple[CaseReport, ...]
    seconds: float
    interrupted: bool = False

    @property
    def ok(self) -> bool:
        return not self.interrupted and all(c.ok for c in self.cases)

    @property
    def results(self) -> list[Result]:
        return [r for c in self.cases for r in c.results]

    def __repr__(self) -> str:
        s = self.summary()
        head = "INTERRUPTED" if self.interrupted else ("OK" if self.ok else "FAILED")
        return (f"<RunReport {head}: cases {s['cases']}, grades {s['results']}; expectations met "
                f"{s['expectations_met']}, not met {s['expectations_not_met']}; case errors {s['case_errors']}; "
                f"{self.seconds:.1f} s>")

    def _repr_html_(self) -> str:
        """The run as in the HTML report, inline in Jupyter (:mod:`verigrad.report.notebook`)."""
        import verigrad

        return verigrad.repr_html(self)

    def summary(self) -> dict:
        res = self.results
        return {
            "cases": len(self.cases),
            "case_errors": sum(1 for c in self.cases if c.error),
            "results": len(res),
            "expectations_met": sum(1 for r in res if r.met is True),
            "expectations_not_met": sum(1 for r in res if r.met is False),
            "informational": sum(1 for r in res if r.met is None),
            "loss_code_mismatches": sum(1 for c in self.cases if c.loss_code_mismatch),
            "interrupted": self.interrupted,
            "ok": self.ok,
        }
