"""DetectNet_v2 loss and autoweighting: hand-computed costs, weights and updates."""

from __future__ import annotations

import logging
import math

import numpy as np
import pytest
from google.protobuf import text_format

from tlt.errors import SpecError, TLTError
from tlt.models.detectnet_v2.autoweight import AutoWeighting, autoweight_update
from tlt.models.detectnet_v2.loss import build_detectnet_loss, cost_log_key, pack_targets
from tlt.proto.detection_config_pb2 import CostFunctionConfig

GUIDE_COSTS = """
  target_classes { name: "car" class_weight: 1.0 coverage_foreground_weight: 0.05
    objectives { name: "cov" initial_weight: 1.0 weight_target: 1.0 }
    objectives { name: "bbox" initial_weight: 10.0 weight_target: 10.0 } }
  target_classes { name: "cyclist" class_weight: 3.0 coverage_foreground_weight: 0.2
    objectives { name: "cov" initial_weight: 1.0 weight_target: 1.0 }
    objectives { name: "bbox" initial_weight: 10.0 weight_target: 1.0 } }
  enable_autoweighting: true max_objective_weight: 0.9999 min_objective_weight: 0.0001
"""


def costs_config(text=GUIDE_COSTS) -> CostFunctionConfig:
    return text_format.Parse(text, CostFunctionConfig())


def bce(t, p):
    return -(t * math.log(p + 1e-5) + (1 - t) * math.log(1 - p + 1e-5))


def test_initial_weights_are_normalised_like_tlt():
    loss = build_detectnet_loss(costs_config(), ["car", "cyclist"])
    assert [c.class_weight for c in loss.classes] == [0.25, 0.75]
    weights = loss.objective_weights()
    assert weights["car"]["cov"] == pytest.approx(1 / 11)
    assert weights["car"]["bbox"] == pytest.approx(10 / 11)
    assert loss.classes[1].weight_targets == {"cov": 1.0, "bbox": 1.0}
    assert loss.enable_autoweighting and loss.max_objective_weight == pytest.approx(0.9999)


def test_coverage_cost_is_masked_foreground_weighted_bce():
    loss = build_detectnet_loss(costs_config(), ["car", "cyclist"])
    target = np.array([[[1.0, 0.0], [0.6, 0.0]], [[0.0, 0.0], [0.0, 0.4]]], np.float32)
    mask = np.array([[[1, 1], [0, 1]], [[1, 1], [1, 1]]], np.float32)
    pred = np.array([[[0.8, 0.1], [0.5, 0.3]], [[0.2, 0.1], [0.7, 0.5]]], np.float32)
    y_true = pack_targets(target[None], mask[None], np.zeros((1, 8, 2, 2)), np.zeros((1, 2, 2, 2)))
    costs = np.asarray(loss.costs("cov", y_true["output_cov"], pred[None]))
    # car (foreground weight 0.05): the masked cell (1, 0) drops out; mean over all 4 cells.
    car = (0.05 * bce(1, 0.8) + 0.95 * bce(0, 0.1) + 0.95 * bce(0, 0.3)) / 4
    # cyclist (0.2): 0.4 is not > 0.5, so every cell weighs 0.8.
    cyclist = 0.8 * (bce(0, 0.2) + bce(0, 0.1) + bce(0, 0.7) + bce(0.4, 0.5)) / 4
    np.testing.assert_allclose(costs, [[car, cyclist]], rtol=1e-5)


