"""Map dotted field paths of a spec to the lines of its source text.

``google.protobuf.text_format`` reports where parsing failed but not which field was being read,
and a parsed message no longer knows where its values came from. This module re-reads the text
with a small tolerant tokenizer, guided by the message descriptor, and records every field
occurrence under the same dotted path ``tlt.spec.rules`` uses in its messages::

    train_config.batch_size_per_gpu
    cost_function_config.target_classes[1].objectives[0].weight_target
    postprocessing_config.target_class_config["car"].clustering_config.dbscan_eps

YAML and JSON sources are indexed the same way from PyYAML's node tree (JSON is read as YAML
for this purpose only), which also reveals duplicate keys that the loaders silently merge.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field

import yaml
from google.protobuf.descriptor import Descriptor, FieldDescriptor

from tlt.errors import SpecError

__all__ = ["Token", "TextIndex", "index_text", "index_yaml", "key_repr", "child_path", "line_of"]

_TOKEN_RE = re.compile(r"""
    (?P<ws>[ \t\r\f\v]+|\n)
  | (?P<comment>\#[^\n]*)
  | (?P<string>"(?:[^"\\\n]|\\.)*"?|'(?:[^'\\\n]|\\.)*'?)
  | (?P<word>-?[ \t]*[A-Za-z0-9_.]+(?:[eE][+-][0-9]+[fF]?)?)
  | (?P<punct>[{}<>\[\]:,;])
  | (?P<other>.)
""", re.VERBOSE)


@dataclass(frozen=True)
class Token:
    """One lexical token: kind is "string", "word", "punct" or "other"; line/col are 1-based."""

    kind: str
    value: str
    line: int
    col: int


def _tokenize(text: str) -> list[Token]:
    tokens, line, line_start = [], 1, 0
    for m in _TOKEN_RE.finditer(text):
        kind = m.lastgroup
        if kind == "ws":
            if m.group() == "\n":
                line, line_start = line + 1, m.end()
            continue
        if kind != "comment":
            tokens.append(Token(kind, m.group(), line, m.start() - line_start + 1))
    return tokens


def key_repr(value) -> str:
    """How a map key appears inside a dotted path: ``"car"``, ``-1`` or ``true``."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return json.dumps(value)
    return str(value)


def child_path(parent: str, name: str) -> str:
    """``parent.name``, or ``name`` at the top level."""
    return f"{parent}.{name}" if parent else name


def _is_map(fd: FieldDescriptor | None) -> bool:
    return bool(fd and fd.message_type and fd.message_type.GetOptions().map_entry)


def _unquote(token: str) -> str:
    body = token[1:-1] if len(token) >= 2 and token[-1] == token[0] else token[1:]
    try:
        return body.encode("latin-1", "backslashreplace").decode("unicode_escape")
    except UnicodeDecodeError:
        return body


def _map_key(token: Token, key_fd: FieldDescriptor):
    if token.kind == "string":
        return _unquote(token.value)
    if key_fd.type == FieldDescriptor.TYPE_BOOL:
        return token.value.lower() in ("true", "t", "1")
    try:
        return int(token.value.replace(" ", ""), 0)
    except ValueError:
        return token.value


@dataclass
class _Frame:
    """An open message block; ``label`` is set later for map entries (from their key)."""

    desc: Descriptor | None
    base: str                     # path of the field holding this block, without the element label
    label: str = ""               # "[3]" for repeated elements, '["car"]' for map entries
    is_map_entry: bool = False
    in_list: bool = False
    counts: dict = field(default_factory=dict)
    line: int = 0

    @property
    def path(self) -> str:
        return self.base + self.label


@dataclass
class _Occurrence:
    frame: _Frame                 # frame whose path prefixes this occurrence (lazy: map keys come late)
    suffix: str                   # ".name", ".name[2]" or "" (a map entry's value)
    name: str
    fd: FieldDescriptor | None
    line: int
    col: int

    @property
    def path(self) -> str:
        if not self.suffix:
            return self.frame.path
        return child_path(self.frame.path, self.suffix[1:]) if self.frame.path else self.suffix[1:]


