"""Load-time range checks of every spec schema (used by ``tlt.spec``).

``CHECKS`` maps a message's full name to its checks; each yields ``(dotted field path, problem)``
pairs such as ``("train_config.n_epochs", "must be > 0, got 0")``. ``violations`` walks a message
and its sub-messages (repeated and map entries included) through them.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator

from google.protobuf.message import Message

from tlt.spec.locate import child_path, key_repr

__all__ = ["CHECKS", "CLASSIFICATION_ARCHS", "DETECTION_ARCHS", "ARCH_DEPTHS", "IMAGE_EXTENSIONS",
           "MAX_SHARDS", "MAX_PARTITIONS", "MAX_BATCH", "MAX_EPOCHS", "MAX_WORKERS", "MAX_IMAGE_SIDE",
           "MAX_SOURCE_SIDE", "MAX_CLASSES", "MAX_TOP_K", "MAX_RECALL_POINTS", "violations",
           "parse_image_size"]

CLASSIFICATION_ARCHS = ("resnet", "vgg", "alexnet", "googlenet", "mobilenet_v1", "mobilenet_v2")
DETECTION_ARCHS = ("resnet", "vgg", "googlenet", "mobilenet_v1", "mobilenet_v2")
ARCH_DEPTHS = {"resnet": (10, 18, 34, 50, 101), "vgg": (16, 19)}
IMAGE_EXTENSIONS = ("png", "jpg", "jpeg")

# Upper bounds of the counts and sizes a spec sets. A typo or a hostile value (num_shards:
# 2147483647) would otherwise hang a stage or flood the disk long before anything fails; each bound
# is far above any real use and is named in the error, e.g. "must be in [1, 1024], got 2147483647".
MAX_SHARDS = 1024           # TFRecord files per partition
MAX_PARTITIONS = 100        # folds of a data set
MAX_BATCH = 4096            # images per step
MAX_EPOCHS = 10_000         # epochs, and every interval counted in epochs
MAX_WORKERS = 256           # data-loading threads
MAX_IMAGE_SIDE = 16_384     # network input width / height, in pixels
MAX_SOURCE_SIDE = 65_535    # source image coordinates (crop), the largest JPEG side
MAX_CLASSES = 1000          # classes a detector is trained on
MAX_TOP_K = 1000            # k of the top-k accuracy
MAX_RECALL_POINTS = 1000    # recall points of SAMPLE-mode AP


def _fmt(value) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return f"{value:.7g}"
    if isinstance(value, str):
        return json.dumps(value)
    return str(value)


Check = Callable[[Message, str], Iterator[tuple[str, str]]]


def _gt(name: str, bound: float = 0) -> Check:
    def check(m, p):
        if not getattr(m, name) > bound:
            yield child_path(p, name), f"must be > {bound}, got {_fmt(getattr(m, name))}"
    return check


def _ge(name: str, bound: float = 0) -> Check:
    def check(m, p):
        if not getattr(m, name) >= bound:
            yield child_path(p, name), f"must be >= {bound}, got {_fmt(getattr(m, name))}"
    return check


def _in(name: str, lo: float, hi: float, *, lo_open: bool = False, hi_open: bool = False) -> Check:
    def check(m, p):
        v = getattr(m, name)
        if (v <= lo if lo_open else v < lo) or (v >= hi if hi_open else v > hi):
            rng = f"{'(' if lo_open else '['}{_fmt(lo)}, {_fmt(hi)}{')' if hi_open else ']'}"
            yield child_path(p, name), f"must be in {rng}, got {_fmt(v)}"
    return check


def _count(name: str, hi: int, lo: int = 1) -> Check:
    """An integer count or size in [lo, hi]."""
    return _in(name, lo, hi)


def _prob(*names: str) -> list[Check]:
    return [_in(n, 0.0, 1.0) for n in names]


def _le(low: str, high: str) -> Check:
    def check(m, p):
        if getattr(m, low) > getattr(m, high):
            yield (child_path(p, low), f"must be <= {high} ({_fmt(getattr(m, high))}), "
                                       f"got {_fmt(getattr(m, low))}")
    return check


def _one_of(name: str, choices: tuple[str, ...], *, lower: bool = False) -> Check:
    def check(m, p):
        v = getattr(m, name)
        if (v.lower() if lower else v) not in choices:
            yield child_path(p, name), f"must be one of: {', '.join(choices)}; got {_fmt(v)}"
    return check


def _ext(name: str) -> Check:
    def check(m, p):
        v = getattr(m, name)
        if v.lstrip(".").lower() not in IMAGE_EXTENSIONS:
            yield (child_path(p, name),
                   f"must be one of: {', '.join(IMAGE_EXTENSIONS)} (leading dot optional); got {_fmt(v)}")
    return check


def _arch(arch_field: str, depth_field: str, archs: tuple[str, ...]) -> Check:
    def check(m, p):
        arch = getattr(m, arch_field)
        if arch not in archs:
            yield child_path(p, arch_field), f"must be one of: {', '.join(archs)}; got {_fmt(arch)}"
        elif arch in ARCH_DEPTHS and getattr(m, depth_field) not in ARCH_DEPTHS[arch]:
            depths = ", ".join(str(d) for d in ARCH_DEPTHS[arch])
            yield (child_path(p, depth_field),
                   f"must be one of {depths} for {arch}, got {getattr(m, depth_field)}")
    return check


def parse_image_size(text: str) -> tuple[int, int, int] | None:
    """Parse "C,H,W" into ints with C in {1, 3} and H, W in [1, MAX_IMAGE_SIDE]; None when malformed."""
    try:
        c, h, w = (int(part) for part in text.split(","))
    except ValueError:
        return None
    sides_ok = 0 < h <= MAX_IMAGE_SIDE and 0 < w <= MAX_IMAGE_SIDE
    return (c, h, w) if c in (1, 3) and sides_ok else None


def _image_size(m, p):
    if parse_image_size(m.input_image_size) is None:
        yield (child_path(p, "input_image_size"),
               f'must be "C,H,W" with C in {{1, 3}} and H, W in [1, {MAX_IMAGE_SIDE}], '
               f"got {_fmt(m.input_image_size)}")


def _sequence_file(m, p):
    if m.partition_mode == "sequence" and not m.kitti_sequence_to_frames_file:
        yield (child_path(p, "kitti_sequence_to_frames_file"),
               'is required when partition_mode is "sequence"')


def _required(*names: str) -> Check:
    def check(m, p):
        for name in names:
            field = m.DESCRIPTOR.fields_by_name[name]
            unset = not m.HasField(name) if field.message_type else not getattr(m, name)
            if unset:
                yield child_path(p, name), "is required"
    return check


def _annealing_points(m, p):
    points = list(m.annealing_points)
    for i, point in enumerate(points):
        if not 0.0 < point < 1.0 or (i and point <= points[i - 1]):
            yield (f"{child_path(p, 'annealing_points')}[{i}]",
                   f"must be increasing fractions in (0, 1), got {_fmt(point)}")
            return


def _crop(m, p):
    if any((m.crop_left, m.crop_top, m.crop_right, m.crop_bottom)):
        if min(m.crop_left, m.crop_top) < 0:
            yield child_path(p, "crop_left"), "crop offsets must be >= 0"
        for name in ("crop_right", "crop_bottom"):
            if getattr(m, name) > MAX_SOURCE_SIDE:
                yield (child_path(p, name),
                       f"must be <= {MAX_SOURCE_SIDE} (pixels of the source image), got {getattr(m, name)}")
        if m.crop_right <= m.crop_left:
            yield child_path(p, "crop_right"), f"must be > crop_left ({m.crop_left}), got {m.crop_right}"
        if m.crop_bottom <= m.crop_top:
            yield child_path(p, "crop_bottom"), f"must be > crop_top ({m.crop_top}), got {m.crop_bottom}"


def _multiple_of_16(*names: str) -> Check:
    def check(m, p):
        for name in names:
            v = getattr(m, name)
            if v <= 0 or v % 16 or v > MAX_IMAGE_SIDE:
                yield (child_path(p, name),
                       f"must be a multiple of 16 (the output stride) in [16, {MAX_IMAGE_SIDE}], got {v}")
    return check


def _objective_names(m, p):
    for i, objective in enumerate(m.objectives):
        if objective.name not in ("cov", "bbox"):
            yield (f"{child_path(p, 'objectives')}[{i}].name",
                   f'must be one of: cov, bbox; got {_fmt(objective.name)}')


def _detection_classes(m, p):
    """The per-class sections must name the same classes as the cost function."""
    names = [t.name for t in m.cost_function_config.target_classes]
    if len(names) > MAX_CLASSES:
        yield ("cost_function_config.target_classes",
               f"must name at most {MAX_CLASSES} classes, got {len(names)}")
        return
    for i, name in enumerate(names):
        if names.index(name) != i:
            yield (f"cost_function_config.target_classes[{i}].name",
                   f"repeats class {_fmt(name)}")
    if not names:
        return
    for section in ("bbox_rasterizer_config", "postprocessing_config"):
        keys = sorted(getattr(m, section).target_class_config)
        if keys and keys != sorted(names):
            yield (f"{section}.target_class_config",
                   f"has classes {', '.join(keys)} but cost_function_config.target_classes has "
                   f"{', '.join(sorted(names))}")
    for key, target in sorted(m.dataset_config.target_class_mapping.items()):
        if target not in names:
            yield (f"dataset_config.target_class_mapping[{key_repr(key)}]",
                   f"maps to {_fmt(target)}, which is not one of cost_function_config.target_classes "
                   f"({', '.join(names)})")


def _detection_arch(m, p):
    if m.arch and m.template and m.arch != m.template:
        yield child_path(p, "arch"), f"must agree with template ({_fmt(m.template)}), got {_fmt(m.arch)}"


def _cluster_maps(m, p):
    classes = list(m.target_classes)
    if not classes:
        yield "target_classes", "is required (the network's classes in training order)"
        return
    for name in ("dbscan_eps", "dbscan_min_samples", "min_cov_to_cluster", "min_obj_height",
                 "confidence_th", "output_map", "color"):
        mapping = getattr(m, name)
        for key in mapping:
            if key != "default" and key not in classes:
                yield (f"{name}[{key_repr(key)}]",
                       f'is not one of target_classes ({", ".join(classes)}) or "default"')
        if name in ("dbscan_eps", "dbscan_min_samples", "min_cov_to_cluster", "min_obj_height"):
            missing = [c for c in classes if c not in mapping]
            if missing and "default" not in mapping:
                yield name, f'has no entry for {", ".join(missing)} and no "default"'
    for i, cls in enumerate(m.postproc_classes):
        if cls not in classes:
            yield f"postproc_classes[{i}]", f'{_fmt(cls)} is not one of target_classes ({", ".join(classes)})'


def _map_range(name: str, lo: float, hi: float | None, *, lo_open: bool = False) -> Check:
    def check(m, p):
        for key, v in sorted(getattr(m, name).items()):
            if (v <= lo if lo_open else v < lo) or (hi is not None and v > hi):
                rng = f"{'(' if lo_open else '['}{_fmt(lo)}, {_fmt(hi)}]" if hi is not None \
                    else f"{'>' if lo_open else '>='} {_fmt(lo)}"
                where = f"{child_path(p, name)}[{key_repr(key)}]"
                yield where, f"must be {'in ' if hi is not None else ''}{rng}, got {_fmt(v)}"
    return check


CHECKS: dict[str, list[Check]] = {
    "tlt.DatasetExportConfig": [_required("kitti_config")],
    "tlt.KITTIConfig": [_required("root_directory_path"), _in("val_split", 0.0, 100.0),
                        _count("num_shards", MAX_SHARDS), _count("num_partitions", MAX_PARTITIONS),
                        _one_of("partition_mode", ("random", "sequence")), _sequence_file,
                        _ext("image_extension")],
    "tlt.ClassificationModelConfig": [_arch("arch", "n_layers", CLASSIFICATION_ARCHS),
                                      _image_size, _in("dropout", 0.0, 1.0, hi_open=True)],
    "tlt.ClassificationTrainConfig": [_one_of("optimizer", ("sgd", "adam", "rmsprop")),
                                      _count("batch_size_per_gpu", MAX_BATCH),
                                      _count("n_epochs", MAX_EPOCHS), _count("n_workers", MAX_WORKERS),
                                      _in("label_smoothing", 0.0, 1.0, hi_open=True),
                                      _count("checkpoint_interval", MAX_EPOCHS)],
    "tlt.SGDParams": [_in("momentum", 0.0, 1.0, hi_open=True)],
    "tlt.AdamParams": [_in("beta1", 0.0, 1.0, hi_open=True), _in("beta2", 0.0, 1.0, hi_open=True),
                       _gt("epsilon")],
    "tlt.RMSpropParams": [_in("rho", 0.0, 1.0, hi_open=True), _in("momentum", 0.0, 1.0, hi_open=True),
                          _gt("epsilon")],
    "tlt.RegConfig": [_one_of("type", ("NONE", "L1", "L2")), _ge("weight_decay")],
    "tlt.LRConfig": [_one_of("scheduler", ("step", "soft_anneal", "cosine")), _gt("learning_rate"),
                     _count("step_size", MAX_EPOCHS), _in("gamma", 0.0, 1.0, lo_open=True),
                     _in("soft_start", 0.0, 1.0, hi_open=True), _annealing_points,
                     _ge("annealing_divider", 1), *_prob("min_lr_ratio")],
    "tlt.ClassificationAugmentationConfig": [
        _in("random_crop_min_scale", 0.0, 1.0, lo_open=True),
        _in("random_crop_max_scale", 0.0, 1.0, lo_open=True),
        _le("random_crop_min_scale", "random_crop_max_scale"),
        *_prob("brightness", "contrast", "saturation"), _in("hue", 0.0, 0.5)],
    "tlt.ClassificationEvalConfig": [_count("batch_size", MAX_BATCH), _count("top_k", MAX_TOP_K),
                                     _count("n_workers", MAX_WORKERS)],
    "tlt.DetectionExperiment": [_detection_classes],
    "tlt.DetectionModelConfig": [_detection_arch, _arch("template", "num_layers", DETECTION_ARCHS),
                                 _in("dropout_rate", 0.0, 1.0, hi_open=True)],
    "tlt.DetectionModelConfig.BboxObjective": [_gt("scale"), *_prob("offset")],
    "tlt.BboxRasterizerConfig": [_ge("deadzone_radius")],
    "tlt.BboxRasterizerConfig.TargetClassConfig": [
        *_prob("cov_center_x", "cov_center_y"), _gt("cov_radius_x"), _gt("cov_radius_y"),
        _ge("bbox_min_radius")],
    "tlt.ClusteringConfig": [*_prob("coverage_threshold"), _in("dbscan_eps", 0.0, 1.0, lo_open=True),
                             _ge("dbscan_min_samples"),
                             _count("minimum_bounding_box_height", MAX_IMAGE_SIDE, lo=0),
                             _in("nms_iou_threshold", 0.0, 1.0, lo_open=True),
                             _ge("dbscan_confidence_threshold"), *_prob("nms_confidence_threshold")],
    "tlt.CostFunctionConfig": [_in("max_objective_weight", 0.0, 1.0, lo_open=True),
                               *_prob("min_objective_weight"),
                               _le("min_objective_weight", "max_objective_weight")],
    "tlt.CostFunctionConfig.TargetClass": [_required("name"), _ge("class_weight"),
                                           *_prob("coverage_foreground_weight"), _objective_names],
    "tlt.CostFunctionConfig.Objective": [_ge("initial_weight"), _ge("weight_target")],
    "tlt.TrainingConfig": [_count("batch_size_per_gpu", MAX_BATCH), _count("num_epochs", MAX_EPOCHS),
                           _count("checkpoint_interval", MAX_EPOCHS)],
    "tlt.SoftStartAnnealingSchedule": [_gt("min_learning_rate"), _gt("max_learning_rate"),
                                       _le("min_learning_rate", "max_learning_rate"),
                                       *_prob("soft_start", "annealing"), _le("soft_start", "annealing")],
    "tlt.RegularizerConfig": [_ge("weight")],
    "tlt.AdamOptimizerConfig": [_gt("epsilon"), _in("beta1", 0.0, 1.0, hi_open=True),
                                _in("beta2", 0.0, 1.0, hi_open=True)],
    # 2 ** initial_exponent is the first loss scale (TLT's is 2 ** 20); far beyond, every step overflows.
    "tlt.CostScalingConfig": [_in("initial_exponent", 0.0, 64.0), _ge("increment"), _ge("decrement")],
    "tlt.PreprocessingConfig": [_multiple_of_16("output_image_width", "output_image_height"),
                                _in("output_image_channel", 1, 3), _ge("min_bbox_width"),
                                _ge("min_bbox_height"), _crop],
    "tlt.SpatialAugmentation": [*_prob("hflip_probability", "vflip_probability"), _gt("zoom_min"),
                                _gt("zoom_max"), _le("zoom_min", "zoom_max"),
                                _in("translate_max_x", 0.0, MAX_IMAGE_SIDE),
                                _in("translate_max_y", 0.0, MAX_IMAGE_SIDE)],
    "tlt.ColorAugmentation": [_ge("color_shift_stddev"), _in("hue_rotation_max", 0.0, 360.0),
                              *_prob("saturation_shift_max", "contrast_scale_max", "contrast_center")],
    "tlt.EvaluationConfig": [_count("validation_period_during_training", MAX_EPOCHS),
                             _count("first_validation_epoch", MAX_EPOCHS),
                             _map_range("minimum_detection_ground_truth_overlap", 0.0, 1.0, lo_open=True),
                             _count("num_recall_points", MAX_RECALL_POINTS, lo=2)],
    "tlt.EvaluationBoxConfig": [_ge("minimum_height"), _le("minimum_height", "maximum_height"),
                                _in("minimum_occlusion", -1, 3), _in("maximum_occlusion", -1, 3),
                                _le("minimum_occlusion", "maximum_occlusion")],
    "tlt.EvaluationBoxConfig.Truncation": [*_prob("minimum", "maximum"), _le("minimum", "maximum")],
    "tlt.DatasetConfig": [_ext("image_extension")],
    "tlt.ClusterParams": [_one_of("dbscan_criterion", ("IOU",)), _cluster_maps,
                          _map_range("dbscan_eps", 0.0, 1.0, lo_open=True),
                          _map_range("dbscan_min_samples", 0.0, None),
                          _map_range("min_cov_to_cluster", 0.0, 1.0),
                          _map_range("min_obj_height", 0.0, None),
                          _map_range("confidence_th", 0.0, None),
                          _count("image_height", MAX_IMAGE_SIDE), _count("image_width", MAX_IMAGE_SIDE)],
}


def violations(message: Message, path: str = "") -> Iterator[tuple[str, str]]:
    """Yield every (dotted field path, problem) of ``message`` and its sub-messages, in order."""
    for check in CHECKS.get(message.DESCRIPTOR.full_name, ()):
        yield from check(message, path)
    for fd in message.DESCRIPTOR.fields:
        if fd.message_type is None:
            continue
        value = getattr(message, fd.name)
        sub = child_path(path, fd.name)
        if fd.message_type.GetOptions().map_entry:
            if fd.message_type.fields_by_name["value"].message_type is not None:
                for key in sorted(value):
                    yield from violations(value[key], f"{sub}[{key_repr(key)}]")
        elif fd.is_repeated:
            for i, item in enumerate(value):
                yield from violations(item, f"{sub}[{i}]")
        elif message.HasField(fd.name):
            yield from violations(value, sub)
