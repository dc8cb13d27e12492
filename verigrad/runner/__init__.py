"""Running cases: calling user code in isolation, grading every candidate, the records of a run."""