class TextIndex:
    """Walks text-format tokens, tracking the open blocks and the field being read.

    After ``feed``-ing the tokens before a position, ``frame`` is the enclosing message block,
    ``current`` the field whose name was read last (its value may be pending) and ``lines`` maps
    every dotted path seen so far to the line of its field name.
    """

    def __init__(self, desc: Descriptor):
        self.frames = [_Frame(desc, "")]
        self.current: _Occurrence | None = None
        self.state = "field"          # "field" | "name" (after a name) | "value" | "list"
        self.list_items = 0           # scalars read so far in the current "name: [...]" list
        self.occurrences: list[_Occurrence] = []

    @property
    def frame(self) -> _Frame:
        return self.frames[-1]

    def _start_field(self, tok: Token) -> None:
        frame = self.frame
        name = tok.value
        fd = frame.desc.fields_by_name.get(name) if frame.desc else None
        if frame.is_map_entry and name == "value":
            suffix = ""           # a map entry's value is addressed by the entry itself
        elif fd is not None and fd.is_repeated:
            index = frame.counts.get(name, 0)
            frame.counts[name] = index + 1
            suffix = f".{name}" if _is_map(fd) else f".{name}[{index}]"
        else:
            suffix = f".{name}"
        self.current = _Occurrence(frame, suffix, name, fd, tok.line, tok.col)
        self.occurrences.append(self.current)

    def _open(self, tok: Token) -> None:
        occ = self.current
        fd = occ.fd if occ else None
        frame = _Frame(fd.message_type if fd is not None else None,
                       occ.path if occ else self.frame.path, line=tok.line)
        frame.in_list = self.state == "list"
        if _is_map(fd):
            frame.is_map_entry = True
            frame.label = f"[#{len(self.occurrences)}]"   # replaced when the entry's key is read
        elif frame.in_list and occ is not None:
            # Elements of "name: [{...}, {...}]" are numbered on from the name's earlier elements.
            parent = self.frame
            if fd is not None and fd.is_repeated:
                index = parent.counts.get(occ.name, 0)
                parent.counts[occ.name] = index + 1
                frame.base = child_path(parent.path, occ.name)
                frame.label = f"[{index}]"
        self.frames.append(frame)
        self.state = "field"

    def _value(self, tok: Token) -> None:
        occ = self.current
        frame = self.frame
        if occ is not None and frame.is_map_entry and occ.name == "key" and frame.desc is not None:
            frame.label = f"[{key_repr(_map_key(tok, frame.desc.fields_by_name['key']))}]"

    def feed(self, tok: Token) -> None:
        """Advance over one token."""
        v = tok.value
        if self.state == "list":
            if v == "]":
                self.state = "field"
            elif v in ("{", "<"):
                self._open(tok)
            elif v not in (",", ";") and self.current is not None:
                if self.list_items:  # each further scalar is one more element of the field
                    counts = self.current.frame.counts
                    counts[self.current.name] = counts.get(self.current.name, 0) + 1
                self.list_items += 1
            return
        if v in ("}", ">"):
            if len(self.frames) > 1:
                closed = self.frames.pop()
                self.state = "list" if closed.in_list else "field"
                if closed.in_list:
                    self.current = next((o for o in reversed(self.occurrences)
                                         if o.frame is self.frame), self.current)
            return
        if self.state == "field":
            if tok.kind == "word" and v[0] not in "-0123456789.":
                self._start_field(tok)
                self.state = "name"
            return
        if self.state == "name":
            if v == ":":
                self.state = "value"
            elif v in ("{", "<"):
                self._open(tok)
            else:
                self.state = "field"
                self.feed(tok)
            return
        # state == "value"; adjacent strings concatenate, the extra ones are skipped as non-words.
        if v in ("{", "<"):
            self._open(tok)
        elif v == "[":
            fd = self.current.fd if self.current else None
            if fd is not None and fd.is_repeated and fd.message_type is not None:
                # "name: [" already counted one element; the list's blocks are numbered instead.
                self.frame.counts[fd.name] -= 1
            self.list_items = 0
            self.state = "list"
        else:
            self._value(tok)
            self.state = "field"

    def value_path(self) -> str:
        """Path of the value being read: the field, or its element inside a "[...]" list."""
        path = self.current.path
        m = re.match(r"(.*)\[(\d+)\]$", path)
        if self.state == "list" and m:
            return f"{m.group(1)}[{int(m.group(2)) + self.list_items}]"
        return path

    def lines(self) -> dict[str, int]:
        """Every dotted path seen -> line of its first occurrence."""
        out: dict[str, int] = {}
        for occ in self.occurrences:
            path = occ.path
            out.setdefault(path, occ.line)
            # "a.b[2]" also answers for "a.b", e.g. a check on the whole repeated field.
            out.setdefault(re.sub(r"\[\d+\]$", "", path), occ.line)
        return out


