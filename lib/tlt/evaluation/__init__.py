"""Evaluation of trained models (tlt-evaluate)."""
