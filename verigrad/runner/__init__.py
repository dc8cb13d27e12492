"""Running cases: calling user code in isolation, grading every candidate, the records of a run.

* :mod:`~verigrad.runner.candidates` - import and call a candidate (or ``loss_code``) in a
  worker process (one per case, reused) with a time limit; what it prints or returns is untrusted text;
* :mod:`~verigrad.runner.case` - one case file -> truths, baselines, grades (:func:`run_case`),
  a corpus (:func:`run_paths`, :func:`case_reports` on a process pool);
* :mod:`~verigrad.runner.fdcheck` - the case's finite-difference schemes and the classic-check note;
* :mod:`~verigrad.runner.records` - :class:`Result`, :class:`CaseReport`, :class:`RunReport`.
"""
