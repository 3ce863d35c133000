"""Load spec files into their protobuf messages, with defaults applied and values range-checked.

TLT v1 spec files are protobuf text format ("prototxt", as printed in the user guide) and parse
unchanged; YAML and JSON files map onto the same schemas. Every problem is a ``SpecError`` whose
message names the file, the 1-based line and the dotted field path::

    spec.txt:12: train_config.batch_size_per_gpu must be > 0, got 0
    spec.txt:3: unknown field "batchsize" in train_config (expected one of: ...)
    spec.txt:5: model_config.n_layers: expected an integer, got "eighteen"

Example::

    spec = tlt.spec.load("detection.txt", "detection")
    spec.training_config.batch_size_per_gpu   # the file's value, or the documented default
"""

from __future__ import annotations

import difflib
import json
import logging
import os
import re
from pathlib import Path

import yaml
from google.protobuf import json_format, text_format
from google.protobuf.descriptor import Descriptor, FieldDescriptor
from google.protobuf.message import Message

from tlt.errors import SpecError
from tlt.proto.classification_config_pb2 import ClassificationExperiment
from tlt.proto.cluster_params_pb2 import ClusterParams
from tlt.proto.dataset_export_config_pb2 import DatasetExportConfig
from tlt.proto.detection_config_pb2 import DetectionExperiment
from tlt.spec.defaults import apply_defaults, normalise
from tlt.spec.ignored import ignored_fields
from tlt.spec.locate import child_path, index_text, index_yaml, key_repr, line_of
from tlt.spec.rules import violations

__all__ = ["KINDS", "FORMATS", "schema_class", "load", "loads", "load_cluster_params", "validate",
           "to_text", "cluster_value"]

KINDS: dict[str, type[Message]] = {
    "dataset_export": DatasetExportConfig,
    "classification": ClassificationExperiment,
    "detection": DetectionExperiment,
    "cluster_params": ClusterParams,
}
FORMATS = ("text", "yaml", "json")
_EXTENSIONS = {".yaml": "yaml", ".yml": "yaml", ".json": "json"}
_log = logging.getLogger("tlt.spec")
_INT_RANGES = {
    FieldDescriptor.CPPTYPE_INT32: (-2**31, 2**31 - 1), FieldDescriptor.CPPTYPE_UINT32: (0, 2**32 - 1),
    FieldDescriptor.CPPTYPE_INT64: (-2**63, 2**63 - 1), FieldDescriptor.CPPTYPE_UINT64: (0, 2**64 - 1),
}


def schema_class(schema: str | type[Message]) -> type[Message]:
    """The message class of a kind name ("detection", ...) or the class itself."""
    if isinstance(schema, str):
        if schema not in KINDS:
            raise SpecError(f"unknown spec kind {schema!r} (expected one of: {', '.join(KINDS)})")
        return KINDS[schema]
    return schema


def _format_of(path: str | None, fmt: str | None) -> str:
    if fmt is not None:
        if fmt not in FORMATS:
            raise SpecError(f"unknown spec format {fmt!r} (expected one of: {', '.join(FORMATS)})",
                            path=path)
        return fmt
    return _EXTENSIONS.get(Path(path).suffix.lower(), "text") if path else "text"


def load(path: str | os.PathLike, schema: str | type[Message], *, fmt: str | None = None,
         warn: bool = True) -> Message:
    """Read, parse, complete with defaults and validate a local spec file.

    Args:
        path: the file; ``.yaml``/``.yml`` is YAML, ``.json`` JSON, anything else text format.
        schema: a message class or one of the kind names in ``KINDS``.
        fmt: "text", "yaml" or "json" to override the extension.
        warn: log one warning (logger ``tlt.spec``) per field the file sets that cannot take
            effect (see `tlt.spec.ignored`).

    Returns:
        The spec message.

    Raises:
        SpecError: the file cannot be read, is not UTF-8, does not parse, or holds a value out of
            range.
    """
    name = os.fspath(path)
    try:
        data = Path(name).read_bytes()
    except OSError as exc:
        raise SpecError(f"cannot read spec file: {exc.strerror or exc}", path=name) from None
    return loads(_decode(data, name), schema, path=name, fmt=fmt, warn=warn)


def _decode(data: bytes, path: str) -> str:
    """The text of a spec file; a byte that is not UTF-8 is named with its line and offset."""
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data.count(b"\n", 0, exc.start) + 1
        raise SpecError(f"is not UTF-8 text: byte 0x{data[exc.start]:02x} at offset {exc.start} "
                        f"({exc.reason}); save the file as UTF-8", path=path, line=line) from None


