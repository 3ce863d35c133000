"""DetectNet_v2 loss: weighted BCE coverage cost + coverage-normalised L1 bbox cost, per class.

For class c with normalised class weight w_c and objective weights v_c,cov and v_c,bbox:

    cov cost_c  = mean over batch and cells of  cov_mask * fg(target) * BCE(target, pred)
    bbox cost_c = mean over batch, 4 edges and cells of  bbox_weight * |pred - target|
    total       = sum_c w_c * (v_c,cov * cov cost_c + v_c,bbox * bbox cost_c)

with fg = coverage_foreground_weight where target > 0.5 and 1 - that elsewhere, and
BCE = -(t log(p + 1e-5) + (1 - t) log(1 - p + 1e-5)) as TLT computes it. Class weights are
normalised over the classes, and each class's objective weights start from initial_weight
normalised to sum 1 over its objectives (as TLT's cost combiner does). The objective weights are
non-trainable tf.Variables, so `AutoWeighting` can change them between epochs without recompiling.

Keras integration: the model's two outputs keep their own loss, and y_true packs the targets and
their weights along the channel axis (`pack_targets`):

    y_true["output_cov"]  = concat(cov, cov_mask)       [N, 2C, Hg, Wg]
    y_true["output_bbox"] = concat(bbox, bbox_weight)   [N, 5C, Hg, Wg]

Each Keras loss returns per-image sums of weighted class costs, which Keras averages over the
batch, giving exactly the total above. The per-class, per-objective mean costs (unweighted) are
Keras metrics named `mean_cost_<class>`, logged as `output_cov_mean_cost_<class>` and
`output_bbox_mean_cost_<class>` (see `cost_log_key`); autoweighting reads them from the logs.
"""

from __future__ import annotations

from dataclasses import dataclass

import keras
import tensorflow as tf
from keras import ops

from tlt.errors import SpecError

__all__ = ["OBJECTIVES", "OUTPUT_NAMES", "EPSILON", "ClassCost", "DetectNetLoss",
           "build_detectnet_loss", "pack_targets", "cost_log_key"]

# The two learnable objectives, in TLT's order.
OBJECTIVES = ("cov", "bbox")
# Model output (and Keras loss key) of each objective.
OUTPUT_NAMES = {"cov": "output_cov", "bbox": "output_bbox"}
# TLT's guard inside the BCE logarithms.
EPSILON = 1e-5

_CLASS_DEFAULTS = {"class_weight": 1.0, "coverage_foreground_weight": 0.05}
_OBJECTIVE_DEFAULTS = {"initial_weight": 1.0, "weight_target": 1.0}
_COST_DEFAULTS = {"enable_autoweighting": True, "max_objective_weight": 0.9999,
                  "min_objective_weight": 0.0001}


@dataclass(frozen=True)
class ClassCost:
    """Loss settings of one class.

    Attributes:
        name: class name.
        class_weight: class weight normalised over all classes.
        coverage_foreground_weight: BCE weight of cells with coverage target > 0.5.
        initial_weights: objective -> initial weight normalised over the class's objectives.
        weight_targets: objective -> autoweighting target.
    """

    name: str
    class_weight: float
    coverage_foreground_weight: float
    initial_weights: dict
    weight_targets: dict


def cost_log_key(class_name: str, objective: str) -> str:
    """Key of a class's mean cost of one objective in Keras' training logs."""
    return f"{OUTPUT_NAMES[objective]}_mean_cost_{class_name}"


def pack_targets(cov, cov_mask, bbox, bbox_weight) -> dict:
    """Pack rasterizer outputs into the y_true the Keras losses expect.

    Works on one image ([C, Hg, Wg] maps) or a batch ([N, C, Hg, Wg]): channels are axis -3.

    Args:
        cov: coverage target [.., C, Hg, Wg].
        cov_mask: coverage loss mask [.., C, Hg, Wg].
        bbox: bbox targets [.., 4C, Hg, Wg].
        bbox_weight: bbox loss weights [.., C, Hg, Wg].

    Returns:
        {"output_cov": [.., 2C, Hg, Wg], "output_bbox": [.., 5C, Hg, Wg]} float32 tensors.
    """
    def cat(a, b):
        return tf.concat([tf.cast(a, tf.float32), tf.cast(b, tf.float32)], axis=-3)
    return {"output_cov": cat(cov, cov_mask), "output_bbox": cat(bbox, bbox_weight)}


