"""``dataset_config.target_class_mapping``: class names in the records -> trained class index.

Several source classes may map to one target class (``automobile`` and ``heavy_truck`` -> ``car``).
Source classes left out of the mapping, and KITTI's ``DontCare``, become *ignore regions*
(index -1): the rasterizer marks their cells neither foreground nor background, so the network is
not taught that a van or a cluttered patch is background. Names are compared lower-cased, as
`tlt.data.kitti` writes them.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Iterable, Mapping

from tlt.errors import DataError, SpecError

__all__ = ["IGNORE", "DONTCARE", "ClassMapping", "build_class_mapping", "check_class_presence"]

# Class index of ignore regions (unmapped classes, DontCare).
IGNORE = -1
# KITTI's "don't care" class (lower-cased).
DONTCARE = "dontcare"


@dataclass(frozen=True)
class ClassMapping:
    """Source class name -> target class index, in the cost function's class order.

    Attributes:
        target_classes: the trained classes; index i is output channel i.
        source_to_target: lower-cased source class -> index into ``target_classes``.
    """

    target_classes: tuple[str, ...]
    source_to_target: Mapping[str, int] = field(default_factory=dict)

    def index(self, source_class: str) -> int:
        """Target index of a source class name, or `IGNORE` when it is not mapped."""
        return self.source_to_target.get(source_class.lower(), IGNORE)

    def sources_of(self, target_class: str) -> list[str]:
        """The source classes mapped to ``target_class``, sorted."""
        i = self.target_classes.index(target_class)
        return sorted(s for s, t in self.source_to_target.items() if t == i)

    def lookup_keys_values(self) -> tuple[list[str], list[int]]:
        """Keys and values for a ``tf.lookup.StaticHashTable`` (default `IGNORE`)."""
        items = sorted(self.source_to_target.items())
        return [k for k, _ in items], [v for _, v in items]


def _names(target_classes: Iterable[Any]) -> list[str]:
    return [t if isinstance(t, str) else t.name for t in target_classes]


def build_class_mapping(dataset_config: Any, target_classes: Iterable[Any]) -> ClassMapping:
    """Build the mapping of a ``DatasetConfig`` onto the trained classes.

    Args:
        dataset_config: the spec's ``dataset_config`` (its ``target_class_mapping`` map).
        target_classes: class names in output order, or the spec's
            ``cost_function_config.target_classes`` messages (their ``name``).

    Returns:
        The ClassMapping. ``dontcare`` is an ignore region unless the spec maps it explicitly.

    Raises:
        SpecError: no target classes; a mapping value is not a target class; two keys that differ
            only in case map to different classes; or a target class has no source mapped to it.
    """
    names = _names(target_classes)
    if not names:
        raise SpecError("cost_function_config.target_classes is empty, expected the trained "
                        "classes", field="cost_function_config.target_classes")
    source_to_target: dict[str, int] = {}
    for key, target in sorted(dataset_config.target_class_mapping.items()):
        where = f'dataset_config.target_class_mapping["{key}"]'
        if target not in names:
            raise SpecError(f"{where} maps to {target!r}, which is not one of "
                            f"cost_function_config.target_classes ({', '.join(names)})",
                            field=where)
        source = key.lower()
        index = names.index(target)
        if source_to_target.get(source, index) != index:
            raise SpecError(f"{where} maps {source!r} to {target!r} but another key spelling "
                            f"maps it to {names[source_to_target[source]]!r} (class names are "
                            "compared lower-cased)", field=where)
        source_to_target[source] = index
    reached = set(source_to_target.values())
    for i, name in enumerate(names):
        if i not in reached:
            raise SpecError(f"cost_function_config.target_classes[{i}] {name!r} has no source "
                            "class mapped to it in dataset_config.target_class_mapping "
                            f"(add target_class_mapping {{ key: \"{name}\" value: \"{name}\" }})",
                            field=f"cost_function_config.target_classes[{i}].name")
    return ClassMapping(tuple(names), source_to_target)


def check_class_presence(class_counts: Mapping[str, Any], mapping: ClassMapping,
                         where: str) -> None:
    """Fail when a target class has no example in the records that will be trained on.

    Args:
        class_counts: ``{source class: count}``, or convert's metadata ``class_counts``
            (``{"fold-000": {...}, ..., "total": {...}}``, whose ``total`` is used).
        mapping: the class mapping.
        where: what the counts describe (e.g. the tfrecords pattern), named in the message.

    Raises:
        DataError: ``target class 'cyclist' has no examples in <where>: source classes mapped
            to it: rider``.
    """
    counts = class_counts.get("total", class_counts) if isinstance(
        class_counts.get("total"), Mapping) else class_counts
    lowered: dict[str, int] = {}
    for name, n in counts.items():
        lowered[name.lower()] = lowered.get(name.lower(), 0) + int(n)
    for target in mapping.target_classes:
        sources = mapping.sources_of(target)
        if not any(lowered.get(s, 0) > 0 for s in sources):
            present = ", ".join(f"{k} ({v})" for k, v in sorted(lowered.items()) if v) or "none"
            raise DataError(f"target class {target!r} has no examples in {where}: source "
                            f"classes mapped to it: {', '.join(sources)} (classes present: "
                            f"{present})")
