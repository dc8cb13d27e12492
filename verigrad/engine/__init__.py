"""The exact engine: arithmetic backends, compiled models, the certified truth, exact line evaluation."""