class _ObjectiveLoss(keras.losses.Loss):
    """Keras loss of one output: per-image sum over classes of weighted mean costs."""

    def __init__(self, owner: "DetectNetLoss", objective: str):
        super().__init__(name=f"{objective}_loss", reduction="sum_over_batch_size")
        self._owner = owner
        self._objective = objective

    def call(self, y_true, y_pred):
        costs = self._owner.costs(self._objective, y_true, y_pred)          # [N, C]
        return ops.sum(costs * self._owner.cost_scales(self._objective), axis=1)


class DetectNetLoss:
    """The DetectNet_v2 cost function: Keras losses, cost metrics and objective weights.

    Build it with `build_detectnet_loss`, inside the distribution strategy's scope when there is
    one (the objective weights are variables).

    Args:
        classes: per-class settings, in network channel order.
        enable_autoweighting: re-weight objectives each epoch (read by `AutoWeighting`).
        min_objective_weight: lower clamp of autoweighted objective weights.
        max_objective_weight: upper clamp of autoweighted objective weights.
    """

    def __init__(self, classes, *, enable_autoweighting: bool = True,
                 min_objective_weight: float = 0.0001, max_objective_weight: float = 0.9999):
        self.classes = tuple(classes)
        self.enable_autoweighting = bool(enable_autoweighting)
        self.min_objective_weight = float(min_objective_weight)
        self.max_objective_weight = float(max_objective_weight)
        self._variables = {
            (cls.name, objective): tf.Variable(
                cls.initial_weights[objective], dtype=tf.float32, trainable=False,
                name=f"objective_weight_{cls.name}_{objective}")
            for cls in self.classes for objective in OBJECTIVES}
        fg = [cls.coverage_foreground_weight for cls in self.classes]
        self._foreground = tf.constant(fg, tf.float32)[None, :, None, None]
        self._class_weights = tf.constant([cls.class_weight for cls in self.classes], tf.float32)
        self._losses = {OUTPUT_NAMES[o]: _ObjectiveLoss(self, o) for o in OBJECTIVES}

    @property
    def class_names(self) -> tuple[str, ...]:
        """Class names in channel order."""
        return tuple(cls.name for cls in self.classes)

    @property
    def num_classes(self) -> int:
        """Number of classes C."""
        return len(self.classes)

    def objective_weights(self) -> dict[str, dict[str, float]]:
        """Current objective weights: class -> objective -> weight."""
        return {cls.name: {o: float(self._variables[cls.name, o].numpy()) for o in OBJECTIVES}
                for cls in self.classes}

    def set_objective_weights(self, weights) -> None:
        """Assign objective weights (class -> objective -> weight); others are kept."""
        for name, per_objective in weights.items():
            for objective, value in per_objective.items():
                self._variables[name, objective].assign(float(value))

    def cost_scales(self, objective: str):
        """[C] normalised class weight times current objective weight, read live."""
        weights = tf.stack([self._variables[cls.name, objective] for cls in self.classes])
        return self._class_weights * weights

    def costs(self, objective: str, y_true, y_pred):
        """Unweighted per-image, per-class mean costs [N, C] of one objective.

        Args:
            objective: "cov" or "bbox".
            y_true: packed targets (see the module docstring).
            y_pred: the matching model output.
        """
        c = self.num_classes
        y_true = ops.cast(y_true, "float32")
        y_pred = ops.cast(y_pred, "float32")
        if objective == "cov":
            target, mask = y_true[:, :c], y_true[:, c:]
            bce = -(target * ops.log(y_pred + EPSILON)
                    + (1.0 - target) * ops.log(1.0 - y_pred + EPSILON))
            weight = ops.where(target > 0.5, self._foreground, 1.0 - self._foreground)
            return ops.mean(mask * weight * bce, axis=(2, 3))
        target, weight = y_true[:, :4 * c], y_true[:, 4 * c:]
        shape = ops.shape(y_pred)
        distance = ops.reshape(ops.abs(y_pred - target), (shape[0], c, 4, shape[2], shape[3]))
        return ops.mean(weight[:, :, None] * distance, axis=(2, 3, 4))

    def losses(self) -> dict:
        """Keras losses by output name, for `model.compile(loss=...)`."""
        return dict(self._losses)

    def metrics(self) -> dict:
        """Per-class mean-cost metrics by output name, for `model.compile(metrics=...)`."""
        out = {}
        for objective in OBJECTIVES:
            out[OUTPUT_NAMES[objective]] = [
                keras.metrics.MeanMetricWrapper(self._cost_fn(objective, i),
                                                name=f"mean_cost_{cls.name}")
                for i, cls in enumerate(self.classes)]
        return out

    def compile_args(self) -> dict:
        """`loss` and `metrics` keyword arguments for `model.compile`."""
        return {"loss": self.losses(), "metrics": self.metrics()}

    def _cost_fn(self, objective: str, index: int):
        def cost(y_true, y_pred):
            return self.costs(objective, y_true, y_pred)[:, index]
        cost.__name__ = f"mean_cost_{self.classes[index].name}_{objective}"
        return cost