def test_bbox_cost_is_l1_weighted_by_bbox_weight():
    loss = build_detectnet_loss(costs_config(), ["car", "cyclist"])
    bbox = np.zeros((1, 8, 1, 2), np.float32)
    bbox[0, 0:4, 0, 0] = [1.0, 2.0, 3.0, 4.0]          # car, cell (0, 0)
    weight = np.array([[[[0.5, 0.0]], [[0.0, 0.0]]]], np.float32)
    pred = np.zeros((1, 8, 1, 2), np.float32)
    pred[0, 0:4, 0, 0] = [1.5, 2.0, 2.0, 4.0]           # |d| = 0.5, 0, 1, 0
    pred[0, 0:4, 0, 1] = 9.0                            # weight 0: costs nothing
    pred[0, 4:8] = 1.0                                  # cyclist: weight 0 everywhere
    y_true = pack_targets(np.zeros((1, 2, 1, 2)), np.ones((1, 2, 1, 2)), bbox, weight)
    assert y_true["output_bbox"].shape == (1, 10, 1, 2)
    assert y_true["output_cov"].shape == (1, 4, 1, 2)
    costs = np.asarray(loss.costs("bbox", y_true["output_bbox"], pred))
    np.testing.assert_allclose(costs, [[0.5 * 1.5 / 8, 0.0]], rtol=1e-6)


def test_keras_losses_weigh_class_costs_and_read_weights_live():
    loss = build_detectnet_loss(costs_config(), ["car", "cyclist"])
    rng = np.random.default_rng(0)
    y_true = pack_targets(rng.uniform(size=(3, 2, 2, 4)), np.ones((3, 2, 2, 4)),
                          rng.normal(size=(3, 8, 2, 4)), rng.uniform(size=(3, 2, 2, 4)))
    pred = {"output_cov": rng.uniform(0.05, 0.95, size=(3, 2, 2, 4)).astype(np.float32),
            "output_bbox": rng.normal(size=(3, 8, 2, 4)).astype(np.float32)}
    losses = loss.losses()
    for objective, output in (("cov", "output_cov"), ("bbox", "output_bbox")):
        mean_costs = np.asarray(loss.costs(objective, y_true[output], pred[output])).mean(axis=0)
        weights = loss.objective_weights()
        expected = (0.25 * weights["car"][objective] * mean_costs[0]
                    + 0.75 * weights["cyclist"][objective] * mean_costs[1])
        got = float(losses[output](y_true[output], pred[output]))
        assert got == pytest.approx(expected, rel=1e-5)
        loss.set_objective_weights({"car": {objective: 0.5}, "cyclist": {objective: 0.0}})
        got = float(losses[output](y_true[output], pred[output]))
        assert got == pytest.approx(0.25 * 0.5 * mean_costs[0], rel=1e-5)


def test_metrics_are_named_for_the_logs():
    loss = build_detectnet_loss(costs_config(), ["car", "cyclist"])
    metrics = loss.metrics()
    assert [m.name for m in metrics["output_cov"]] == ["mean_cost_car", "mean_cost_cyclist"]
    assert [m.name for m in metrics["output_bbox"]] == ["mean_cost_car", "mean_cost_cyclist"]
    assert cost_log_key("car", "bbox") == "output_bbox_mean_cost_car"


@pytest.mark.parametrize("text, classes, message", [
    (GUIDE_COSTS, ["car", "truck"],
     r'cost_function_config.target_classes has no entry for class "truck" '
     r'\(entries: car, cyclist\)'),
    ('target_classes { name: "car" objectives { name: "cov" } }', ["car"],
     r"cost_function_config.target_classes\[0\].objectives: class \"car\" has no 'bbox' "
     r"objective"),
    ('target_classes { name: "car" class_weight: 0 objectives { name: "cov" } '
     'objectives { name: "bbox" } }', ["car"],
     r"cost_function_config.target_classes: the class_weight of car sum to 0"),
    (GUIDE_COSTS, [], r"needs at least one class"),
])
def test_config_errors_name_the_field(text, classes, message):
    with pytest.raises(SpecError, match=message):
        build_detectnet_loss(costs_config(text), classes)


