"""Runnable examples: `cconv train digits` (needs the `examples` extra: scikit-learn)."""