def loads(text: str, schema: str | type[Message], *, path: str | None = None,
          fmt: str | None = None, warn: bool = True) -> Message:
    """Parse spec text (see ``load``); ``path`` only names the source in errors and picks the format."""
    cls = schema_class(schema)
    fmt = _format_of(path, fmt)
    if fmt == "text":
        message = cls()
        try:
            text_format.Parse(text, message)
        except text_format.ParseError as exc:
            raise _translate_parse_error(exc, text, cls.DESCRIPTOR, path) from None
    else:
        message = _parse_mapping(text, cls, path, fmt)
    ignored = ignored_fields(message) if warn else []  # before defaults: only what the file sets
    normalise(message)
    apply_defaults(message)
    validate(message, path=path, text=text, fmt=fmt)
    if ignored:
        _warn_ignored(ignored, message.DESCRIPTOR, path=path, text=text, fmt=fmt)
    return message


def _warn_ignored(ignored: list[tuple[str, str]], desc: Descriptor, *, path: str | None, text: str,
                  fmt: str) -> None:
    lines = _lines(text, desc, fmt, path)
    for field, why in ignored:
        line = line_of(lines, field)
        where = f"{path}:{line}: " if path and line else f"{path}: " if path else ""
        _log.warning("%s%s %s", where, field, why)


def load_cluster_params(path: str | os.PathLike) -> ClusterParams:
    """Load the inference clustering file (JSON, or YAML by extension) into ``ClusterParams``."""
    fmt = None if Path(os.fspath(path)).suffix.lower() in _EXTENSIONS else "json"
    return load(path, ClusterParams, fmt=fmt)


def cluster_value(params: ClusterParams, field: str, class_name: str) -> float:
    """A per-class setting of the clustering file: the class's entry, else its "default" entry.

    ``confidence_th`` falls back to 0.0; the other maps are checked at load time to cover every
    target class, so a miss here means ``class_name`` is not one of them.

    Raises:
        SpecError: neither the class nor "default" is in the map.
    """
    mapping = getattr(params, field)
    if class_name in mapping:
        return mapping[class_name]
    if "default" in mapping:
        return mapping["default"]
    if field == "confidence_th":
        return 0.0
    raise SpecError(f'{field} has no entry for {json.dumps(class_name)} and no "default"', field=field)


def validate(message: Message, *, path: str | None = None, text: str | None = None,
             fmt: str | None = None) -> None:
    """Range-check a spec message (defaults should already be applied).

    Args:
        message: the spec.
        path: its file, named in the error.
        text: its source text, used to find the line of the field at fault.
        fmt: format of ``text``; by default from ``path``'s extension.

    Raises:
        SpecError: at the first value out of range, e.g.
            ``spec.txt:12: train_config.batch_size_per_gpu must be > 0, got 0``.
    """
    for field, problem in violations(message):
        lines = _lines(text, message.DESCRIPTOR, _format_of(path, fmt), path) if text else {}
        raise SpecError(f"{field} {problem}", path=path, line=line_of(lines, field), field=field)


def to_text(message: Message, fmt: str = "text") -> str:
    """Serialise a spec as text format (the TLT v1 form), YAML or JSON."""
    fmt = _format_of(None, fmt)
    if fmt == "text":
        return text_format.MessageToString(message)
    data = json_format.MessageToDict(message, preserving_proto_field_name=True)
    if fmt == "json":
        return json.dumps(data, indent=2) + "\n"
    return yaml.safe_dump(data, sort_keys=False)


def _lines(text: str, desc: Descriptor, fmt: str, path: str | None) -> dict[str, int]:
    if fmt == "text":
        return index_text(text, desc)[0].lines()
    return index_yaml(text, desc, path=path)


# -- text format errors ---------------------------------------------------------------------------

def _type_name(fd: FieldDescriptor, out_of_range: bool) -> str:
    cpp = fd.cpp_type
    if cpp in _INT_RANGES:
        lo, hi = _INT_RANGES[cpp]
        return f"an integer in [{lo}, {hi}]" if out_of_range else "an integer"
    if cpp in (FieldDescriptor.CPPTYPE_FLOAT, FieldDescriptor.CPPTYPE_DOUBLE):
        return "a number"
    if cpp == FieldDescriptor.CPPTYPE_BOOL:
        return "true or false"
    if cpp == FieldDescriptor.CPPTYPE_STRING:
        return "a quoted string"
    if cpp == FieldDescriptor.CPPTYPE_ENUM:
        return "one of: " + ", ".join(v.name for v in fd.enum_type.values)
    return 'a "{ ... }" block'


