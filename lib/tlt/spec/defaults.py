"""Documented defaults of every spec schema, applied in one place (used by ``tlt.spec``).

``DEFAULTS`` maps a message's full name to {field: default}. A scalar with presence (proto3
``optional``) gets its default when unset; a plain string when empty; a repeated field when
empty; a sub-message marked ``SECTION`` is created when absent (and then filled in turn), so
consumers can read ``spec.training_config.batch_size_per_gpu`` whatever the file left out.
Map and repeated sections (per-class settings) have no defaults.
"""

from __future__ import annotations

from google.protobuf.message import Message

__all__ = ["SECTION", "DEFAULTS", "apply_defaults", "normalise"]

SECTION = object()   # marks a sub-message created with its defaults when the spec leaves it out

DEFAULTS: dict[str, dict[str, object]] = {
    # dataset_export_config.proto
    "tlt.KITTIConfig": {"image_dir_name": "images", "label_dir_name": "labels",
                        "image_extension": ".png", "num_partitions": 2, "num_shards": 10,
                        "partition_mode": "random", "val_split": 10.0},
    # classification_config.proto
    "tlt.ClassificationExperiment": {"model_config": SECTION, "train_config": SECTION,
                                     "eval_config": SECTION, "random_seed": 42},
    "tlt.ClassificationModelConfig": {"arch": "resnet", "n_layers": 18,
                                      "input_image_size": "3,224,224", "use_bias": True,
                                      "use_batch_norm": True, "all_projections": True},
    "tlt.ClassificationTrainConfig": {"optimizer": "sgd", "optimizer_config": SECTION,
                                      "batch_size_per_gpu": 32, "n_epochs": 80, "n_workers": 8,
                                      "reg_config": SECTION, "lr_config": SECTION,
                                      "checkpoint_interval": 1, "augmentation_config": SECTION},
    "tlt.OptimizerParams": {"sgd": SECTION, "adam": SECTION, "rmsprop": SECTION},
    "tlt.SGDParams": {"momentum": 0.9},
    "tlt.AdamParams": {"beta1": 0.9, "beta2": 0.999, "epsilon": 1e-7},
    "tlt.RMSpropParams": {"rho": 0.9, "epsilon": 1e-7},
    "tlt.RegConfig": {"type": "L2", "scope": "Conv2D,Dense", "weight_decay": 5e-5},
    "tlt.LRConfig": {"scheduler": "step", "learning_rate": 0.006, "step_size": 10, "gamma": 0.1,
                     "annealing_points": [0.3, 0.6, 0.8], "annealing_divider": 10.0},
    "tlt.ClassificationAugmentationConfig": {
        "enable_random_crop": True, "random_crop_min_scale": 0.08, "random_crop_max_scale": 1.0,
        "enable_horizontal_flip": True, "brightness": 0.4, "contrast": 0.4, "saturation": 0.4,
        "hue": 0.1},
    "tlt.ClassificationEvalConfig": {"batch_size": 32, "top_k": 5, "n_workers": 8},
    # detection_config.proto
    "tlt.DetectionExperiment": {
        "random_seed": 42, "model_config": SECTION, "bbox_rasterizer_config": SECTION,
        "postprocessing_config": SECTION, "cost_function_config": SECTION,
        "training_config": SECTION, "augmentation_config": SECTION,
        "evaluation_config": SECTION, "dataset_config": SECTION},
    "tlt.DetectionModelConfig": {"template": "resnet", "num_layers": 18, "use_batch_norm": True,
                                 "all_projections": True, "training_precision": SECTION,
                                 "objective_set": SECTION},
    "tlt.DetectionModelConfig.ObjectiveSet": {"cov": SECTION, "bbox": SECTION},
    "tlt.DetectionModelConfig.BboxObjective": {"scale": 35.0, "offset": 0.5},
    "tlt.BboxRasterizerConfig": {"deadzone_radius": 0.67},
    "tlt.BboxRasterizerConfig.TargetClassConfig": {
        "cov_center_x": 0.5, "cov_center_y": 0.5, "cov_radius_x": 0.4, "cov_radius_y": 0.4,
        "bbox_min_radius": 1.0},
    "tlt.PostProcessingConfig.TargetClassConfig": {"clustering_config": SECTION},
    "tlt.ClusteringConfig": {"coverage_threshold": 0.005, "dbscan_eps": 0.15,
                             "dbscan_min_samples": 0.05, "minimum_bounding_box_height": 20,
                             "nms_iou_threshold": 0.5, "dbscan_confidence_threshold": 0.1},
    "tlt.CostFunctionConfig": {"enable_autoweighting": True, "max_objective_weight": 0.9999,
                               "min_objective_weight": 0.0001},
    "tlt.CostFunctionConfig.TargetClass": {"class_weight": 1.0, "coverage_foreground_weight": 0.05},
    "tlt.CostFunctionConfig.Objective": {"initial_weight": 1.0, "weight_target": 1.0},
    "tlt.TrainingConfig": {"batch_size_per_gpu": 16, "num_epochs": 80, "learning_rate": SECTION,
                           "regularizer": SECTION, "optimizer": SECTION, "cost_scaling": SECTION,
                           "checkpoint_interval": 10},
    "tlt.LearningRateConfig": {"soft_start_annealing_schedule": SECTION},
    "tlt.SoftStartAnnealingSchedule": {"min_learning_rate": 5e-6, "max_learning_rate": 5e-4,
                                       "soft_start": 0.1, "annealing": 0.7},
    "tlt.OptimizerConfig": {"adam": SECTION},
    "tlt.AdamOptimizerConfig": {"epsilon": 1e-8, "beta1": 0.9, "beta2": 0.999},
    "tlt.CostScalingConfig": {"initial_exponent": 20.0, "increment": 0.005, "decrement": 1.0},
    "tlt.AugmentationConfig": {"preprocessing": SECTION, "spatial_augmentation": SECTION,
                               "color_augmentation": SECTION},
    "tlt.PreprocessingConfig": {"output_image_width": 960, "output_image_height": 544,
                                "output_image_channel": 3, "min_bbox_width": 1.0,
                                "min_bbox_height": 1.0},
    "tlt.SpatialAugmentation": {"hflip_probability": 0.5, "zoom_min": 1.0, "zoom_max": 1.0,
                                "translate_max_x": 8.0, "translate_max_y": 8.0},
    "tlt.ColorAugmentation": {"hue_rotation_max": 25.0, "saturation_shift_max": 0.2,
                              "contrast_scale_max": 0.1, "contrast_center": 0.5},
    "tlt.EvaluationConfig": {"validation_period_during_training": 10, "first_validation_epoch": 1,
                             "num_recall_points": 11},
    "tlt.EvaluationBoxConfig": {"maximum_height": 9999, "maximum_occlusion": 3,
                                "truncation": SECTION},
    "tlt.EvaluationBoxConfig.Truncation": {"maximum": 1.0},
    "tlt.WeightHeight": {"maximum_height": 9999},
    "tlt.DatasetConfig": {"image_extension": "png"},
    # cluster_params.proto
    "tlt.ClusterParams": {"dbscan_criterion": "IOU"},
}


