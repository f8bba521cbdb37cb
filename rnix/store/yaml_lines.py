"""Safe YAML -> a plain Python tree, the line of every key path, and every problem found.

`load_yaml(raw, file)` never constructs anything but dict, list, str, int, float, bool and None: PyYAML's
SafeLoader only *composes* the node tree, and this module converts the nodes itself so it can record
lines, report duplicate keys and enforce limits. Any tag other than the plain YAML ones (`!!python/...`,
`!!binary`, `!custom`) is a problem, never a constructor call. Timestamps stay the strings they were.

Key paths are tuples of mapping keys and list indexes, e.g. `("agents", "writer", "depends_on", 0)`;
the line of a mapping entry is the line of its key, the line of a list item is the line of the item,
and the root `()` is line 1. Merge keys (`<<: *base`, `<<: [*a, *b]`) are supported: keys written in
the mapping win, earlier merged mappings win over later ones, and a merged key keeps its line in the
anchor. Aliases expand to independent copies, so each copy can be interpolated on its own.

Limits keep a hostile file cheap: at most `MAX_BYTES` of input, `MAX_DEPTH` levels of nesting and
`MAX_NODES` values counted after alias expansion (a "billion laughs" stops at the limit, in
milliseconds). Problems are returned, not raised; the caller decides what to do with them.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import yaml
from yaml.constructor import SafeConstructor
from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode
from yaml.resolver import Resolver

from rnix.core.problems import Problem, dotted
from rnix.core.types import Path

MAX_BYTES = 1024 * 1024
MAX_DEPTH = 64
MAX_NODES = 100_000

_TAG = "tag:yaml.org,2002:"
MERGE_TAG = _TAG + "merge"
_SEQ_TAG = _TAG + "seq"
_MAP_TAG = _TAG + "map"

# The constructors and resolver hold no per-document state for scalars, so one of each serves all.
_CONSTRUCTOR = SafeConstructor()
_RESOLVER = Resolver()


def _as_text(node: ScalarNode) -> str:
    return str(node.value)


_SCALARS: dict[str, Callable[[ScalarNode], object]] = {
    _TAG + "str": _as_text,
    _TAG + "int": _CONSTRUCTOR.construct_yaml_int,
    _TAG + "float": _CONSTRUCTOR.construct_yaml_float,
    _TAG + "bool": _CONSTRUCTOR.construct_yaml_bool,
    _TAG + "null": _CONSTRUCTOR.construct_yaml_null,
    # A date is not a compose value; keep the text so validation can say what it expected.
    _TAG + "timestamp": _as_text,
    # `<<` is only a merge key in key position; as a value it is just the text.
    MERGE_TAG: _as_text,
}


@dataclass(frozen=True)
class YamlTree:
    """The result of `load_yaml`: `data` is None when the document is empty or could not be read."""

    data: object
    lines: Mapping[Path, int]
    plain: frozenset[Path]  # paths of string values written as plain (unquoted) scalars
    problems: tuple[Problem, ...]


def load_yaml(raw: bytes, file: str) -> YamlTree:
    """Check size and encoding, then parse `raw` as a single YAML document."""
    if len(raw) > MAX_BYTES:
        return _failed(Problem(file, None, "", "file is larger than 1 MiB"))
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = raw[: exc.start].count(b"\n") + 1
        message = f"not valid UTF-8 (byte 0x{raw[exc.start]:02x}); save the file as UTF-8"
        return _failed(Problem(file, line, "", message))
    return parse_yaml(text, file)


def parse_yaml(text: str, file: str) -> YamlTree:
    """Parse one YAML document from `text`; see the module docstring for the rules."""
    try:
        root, tagged = _compose(text)
    except _LimitExceeded as exc:
        return _failed(Problem(file, exc.line, "", exc.message))
    except yaml.YAMLError as exc:
        return _failed(_syntax_problem(exc, text, file))
    if root is None:
        return YamlTree(None, {(): 1}, frozenset(), ())
    converter = _Converter(file, tagged)
    sink = _Sink()
    sink.lines[()] = 1
    try:
        data = converter.convert(root, (), 0, sink)
    except _LimitExceeded as exc:
        converter.problems.append(Problem(file, exc.line, "", exc.message))
        data = None
    return YamlTree(data, sink.lines, frozenset(sink.plain), tuple(converter.problems))


def resolve_plain(text: str) -> object:
    """Type `text` as if it had been written as a plain scalar: `'1000'` -> 1000, `'true'` -> True."""
    tag: str = _RESOLVER.resolve(ScalarNode, text, (True, False))  # type: ignore[no-untyped-call]
    construct = _SCALARS.get(tag, _as_text)
    try:
        return construct(ScalarNode(tag, text))
    except (ValueError, IndexError, KeyError):
        return text


def _compose(text: str) -> tuple[Node | None, frozenset[int]]:
    """The root node, and the ids of scalar nodes written with an explicit tag (`!!str $X`, `! 1`)."""
    loader = _Loader(text)  # the reader already rejects unprintable characters here
    try:
        return loader.get_single_node(), frozenset(loader.tagged)
    finally:
        loader.dispose()


def _failed(problem: Problem) -> YamlTree:
    return YamlTree(None, {(): 1}, frozenset(), (problem,))


def _syntax_problem(exc: yaml.YAMLError, text: str, file: str) -> Problem:
    if isinstance(exc, yaml.reader.ReaderError):
        line = text[: exc.position].count("\n") + 1
        char = exc.character if isinstance(exc.character, int) else 0
        return Problem(file, line, "", f"invalid YAML: unacceptable character #x{char:04x}: {exc.reason}")
    if not isinstance(exc, yaml.MarkedYAMLError):
        return Problem(file, None, "", f"invalid YAML: {exc}")
    mark = exc.problem_mark or exc.context_mark
    where = mark.line + 1 if mark is not None else None
    if where is not None and _tab_indented(text, where):
        return Problem(file, where, "", "invalid YAML: indented with a tab; YAML indents with spaces only")
    if exc.problem == "but found another document":
        return Problem(file, where, "", "only one YAML document is allowed (found a second '---' document)")
    if exc.context and exc.context.startswith("found duplicate anchor") and exc.context_mark:
        anchor = exc.context.removesuffix("; first occurrence").removeprefix("found ")
        first = exc.context_mark.line + 1
        return Problem(file, where, "", f"invalid YAML: {anchor} (first defined on line {first})")
    return Problem(file, where, "", f"invalid YAML: {exc.problem or exc.context or 'syntax error'}")


def _tab_indented(text: str, line: int) -> bool:
    """Whether the 1-based `line` (or the one before it: PyYAML may report the next) starts with a tab
    in its indentation."""
    lines = text.splitlines()
    near = lines[max(0, line - 2) : line]
    return any("\t" in row[: len(row) - len(row.lstrip(" \t"))] for row in near)


class _LimitExceeded(Exception):
    def __init__(self, message: str, line: int | None) -> None:
        super().__init__(message)
        self.message = message
        self.line = line


class _Alias(Node):
    """An alias use: the anchored node, plus where the alias itself was written (for its line)."""

    def __init__(self, target: Node, mark: Any) -> None:
        super().__init__(target.tag, target, mark, mark)


class _Loader(yaml.SafeLoader):
    """SafeLoader that bounds nesting while composing, keeps alias positions and notes tagged scalars."""

    def __init__(self, text: str) -> None:
        super().__init__(text)
        self._depth = 0
        self.tagged: set[int] = set()

    def compose_node(self, parent: Node | None, index: Any) -> Node | None:
        event: yaml.Event = self.peek_event()  # type: ignore[no-untyped-call]
        if isinstance(event, yaml.AliasEvent):
            target = super().compose_node(parent, index)
            assert target is not None  # an alias always names an already composed node
            return _Alias(target, event.start_mark)
        if isinstance(event, yaml.ScalarEvent) and event.tag is not None:
            node = super().compose_node(parent, index)
            self.tagged.add(id(node))
            return node
        nests = isinstance(event, (yaml.SequenceStartEvent, yaml.MappingStartEvent))
        if nests:
            self._depth += 1
            if self._depth > MAX_DEPTH:
                # Stop before the recursive composer can overflow the Python stack.
                raise _LimitExceeded(_too_deep(), _line(event))
        try:
            return super().compose_node(parent, index)
        finally:
            if nests:
                self._depth -= 1


def _too_deep() -> str:
    return f"nesting is deeper than {MAX_DEPTH} levels"


def _line(node: Node | yaml.Event) -> int:
    return int(node.start_mark.line) + 1 if node.start_mark is not None else 1


def _short_tag(tag: str) -> str:
    return "!!" + tag.removeprefix(_TAG) if tag.startswith(_TAG) else tag


@dataclass
class _Sink:
    """Where a conversion records the lines and plain-scalar paths it finds."""

    lines: dict[Path, int] = field(default_factory=dict)
    plain: set[Path] = field(default_factory=set)


class _Converter:
    """Turns composed nodes into plain values, counting every value (aliases included)."""

    def __init__(self, file: str, tagged: frozenset[int]) -> None:
        self.file = file
        self._tagged = tagged
        self.problems: list[Problem] = []
        self._count = 0
        # An anchored node converted at several places reports each of its problems once.
        self._reported: set[tuple[int, str]] = set()

    def problem(self, node: Node, path: Path, message: str) -> None:
        if (id(node), message) in self._reported:
            return
        self._reported.add((id(node), message))
        self.problems.append(Problem(self.file, _line(node), dotted(path), message))

    def convert(self, node: Node, path: Path, depth: int, sink: _Sink) -> object:
        target = node.value if isinstance(node, _Alias) else node
        self._count += 1
        if self._count > MAX_NODES:
            raise _LimitExceeded(
                f"too many nodes: more than {MAX_NODES} values after expanding aliases", _line(node)
            )
        if isinstance(target, ScalarNode):
            return self._scalar(target, path, sink)
        if isinstance(target, SequenceNode) and target.tag == _SEQ_TAG:
            return self._sequence(target, path, depth + 1, sink)
        if isinstance(target, MappingNode) and target.tag == _MAP_TAG:
            return self._mapping(target, path, depth + 1, sink)
        self.problem(target, path, f"unsupported tag '{_short_tag(target.tag)}'")
        return None

    def _scalar(self, node: ScalarNode, path: Path, sink: _Sink) -> object:
        construct = _SCALARS.get(node.tag)
        if construct is None:
            self.problem(node, path, f"unsupported tag '{_short_tag(node.tag)}'")
            return None
        try:
            value = construct(node)
        except (ValueError, IndexError, KeyError):
            self.problem(node, path, f"{node.value!r} is not a valid {_short_tag(node.tag)} value")
            return str(node.value)
        # Only an untagged plain scalar was typed by the resolver, so only it may be re-typed later.
        if isinstance(value, str) and node.style is None and id(node) not in self._tagged:
            sink.plain.add(path)
        return value

    def _sequence(self, node: SequenceNode, path: Path, depth: int, sink: _Sink) -> list[object]:
        _check_depth(node, depth)
        out: list[object] = []
        for index, item in enumerate(node.value):
            item_path = (*path, index)
            sink.lines[item_path] = _line(item)
            out.append(self.convert(item, item_path, depth, sink))
        return out

    def _mapping(self, node: MappingNode, path: Path, depth: int, sink: _Sink) -> dict[Any, object]:
        _check_depth(node, depth)
        explicit: dict[Any, object] = {}
        first_line: dict[Any, int] = {}
        merges: list[Node] = []
        merge_line = 0
        for key_node, value_node in node.value:
            if _is_merge_key(key_node):
                if merges:
                    self.problem(key_node, path, f"duplicate key '<<' (first defined on line {merge_line})")
                else:
                    merges.append(value_node)
                    merge_line = _line(key_node)
                continue
            key = self.convert(key_node, path, depth, _Sink())
            if not _hashable(key):
                self.problem(key_node, path, "a mapping key must be a single value, not a list or mapping")
                continue
            key_path = (*path, key)
            if key in first_line:
                self.problem(
                    key_node, key_path, f"duplicate key {key!r} (first defined on line {first_line[key]})"
                )
                continue
            first_line[key] = sink.lines[key_path] = _line(key_node)
            explicit[key] = self.convert(value_node, key_path, depth, sink)
        merged = self._merged(merges, path, depth, sink, explicit)
        # Same order as PyYAML: merged keys first, an overridden key keeps its merged position.
        merged.update(explicit)
        return merged

    def _merged(
        self, merges: list[Node], path: Path, depth: int, sink: _Sink, explicit: dict[Any, object]
    ) -> dict[Any, object]:
        out: dict[Any, object] = {}
        for source in self._merge_sources(merges, path):
            scratch = _Sink()
            # One level deeper, so a mapping that merges itself runs into the depth limit.
            values = self._mapping(source, path, depth + 1, scratch)
            taken = [key for key in values if key not in explicit and key not in out]
            for key in taken:
                out[key] = values[key]
            _copy_under(scratch, sink, len(path), set(taken))
        return out

    def _merge_sources(self, merges: list[Node], path: Path) -> list[MappingNode]:
        sources: list[MappingNode] = []
        for value in merges:
            target = value.value if isinstance(value, _Alias) else value
            items = target.value if isinstance(target, SequenceNode) else [target]
            for item in items:
                item_target = item.value if isinstance(item, _Alias) else item
                if isinstance(item_target, MappingNode) and item_target.tag == _MAP_TAG:
                    sources.append(item_target)
                else:
                    self.problem(item, path, "a merge key '<<' takes a mapping or a list of mappings")
        return sources


def _check_depth(node: Node, depth: int) -> None:
    # The composer already bounds written nesting; this catches nesting built from aliases and merges,
    # including an anchor that contains itself (`&a [*a]`).
    if depth > MAX_DEPTH:
        raise _LimitExceeded(_too_deep() + " (after expanding aliases)", _line(node))


def _is_merge_key(node: Node) -> bool:
    return isinstance(node, ScalarNode) and node.tag == MERGE_TAG


def _hashable(key: object) -> bool:
    try:
        hash(key)
    except TypeError:
        return False
    return True


def _copy_under(scratch: _Sink, sink: _Sink, depth: int, keys: set[Any]) -> None:
    """Copy the entries recorded below `path + (key,)` for the merged `keys` (scratch shares `path`)."""
    for sub, line in scratch.lines.items():
        if len(sub) > depth and sub[depth] in keys:
            sink.lines[sub] = line
    for sub in scratch.plain:
        if len(sub) > depth and sub[depth] in keys:
            sink.plain.add(sub)
