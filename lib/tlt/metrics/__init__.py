"""Metrics computed from predictions: classification now, detection AP later."""