def _value(message, name: str, defaults: dict) -> float:
    # Proto3 `optional` fields: unset means the documented default, not 0.
    if hasattr(message, "HasField") and not message.HasField(name):
        return defaults[name]
    return getattr(message, name, defaults[name])


def build_detectnet_loss(cost_function_config, class_names) -> DetectNetLoss:
    """Build the loss from a spec's cost_function_config.

    Args:
        cost_function_config: `CostFunctionConfig` message.
        class_names: the network's classes in channel order; each needs a target_classes entry
            with a "cov" and a "bbox" objective.

    Returns:
        A `DetectNetLoss`.

    Raises:
        SpecError: a class or objective is missing, or all class weights are 0.
    """
    path = "cost_function_config.target_classes"
    if not list(class_names):
        raise SpecError(f"{path}: DetectNet_v2 needs at least one class", field=path)
    entries = {t.name: (i, t) for i, t in enumerate(cost_function_config.target_classes)}
    raw = []
    for name in class_names:
        if name not in entries:
            have = ", ".join(entries) or "none"
            raise SpecError(f'{path} has no entry for class "{name}" (entries: {have})',
                            field=path)
        index, target = entries[name]
        objectives = {o.name: o for o in target.objectives}
        missing = [o for o in OBJECTIVES if o not in objectives]
        if missing:
            raise SpecError(f'{path}[{index}].objectives: class "{name}" has no '
                            f'{" or ".join(repr(m) for m in missing)} objective '
                            f"(DetectNet_v2 trains both cov and bbox)",
                            field=f"{path}[{index}].objectives")
        initial = {o: float(_value(objectives[o], "initial_weight", _OBJECTIVE_DEFAULTS))
                   for o in OBJECTIVES}
        total = sum(initial.values())
        raw.append(dict(
            name=name,
            class_weight=float(_value(target, "class_weight", _CLASS_DEFAULTS)),
            coverage_foreground_weight=float(
                _value(target, "coverage_foreground_weight", _CLASS_DEFAULTS)),
            initial_weights={o: (w / total if total else 0.0) for o, w in initial.items()},
            weight_targets={o: float(_value(objectives[o], "weight_target", _OBJECTIVE_DEFAULTS))
                            for o in OBJECTIVES}))
    class_total = sum(r["class_weight"] for r in raw)
    if class_total <= 0:
        raise SpecError(f"{path}: the class_weight of {', '.join(class_names)} sum to 0; "
                        f"at least one must be > 0", field=path)
    classes = [ClassCost(**{**r, "class_weight": r["class_weight"] / class_total}) for r in raw]
    return DetectNetLoss(
        classes,
        enable_autoweighting=bool(_value(cost_function_config, "enable_autoweighting",
                                         _COST_DEFAULTS)),
        min_objective_weight=float(_value(cost_function_config, "min_objective_weight",
                                          _COST_DEFAULTS)),
        max_objective_weight=float(_value(cost_function_config, "max_objective_weight",
                                          _COST_DEFAULTS)))