def _unknown_field(name: str, desc: Descriptor | None, where: str, hint: str = "") -> str:
    expected = [f.name for f in desc.fields] if desc else []
    close = difflib.get_close_matches(name, expected, n=1, cutoff=0.6)
    if close and not hint:
        hint = f'; did you mean "{close[0]}"?'
    return f'unknown field "{name}" in {where}{hint} (expected one of: {", ".join(expected)})'


def _translate_parse_error(exc: text_format.ParseError, text: str, desc: Descriptor,
                           path: str | None) -> SpecError:
    line, col = exc.GetLine(), exc.GetColumn()
    # str(exc) is "L:C : 'source line': detail" or "L:C : detail"; keep the detail.
    detail = re.sub(r"^\d+:\d+ : ", "", str(exc))
    detail = re.sub(r"^'.*?': (?=[A-Z])", "", detail)
    if line is None:
        return SpecError(f"syntax error: {detail}", path=path)
    index, tok = index_text(text, desc, stop=(line, col or 1))
    frame, occ = index.frame, index.current
    unknown = re.search(r'has no field named "([^"]+)"', detail)
    if unknown:
        name = unknown.group(1)
        where = frame.path or f"the top level of {desc.name}"
        source_lines = text.splitlines()
        rest = source_lines[line - 1][(col or 1) - 1:] if line <= len(source_lines) else ""
        hint = _unknown_hint(name, rest, index)
        return SpecError(_unknown_field(name, frame.desc, where, hint), path=path, line=line,
                         field=child_path(frame.path, name))
    if "should not have multiple" in detail and occ is not None:
        return SpecError(f"{occ.path} is given more than once", path=path, line=line, field=occ.path)
    oneof = re.search(r'Field "([^"]+)" is specified along with field "([^"]+)", another member '
                      r'of oneof "([^"]+)"', detail)
    if oneof:
        field = child_path(frame.path, oneof.group(1))
        return SpecError(f"{field} cannot be given together with {oneof.group(2)} "
                         f"(only one of the {oneof.group(3)} fields may be set)",
                         path=path, line=line, field=field)
    if (_VALUE_ERROR.search(detail) and index.state in ("value", "list") and occ is not None
            and occ.fd is not None and tok is not None):
        got = tok.value if tok.kind == "string" else json.dumps(tok.value)
        expected = _type_name(occ.fd, "out of range" in detail)
        field = index.value_path()
        return SpecError(f"{field}: expected {expected}, got {got}", path=path, line=line, field=field)
    if detail in ('Expected "}".', 'Expected ">".'):
        full = index_text(text, desc)[0]
        if len(full.frames) > 1:
            opened = full.frames[-1]
            return SpecError(f'the "{{" of {opened.path} on line {opened.line} is never closed',
                             path=path, line=opened.line, field=opened.path)
    where = f" in {frame.path}" if frame.path else ""
    return SpecError(f"syntax error{where}: {detail}", path=path, line=line, field=frame.path or None)


# text_format's wording for a value of the wrong type or range (as opposed to a syntax error).
_VALUE_ERROR = re.compile(r"Couldn't parse|out of range|Expected \"true\" or \"false\"|"
                          r"Expected string|has no value named|Expected integer|Expected identifier")


def _unknown_hint(name: str, rest_of_line: str, index) -> str:
    """Why a field may be unknown: a guide-style space in its name, or a missing "}" before it."""
    words = re.findall(r"[A-Za-z_][A-Za-z0-9_]*", rest_of_line.split(":")[0].split("{")[0])
    fields = index.frame.desc.fields_by_name if index.frame.desc else {}
    for n in range(2, len(words) + 1):
        joined = "_".join(words[:n])
        if joined in fields:
            return f'; field names have no spaces: write "{joined}"'
    for outer in reversed(index.frames[:-1]):
        if outer.desc is not None and name in outer.desc.fields_by_name:
            inner = index.frame
            return (f'; "{name}" belongs to {outer.path or "the top level"}: is the "}}" closing '
                    f"{inner.path} (opened on line {inner.line}) missing?")
    return ""


# -- YAML / JSON ----------------------------------------------------------------------------------

def _parse_mapping(text: str, cls: type[Message], path: str | None, fmt: str) -> Message:
    desc = cls.DESCRIPTOR
    try:
        data = yaml.safe_load(text) if fmt == "yaml" else json.loads(text)
    except json.JSONDecodeError as exc:
        raise SpecError(f"invalid JSON: {exc.msg} (column {exc.colno})", path=path,
                        line=exc.lineno) from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        problem = getattr(exc, "problem", None) or str(exc)
        raise SpecError(f"invalid YAML: {problem}", path=path,
                        line=mark.line + 1 if mark else None) from None
    lines = index_yaml(text, desc, path=path)  # also rejects duplicate keys, with their line
    coerce = _Coercer(lines, path)
    clean = coerce.message(data, desc, "")
    message = cls()
    try:
        json_format.ParseDict(clean, message)
    except json_format.ParseError as exc:  # the coercion above should leave nothing to reject
        raise SpecError(f"invalid {fmt.upper()} spec: {exc}", path=path) from None
    return message


