"""Inference with trained models (tlt-infer)."""
