"""LT2: Linear-Time Looped Transformers — model, training, evaluation and reproduction pipeline."""

__version__ = "0.1.0"
