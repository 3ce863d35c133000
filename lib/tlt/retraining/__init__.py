"""Scheduled retraining helpers that sit between the registry (`tlt.io`) and the stages:
whether a fine-tuning spec can start from the registry's champion (`model_match`)."""