def index_text(text: str, desc: Descriptor, *, stop: tuple[int, int] | None = None
               ) -> tuple[TextIndex, Token | None]:
    """Index a text-format spec.

    Args:
        text: the spec text (possibly malformed: the walk is tolerant).
        desc: descriptor of the top-level message.
        stop: (line, col) at which to stop, e.g. a parse error's position.

    Returns:
        The index, and the token at ``stop`` (None when there is none or no stop was given).
    """
    index = TextIndex(desc)
    for tok in _tokenize(text):
        if stop is not None and (tok.line, tok.col) >= stop:
            return index, tok
        index.feed(tok)
    return index, None


def index_yaml(text: str, desc: Descriptor, *, path: str | None = None) -> dict[str, int]:
    """Index a YAML or JSON spec: dotted path -> 1-based line.

    Raises:
        SpecError: a mapping holds the same key twice (naming its path and line).
    """
    try:
        root = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.YAMLError:
        return {}               # the real parser reports syntax errors with its own positions
    lines: dict[str, int] = {}
    _index_node(root, desc, "", lines, path)
    return lines


def _index_node(node, desc: Descriptor | None, prefix: str, lines: dict, spec_path) -> None:
    if isinstance(node, yaml.SequenceNode):
        for i, item in enumerate(node.value):
            item_path = f"{prefix}[{i}]"
            lines.setdefault(item_path, item.start_mark.line + 1)
            _index_node(item, desc, item_path, lines, spec_path)
        return
    if not isinstance(node, yaml.MappingNode):
        return
    seen: dict[str, int] = {}
    for key_node, value_node in node.value:
        key, line = str(key_node.value), key_node.start_mark.line + 1
        if key in seen:
            where = f" in {prefix}" if prefix else ""
            raise SpecError(f'duplicate key "{key}"{where} (first on line {seen[key]})',
                            path=spec_path, line=line, field=prefix or None)
        seen[key] = line
        if desc is not None and desc.GetOptions().map_entry:
            entry = f"{prefix}[{key_repr(_yaml_key(key_node, desc))}]"
            lines.setdefault(entry, line)
            value_fd = desc.fields_by_name["value"]
            _index_node(value_node, value_fd.message_type, entry, lines, spec_path)
            continue
        fd = _field(desc, key)
        sub = child_path(prefix, fd.name if fd else key)
        lines.setdefault(sub, line)
        _index_node(value_node, fd.message_type if fd else None, sub, lines, spec_path)


def _field(desc: Descriptor | None, key: str) -> FieldDescriptor | None:
    if desc is None:
        return None
    fd = desc.fields_by_name.get(key)
    if fd is None:
        fd = next((f for f in desc.fields if f.json_name == key), None)
    return fd


def _yaml_key(node, entry_desc: Descriptor):
    key_fd = entry_desc.fields_by_name["key"]
    text = str(node.value)
    if key_fd.type == FieldDescriptor.TYPE_BOOL:
        return text.lower() in ("true", "yes", "on", "1")
    if key_fd.type != FieldDescriptor.TYPE_STRING:
        try:
            return int(text)
        except ValueError:
            return text
    return text


def line_of(lines: dict[str, int], path: str) -> int | None:
    """Line of ``path``, or of its nearest ancestor present in the source (defaults have none)."""
    while path:
        if path in lines:
            return lines[path]
        cut = max(path.rfind("."), path.rfind("["))
        path = path[:cut] if cut > 0 else ""
    return None