def test_autoweight_update_by_hand():
    # 1/0.5 = 2 and 10/0.1 = 100, normalised: 2/102 and 100/102.
    new = autoweight_update({"cov": 0.5, "bbox": 0.1}, {"cov": 1.0, "bbox": 10.0},
                            {"cov": 0.3, "bbox": 0.7}, min_weight=0.0001, max_weight=0.9999)
    assert new == pytest.approx({"cov": 2 / 102, "bbox": 100 / 102})
    # Clamped after normalisation: 1/1 vs 1/1e-6 -> 1e-6/(1+1e-6) raised to the minimum 0.01.
    new = autoweight_update({"cov": 1.0, "bbox": 1e-6}, {"cov": 1.0, "bbox": 1.0},
                            {"cov": 0.5, "bbox": 0.5}, min_weight=0.01, max_weight=0.95)
    assert new == pytest.approx({"cov": 0.01, "bbox": 0.95})
    # A zero cost contributes weight 0 (then clamped); all-zero costs keep the old weights.
    new = autoweight_update({"cov": 0.2, "bbox": 0.0}, {"cov": 1.0, "bbox": 1.0},
                            {"cov": 0.5, "bbox": 0.5}, min_weight=0.0001, max_weight=0.9999)
    assert new == pytest.approx({"cov": 0.9999, "bbox": 0.0001})
    assert autoweight_update({"cov": 0.0, "bbox": 0.0}, {"cov": 1.0, "bbox": 1.0},
                             {"cov": 0.3, "bbox": 0.7}, min_weight=0.0, max_weight=1.0) == \
        {"cov": 0.3, "bbox": 0.7}


def epoch_logs(costs):
    return {cost_log_key(name, o): value for name, per in costs.items() for o, value in per.items()}


def test_callback_updates_the_loss_weights_and_logs_them(caplog):
    loss = build_detectnet_loss(costs_config(), ["car", "cyclist"])
    callback = AutoWeighting(loss)
    logs = epoch_logs({"car": {"cov": 0.2, "bbox": 0.05}, "cyclist": {"cov": 0.4, "bbox": 0.1}})
    with caplog.at_level(logging.INFO, logger="tlt.models.detectnet_v2.autoweight"):
        callback.on_epoch_end(0, logs)
    # car: 1/0.2 = 5, 10/0.05 = 200 -> 5/205, 200/205; cyclist: 1/0.4 = 2.5, 1/0.1 = 10.
    expected = {"car": {"cov": 5 / 205, "bbox": 200 / 205},
                "cyclist": {"cov": 2.5 / 12.5, "bbox": 10 / 12.5}}
    weights = loss.objective_weights()
    for name in expected:
        assert weights[name] == pytest.approx(expected[name], rel=1e-6)
    # The logs carry the weights used during the epoch (the initial 1/11, 10/11).
    assert logs["objective_weight_car_cov"] == pytest.approx(1 / 11)
    assert logs["objective_weight_cyclist_bbox"] == pytest.approx(10 / 11)
    [record] = caplog.records
    assert record.getMessage().startswith(
        "epoch 1 objective weights used: car: cov=0.0909091 bbox=0.909091; "
        "cyclist: cov=0.0909091 bbox=0.909091 | mean costs: car: cov=0.2 bbox=0.05")
    assert "next: car: cov=0.0243902 bbox=0.97561; cyclist: cov=0.2 bbox=0.8" in record.getMessage()


def test_disabled_autoweighting_keeps_initial_weights(caplog):
    config = costs_config(GUIDE_COSTS.replace("enable_autoweighting: true",
                                              "enable_autoweighting: false"))
    loss = build_detectnet_loss(config, ["car", "cyclist"])
    callback = AutoWeighting(loss)
    with caplog.at_level(logging.INFO, logger="tlt.models.detectnet_v2.autoweight"):
        for epoch in range(2):
            callback.on_epoch_end(epoch, epoch_logs({"car": {"cov": 0.2, "bbox": 0.05},
                                                     "cyclist": {"cov": 0.4, "bbox": 0.1}}))
    assert loss.objective_weights()["car"] == pytest.approx({"cov": 1 / 11, "bbox": 10 / 11})
    assert [r.getMessage().split(":")[0] for r in caplog.records] == [
        "epoch 1 objective weights (autoweighting off)",
        "epoch 2 objective weights (autoweighting off)"]


def test_callback_names_missing_cost_metrics():
    loss = build_detectnet_loss(costs_config(), ["car", "cyclist"])
    with pytest.raises(TLTError, match="the epoch logs have no 'output_cov_mean_cost_car'"):
        AutoWeighting(loss).on_epoch_end(0, {"loss": 1.0})
