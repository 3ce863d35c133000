"""TLT Pipelines: NVIDIA's Transfer Learning Toolkit rebuilt as open Kubeflow/Argo components.

All logic lives in this package; the CLIs (`tlt.cli`), the Kubeflow components and the Argo
templates (`tlt.orchestration`) are thin doors into `tlt.stages`.
"""

__all__ = ["__version__"]

__version__ = "0.1.0"
