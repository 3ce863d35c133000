"""DetectNet_v2: grid detector with a coverage head and a bounding-box head (stride 16).

Submodules are imported explicitly; this package imports nothing itself, so the TensorFlow-free
parts (``bbox_codec``, ``postprocess``) load without TensorFlow.
"""
