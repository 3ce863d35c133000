"""Training precision: ``training_precision.backend_floatx`` and ``training_config.cost_scaling``.

FLOAT16 is Keras mixed precision (the ``mixed_float16`` dtype policy: float16 computation,
float32 weights) where a GPU is there to run it; on a CPU, float16 arithmetic is emulated, slower
than float32 and saves nothing, so the run trains in float32. The spec loader already warns about
that when it loads the spec (`tlt.spec.ignored`); training logs its decision as a note, and warns
only about what the loader cannot know (the GPUs' compute capability, a ``decrement`` Keras
cannot follow).

``cost_scaling`` is TLT's dynamic loss scaling, in powers of two: the loss is multiplied by
``2**exponent``; the exponent starts at ``initial_exponent``, grows by ``increment`` after every
step without overflow and drops by ``decrement`` after an overflow (the step is then skipped).
Keras' `LossScaleOptimizer` implements the same scheme with a doubling after
``dynamic_growth_steps`` clean steps and a halving on overflow, so ``increment`` becomes
``round(1 / increment)`` growth steps (0.005 -> doubling every 200 steps, as TLT's exponent
climbs one unit in 200 steps) and ``decrement`` must be 1 (anything else is warned about).
"""

from __future__ import annotations

import contextlib
import logging
import math
from dataclasses import dataclass
from typing import Iterator, Sequence

__all__ = ["PrecisionPlan", "LossScaleSettings", "gpu_compute_capabilities", "decide_policy",
           "loss_scale_settings", "build_precision_plan", "dtype_policy", "apply_loss_scaling",
           "float32_config"]

_log = logging.getLogger(__name__)

FLOATX_FIELD = "model_config.training_precision.backend_floatx"
COST_SCALING_FIELD = "training_config.cost_scaling"
MIXED = "mixed_float16"
FLOAT32 = "float32"
# Tensor cores (the speed-up of float16 training) start with compute capability 7.0 (Volta).
_FAST_FP16 = (7, 0)
# Keras needs an integer growth interval; "never grow" (increment 0) is one this large.
_NEVER = 10**9


@dataclass(frozen=True)
class LossScaleSettings:
    """Arguments of `keras.optimizers.LossScaleOptimizer` built from ``cost_scaling``."""

    initial_scale: float
    dynamic_growth_steps: int


@dataclass(frozen=True)
class PrecisionPlan:
    """How a run trains.

    Attributes:
        policy: the Keras dtype policy, ``"float32"`` or ``"mixed_float16"``.
        loss_scale: the loss scaling, or None for none.
        warnings: one line per spec field that cannot take effect as written (log as warnings).
        notes: fields that do not take effect on this machine and that the spec loader has
            warned about already (log as info).
    """

    policy: str
    loss_scale: LossScaleSettings | None
    warnings: tuple[str, ...] = ()
    notes: tuple[str, ...] = ()


def gpu_compute_capabilities() -> list[tuple[int, int]]:
    """Compute capabilities of the visible GPUs (empty on a CPU-only machine)."""
    import tensorflow as tf

    found = []
    for gpu in tf.config.list_physical_devices("GPU"):
        details = tf.config.experimental.get_device_details(gpu)
        found.append(tuple(details.get("compute_capability") or (0, 0)))
    return found


def decide_policy(backend_floatx: str, capabilities: Sequence[tuple[int, int]]
                  ) -> tuple[str, str | None]:
    """The dtype policy for ``backend_floatx`` on devices of ``capabilities``, and why not if not.

    Args:
        backend_floatx: ``"FLOAT32"`` or ``"FLOAT16"``.
        capabilities: compute capabilities of the GPUs the run uses (empty: CPU only).

    Returns:
        ``(policy, warning)``: ``warning`` is None when the spec takes effect as written.
    """
    if backend_floatx != "FLOAT16":
        return FLOAT32, None
    if not capabilities:
        return FLOAT32, (f"{FLOATX_FIELD}: FLOAT16 cannot take effect: no GPU is visible and "
                         f"float16 arithmetic on a CPU is emulated (slower, no memory saved); "
                         f"training in FLOAT32")
    slow = [c for c in capabilities if tuple(c) < _FAST_FP16]
    if slow:
        shown = ", ".join(f"{a}.{b}" for a, b in slow)
        return MIXED, (f"{FLOATX_FIELD}: FLOAT16 on GPU(s) of compute capability {shown} "
                       f"(below 7.0, no tensor cores) runs but may be slower than FLOAT32")
    return MIXED, None