def apply_defaults(message: Message) -> None:
    """Fill every unset field that has a documented default, recursively (in place)."""
    table = DEFAULTS.get(message.DESCRIPTOR.full_name, {})
    for name, default in table.items():
        fd = message.DESCRIPTOR.fields_by_name[name]
        if default is SECTION:
            if not message.HasField(name):
                getattr(message, name).SetInParent()
        elif fd.is_repeated:
            if not len(getattr(message, name)):
                getattr(message, name).extend(default)
        elif fd.has_presence:
            if not message.HasField(name):
                setattr(message, name, default)
        elif not getattr(message, name):
            setattr(message, name, default)
    for fd in message.DESCRIPTOR.fields:
        if fd.message_type is None:
            continue
        value = getattr(message, fd.name)
        if fd.message_type.GetOptions().map_entry:
            if fd.message_type.fields_by_name["value"].message_type is not None:
                for item in value.values():
                    apply_defaults(item)
        elif fd.is_repeated:
            for item in value:
                apply_defaults(item)
        elif message.HasField(fd.name):
            apply_defaults(value)


def normalise(message: Message) -> None:
    """Resolve aliases and defaults that depend on other fields (in place, before apply_defaults)."""
    name = message.DESCRIPTOR.full_name
    if name == "tlt.DetectionExperiment":
        model = message.model_config
        # "arch" (later TLT releases) and "template" (TLT v1) name the same thing.
        if model.arch and not model.template:
            model.template = model.arch
    elif name == "tlt.ClusterParams":
        if not message.postproc_classes:
            message.postproc_classes.extend(message.target_classes)
        for cls in message.target_classes:
            if cls not in message.output_map:
                message.output_map[cls] = cls
