"""Shared training machinery: optimizers, schedules, regularisation, checkpoints, strategies.

Classification uses it now; DetectNet_v2, pruning's retraining and the scheduled retraining
pipeline reuse the same pieces.
"""