def loss_scale_settings(cost_scaling) -> tuple[LossScaleSettings, str | None]:
    """Keras loss-scaling arguments equivalent to ``cost_scaling``, and a warning where they differ.

    Args:
        cost_scaling: the spec's ``training_config.cost_scaling`` (defaults applied).
    """
    increment = float(cost_scaling.increment)
    growth = _NEVER if increment <= 0 else max(1, round(1.0 / increment))
    settings = LossScaleSettings(initial_scale=float(2.0 ** float(cost_scaling.initial_exponent)),
                                 dynamic_growth_steps=int(growth))
    warning = None
    if not math.isclose(float(cost_scaling.decrement), 1.0):
        warning = (f"{COST_SCALING_FIELD}.decrement {cost_scaling.decrement:g}: Keras' loss "
                   f"scaling halves the scale on an overflow (decrement 1.0); using 1.0")
    return settings, warning


def build_precision_plan(backend_floatx: str, cost_scaling,
                         capabilities: Sequence[tuple[int, int]] | None = None) -> PrecisionPlan:
    """Decide the run's precision and loss scaling from the spec and the devices.

    Args:
        backend_floatx: the spec's enum name, ``"FLOAT32"`` or ``"FLOAT16"``.
        cost_scaling: ``training_config.cost_scaling``.
        capabilities: GPU compute capabilities; None looks them up.
    """
    if capabilities is None:
        capabilities = gpu_compute_capabilities() if backend_floatx == "FLOAT16" else []
    policy, warning = decide_policy(backend_floatx, capabilities)
    if policy != MIXED:
        # Both cases are warned about by the spec loader (tlt.spec.ignored) at load time.
        notes = [warning] if warning else []
        # Loss scaling exists for float16 gradients; in float32 it changes nothing. Said once,
        # and not on top of the FLOAT16 fallback, which covers it.
        if cost_scaling.enabled and backend_floatx != "FLOAT16":
            notes.append(f"{COST_SCALING_FIELD}.enabled has no effect in FLOAT32 training "
                         f"(loss scaling protects float16 gradients); not applied")
        return PrecisionPlan(FLOAT32, None, notes=tuple(notes))
    warnings = [warning] if warning else []
    if not cost_scaling.enabled:
        _log.info("%s is off: FLOAT16 training without loss scaling", COST_SCALING_FIELD)
        return PrecisionPlan(MIXED, None, tuple(warnings))
    settings, warning = loss_scale_settings(cost_scaling)
    if warning:
        warnings.append(warning)
    return PrecisionPlan(MIXED, settings, tuple(warnings))


@contextlib.contextmanager
def dtype_policy(policy: str) -> Iterator[None]:
    """Build layers under the Keras dtype ``policy``; the previous global policy comes back after."""
    import keras

    previous = keras.config.dtype_policy()
    keras.config.set_dtype_policy(policy)
    try:
        yield
    finally:
        keras.config.set_dtype_policy(previous)


def apply_loss_scaling(optimizer, plan: PrecisionPlan):
    """``optimizer`` wrapped in a `LossScaleOptimizer` as ``plan`` says (else unchanged)."""
    if plan.loss_scale is None:
        return optimizer
    import keras

    return keras.optimizers.LossScaleOptimizer(
        optimizer, initial_scale=plan.loss_scale.initial_scale,
        dynamic_growth_steps=plan.loss_scale.dynamic_growth_steps)


def float32_config(config):
    """A copy of a Keras model config with every ``mixed_float16`` dtype policy made float32.

    The shipped model of a FLOAT16 run computes in float32: its weights are float32 already (the
    master copies), and evaluation, export and CPU inference want float32 graphs.
    """
    if isinstance(config, dict):
        if config.get("class_name") == "DTypePolicy" and \
                (config.get("config") or {}).get("name") == MIXED:
            return {**config, "config": {**config["config"], "name": FLOAT32}}
        return {k: float32_config(v) for k, v in config.items()}
    if isinstance(config, list):
        return [float32_config(v) for v in config]
    if config == MIXED:
        return FLOAT32
    return config
