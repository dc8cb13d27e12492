"""Correct float32 gradients written with algebraically different formulas (issue 17, item 4).

One module per case of ``benchmarks/detection.py`` (the case name with ``-`` -> ``_``); every
``grad_<variant>`` has the signature of the case's shipped correct candidate (``cases/impl/``) and
returns the same dict in the dtype of its inputs.  They are what a user might write instead:
expanded products, another tanh/sigmoid identity, no max-shift, loops over samples, float64
accumulation cast back.  ``benchmarks/rewrites_study.py`` measures how far each gets from the exact
gradient in units of ``sigma_i`` and grades it with the per-entry rule.
"""
