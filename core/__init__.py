"""Tumorscope core: BraTS cases, checks, cache, metrics, models, training and inference."""
