"""Spec files: load TLT v1 prototxt (or YAML/JSON) into protobuf messages, with defaults and checks.

The package splits one job five ways: ``loader`` parses and reports errors with file:line:field,
``defaults`` applies the documented defaults, ``rules`` range-checks values (with upper bounds on
every count and size), ``ignored`` names the fields a file sets that cannot take effect (logged as
warnings on logger ``tlt.spec``) and ``locate`` maps a field path back to its line. Import the
public API from here::

    from tlt import spec
    experiment = spec.load("detection.txt", "detection")
"""

from tlt.spec.loader import (FORMATS, KINDS, cluster_value, load, load_cluster_params, loads,
                             schema_class, to_text, validate)

__all__ = ["KINDS", "FORMATS", "schema_class", "load", "loads", "load_cluster_params", "validate",
           "to_text", "cluster_value"]