def _show(value) -> str:
    shown = json.dumps(value, default=str)
    return shown if len(shown) <= 60 else shown[:57] + "..."


class _Coercer:
    """Checks a YAML/JSON tree against a descriptor and converts it to what ParseDict takes."""

    def __init__(self, lines: dict[str, int], path: str | None):
        self.lines, self.path = lines, path

    def error(self, field: str, message: str) -> SpecError:
        return SpecError(message, path=self.path, line=line_of(self.lines, field), field=field or None)

    def message(self, data, desc: Descriptor, prefix: str) -> dict:
        if data is None:  # "cov:" with nothing after it in YAML is an empty block
            return {}
        if not isinstance(data, dict):
            where = f"{prefix}: " if prefix else ""
            raise self.error(prefix, f"{where}expected a mapping of fields, got {_show(data)}")
        out = {}
        for key, value in data.items():
            fd = desc.fields_by_name.get(str(key)) or next(
                (f for f in desc.fields if f.json_name == str(key)), None)
            if fd is None:
                where = prefix or f"the top level of {desc.name}"
                raise self.error(child_path(prefix, str(key)), _unknown_field(str(key), desc, where))
            out[fd.name] = self.field(value, fd, child_path(prefix, fd.name))
        return out

    def field(self, value, fd: FieldDescriptor, path: str):
        if fd.message_type is not None and fd.message_type.GetOptions().map_entry:
            if not isinstance(value, dict):
                raise self.error(path, f"{path}: expected a mapping of keys to values, got {_show(value)}")
            key_fd = fd.message_type.fields_by_name["key"]
            value_fd = fd.message_type.fields_by_name["value"]
            out = {}
            for key, item in value.items():
                native = self.map_key(key, key_fd, path)
                out[key_repr(native) if not isinstance(native, str) else native] = \
                    self.single(item, value_fd, f"{path}[{key_repr(native)}]")
            return out
        if fd.is_repeated:
            if not isinstance(value, list):
                raise self.error(path, f"{path}: expected a list, got {_show(value)}")
            return [self.single(item, fd, f"{path}[{i}]") for i, item in enumerate(value)]
        return self.single(value, fd, path)

    def map_key(self, key, key_fd: FieldDescriptor, path: str):
        if key_fd.cpp_type == FieldDescriptor.CPPTYPE_BOOL:
            if isinstance(key, bool) or str(key) in ("true", "false"):
                return key if isinstance(key, bool) else key == "true"
        elif key_fd.cpp_type in _INT_RANGES:
            try:
                return int(str(key))
            except ValueError:
                pass
        else:
            return str(key)
        raise self.error(path, f"{path}: key {_show(key)} is not {_type_name(key_fd, False)}")

    def single(self, value, fd: FieldDescriptor, path: str):
        if fd.message_type is not None:
            return self.message(value, fd.message_type, path)
        cpp = fd.cpp_type
        ok, out = False, value
        if cpp in _INT_RANGES:
            if isinstance(value, float) and value.is_integer():
                value = out = int(value)
            if isinstance(value, int) and not isinstance(value, bool):
                lo, hi = _INT_RANGES[cpp]
                if not lo <= value <= hi:
                    raise self.error(path, f"{path}: expected {_type_name(fd, True)}, got {value}")
                ok = True
        elif cpp in (FieldDescriptor.CPPTYPE_FLOAT, FieldDescriptor.CPPTYPE_DOUBLE):
            if isinstance(value, (int, float)) and not isinstance(value, bool):
                ok, out = True, float(value)
            elif isinstance(value, str):  # YAML 1.1 reads "1e-08" (no dot) as a string
                try:
                    ok, out = True, float(value)
                except ValueError:
                    pass
        elif cpp == FieldDescriptor.CPPTYPE_BOOL:
            ok = isinstance(value, bool)
        elif cpp == FieldDescriptor.CPPTYPE_STRING:
            ok = isinstance(value, str)
        elif cpp == FieldDescriptor.CPPTYPE_ENUM:
            names = [v.name for v in fd.enum_type.values]
            ok = value in names or (isinstance(value, int) and not isinstance(value, bool)
                                    and value in [v.number for v in fd.enum_type.values])
        if not ok:
            raise self.error(path, f"{path}: expected {_type_name(fd, False)}, got {_show(value)}")
        return out
