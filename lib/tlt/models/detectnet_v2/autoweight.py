"""Objective autoweighting: rebalance the cov and bbox costs of every class after each epoch.

TLT's rule (CostAutoWeightHook), per class: with m_o the epoch's mean cost of objective o,

    w_o = weight_target_o / m_o   (0 when m_o is 0)
    w_o = clamp(w_o / sum_o w_o, min_objective_weight, max_objective_weight)

and the old weights are kept when every w_o is 0. The new weights apply from the next epoch.
"""

from __future__ import annotations

import logging

import keras

from tlt.errors import TLTError
from tlt.models.detectnet_v2.loss import OBJECTIVES, DetectNetLoss, cost_log_key

__all__ = ["AutoWeighting", "autoweight_update"]

logger = logging.getLogger(__name__)


def autoweight_update(mean_costs: dict, weight_targets: dict, old_weights: dict, *,
                      min_weight: float, max_weight: float) -> dict:
    """New objective weights of one class from its epoch mean costs.

    Args:
        mean_costs: objective -> mean cost over the epoch.
        weight_targets: objective -> weight_target.
        old_weights: objective -> weight used during the epoch (kept if all costs are 0).
        min_weight: lower clamp.
        max_weight: upper clamp.

    Returns:
        objective -> new weight.
    """
    raw = {o: (weight_targets[o] / mean_costs[o] if mean_costs[o] else 0.0) for o in mean_costs}
    total = sum(raw.values())
    if total == 0:
        return dict(old_weights)
    return {o: min(max(w / total, min_weight), max_weight) for o, w in raw.items()}


def _format(weights: dict) -> str:
    return "; ".join(f"{name}: " + " ".join(f"{o}={w:.6g}" for o, w in per.items())
                     for name, per in weights.items())


class AutoWeighting(keras.callbacks.Callback):
    """Keras callback applying `autoweight_update` to a `DetectNetLoss` at each epoch end.

    It also logs one INFO line per epoch with the objective weights used during that epoch (and
    the next ones when autoweighting is on) and adds them to the epoch logs as
    `objective_weight_<class>_<objective>`, so CSV/TensorBoard loggers placed after it record
    them. With enable_autoweighting off the weights stay at their initial values.

    Args:
        loss: the loss the model was compiled with (its `metrics()` included).
    """

    def __init__(self, loss: DetectNetLoss):
        super().__init__()
        self.loss = loss
        self.history: list[dict] = []

    def _mean_costs(self, logs: dict) -> dict:
        costs = {}
        for name in self.loss.class_names:
            costs[name] = {}
            for objective in OBJECTIVES:
                key = cost_log_key(name, objective)
                if key not in logs:
                    raise TLTError(f"autoweighting: the epoch logs have no {key!r}; compile the "
                                   f"model with the DetectNetLoss metrics (loss.compile_args())")
                costs[name][objective] = float(logs[key])
        return costs

    def on_epoch_end(self, epoch, logs=None):
        """Record the weights used this epoch and compute the next epoch's."""
        logs = logs if logs is not None else {}
        used = self.loss.objective_weights()
        for name, per in used.items():
            for objective, value in per.items():
                logs[f"objective_weight_{name}_{objective}"] = value
        if not self.loss.enable_autoweighting:
            logger.info("epoch %d objective weights (autoweighting off): %s", epoch + 1,
                        _format(used))
            self.history.append({"used": used, "next": used})
            return
        costs = self._mean_costs(logs)
        new = {cls.name: autoweight_update(
                   costs[cls.name], cls.weight_targets, used[cls.name],
                   min_weight=self.loss.min_objective_weight,
                   max_weight=self.loss.max_objective_weight)
               for cls in self.loss.classes}
        self.loss.set_objective_weights(new)
        self.history.append({"used": used, "mean_costs": costs, "next": new})
        logger.info("epoch %d objective weights used: %s | mean costs: %s | next: %s",
                    epoch + 1, _format(used), _format(costs), _format(new))
