"""YAML text to plain Python objects, keeping where the author wrote every key and value.

PyYAML's loader throws positions away, so this composes the node graph with the safe loader and
converts it by hand, recording a 1-based (line, col) for each value and each mapping key under its JSON
path (a tuple of keys and list indexes). On the way it refuses what a loader would silently accept:
a key written twice (the loader keeps the last), tags, and recursive aliases.

Scalars follow YAML 1.2 rather than PyYAML's 1.1 rules, because flow authors write words: `yes`, `no`,
`on` and `off` stay text (a button titled Yes must not become `True`, a key `on:` must stay "on"),
`10:30` stays text (1.1 reads it as the number 630), and dates stay text.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any, Iterator

import yaml
from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode

from .problems import Problem

Path = tuple  # of str keys and int indexes
_TAG = "tag:yaml.org,2002:"
# libyaml composes ~20x faster than the pure-Python parser, with the same marks (columns in characters).
_SAFE_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


_INT = re.compile(r"[-+]?[0-9]+")
_FLOAT = re.compile(r"[-+]?(\.[0-9]+|[0-9]+(\.[0-9]*)?)([eE][-+]?[0-9]+)?")
_SPECIAL_FLOATS = {".inf": float("inf"), "+.inf": float("inf"), "-.inf": float("-inf"), ".nan": float("nan")}
_SCALAR_TAGS = frozenset(_TAG + t for t in ("str", "null", "bool", "int", "float", "timestamp"))
_STR, _NULL, _BOOL, _INT_TAG, _FLOAT_TAG, _TIMESTAMP = (
    _TAG + t for t in ("str", "null", "bool", "int", "float", "timestamp")
)
_MAP, _SEQ, _MERGE = _TAG + "map", _TAG + "seq", _TAG + "merge"


class _ResolvingLoader(_SAFE_LOADER):  # type: ignore[misc,valid-type]
    """The safe loader with the same tags, found faster: the composer asks for every node, and the
    resolver's own method builds two lists per scalar and walks path resolvers nobody registered."""

    _first = {first: tuple(found) for first, found in _SAFE_LOADER.yaml_implicit_resolvers.items()}

    def resolve(self, kind: type, value: str, implicit: tuple[bool, bool]) -> str:
        if kind is ScalarNode:
            if implicit[0]:
                for tag, pattern in self._first.get(value[:1], ()):
                    if pattern.match(value):
                        return tag
            return _STR
        return _MAP if kind is MappingNode else _SEQ

    def descend_resolver(self, current_node: Node | None, current_index: Any) -> None:
        pass

    def ascend_resolver(self) -> None:
        pass


# Only while no resolver matches any first character and no path resolver is registered (PyYAML has none).
_LOADER = (
    _ResolvingLoader
    if None not in _SAFE_LOADER.yaml_implicit_resolvers and not _SAFE_LOADER.yaml_path_resolvers
    else _SAFE_LOADER
)


_MAX_NODES = 500_000  # a guard against alias "billion laughs" bombs; a 1,000-step flow has ~20,000
_MAX_DEPTH = 64  # flows are a few levels deep; anything deeper is a mistake or an attack

# The parser's wording (libyaml's and the pure-Python one's) for the mistakes authors make most, in
# words they can act on. Matched on the start of the parser's message.
_PLAIN_SYNTAX = (
    (
        ("mapping values are not allowed",),
        "a ':' is not allowed here: put text that contains ': ' in quotes, or check the indentation of this line",
    ),
    (
        ("could not find expected ':'",),
        "expected 'name: value' here: check the indentation, or close the quotes opened above",
    ),
    (("found unexpected end of stream",), "the file ends in the middle of a quoted text: close the quotes"),
    (("but found another document", "expected a single document"), "a file holds one flow: remove the second '---'"),
    (("found undefined alias",), "this '*name' refers to an '&name' that is not defined above"),
    (
        ("did not find expected node content", "expected the node content"),
        "a value is missing here: close the '[' or '{' opened before, or remove a trailing ','",
    ),
    (
        ("did not find expected ',' or '}'", "expected ',' or '}'"),
        "a '{' is not closed: add '}', and put text that contains ',' or ':' in quotes",
    ),
    (
        ("did not find expected ',' or ']'", "expected ',' or ']'"),
        "a '[' is not closed: add ']', and put text that contains ',' in quotes",
    ),
    (
        ("did not find expected '-' indicator", "expected <block end>, but found '?'"),
        "this line does not line up with the list above it: start it with '- ' or fix its indentation",
    ),
    (
        ("did not find expected key", "expected <block end>, but found '<scalar>'"),
        "unexpected text after a value: check the indentation, and put text that starts with a quote or a bracket in quotes",
    ),
)
_TAB_MESSAGE = "a tab is not allowed here: indent with spaces"
# A value (after `name: ` or `- `) that opens a quote: ("'" or '"', the rest of the line).
_UNCLOSED_QUOTE = re.compile(r"""^\s*(?:-\s+|[^\s"'#:][^:#]*:\s+|-\s+[^\s"'#:][^:#]*:\s+)(["'])(.*)$""")


@dataclass
class Source:
    """One parsed file: its data (None when it could not be read) and where everything is."""

    file: str
    data: Any = None
    # path -> where its value starts / where its key is written, as line << 32 | column (_place): one int
    # instead of a tuple of two for every key and value of the file, the bulk of what a parsed flow holds.
    values: dict[Path, int] = field(default_factory=dict)
    keys: dict[Path, int] = field(default_factory=dict)
    problems: list[Problem] = field(default_factory=list)

    def where(self, path: Path, *, key: bool = False) -> tuple[int, int]:
        """Where path is written (its key when key=True and it has one), else its nearest written parent."""
        path = tuple(path)
        while True:
            if key and path in self.keys:
                return _line_col(self.keys[path])
            if path in self.values:
                return _line_col(self.values[path])
            if not path:
                return (1, 1)
            path = path[:-1]

    def problem(self, path: Path, severity: str, code: str, message: str, *, key: bool = False) -> Problem:
        line, col = self.where(path, key=key)
        return Problem(self.file, line, col, severity, code, message)


def _place(mark: yaml.Mark) -> int:
    return (mark.line + 1) << 32 | (mark.column + 1)


def _line_col(place: int) -> tuple[int, int]:
    return place >> 32, place & 0xFFFFFFFF


def _at(mark: yaml.Mark | None) -> tuple[int, int]:
    return (mark.line + 1, mark.column + 1) if mark is not None else (1, 1)


def _offset_to_line_col(text: str, offset: int) -> tuple[int, int]:
    offset = max(0, min(offset, len(text)))
    line = text.count("\n", 0, offset) + 1
    return line, offset - (text.rfind("\n", 0, offset) + 1) + 1


def decode(raw: bytes, file: str) -> tuple[str | None, list[Problem]]:
    """Bytes of a file to text; a file that is not UTF-8 becomes one problem where the bad byte is."""
    try:
        return raw.decode("utf-8-sig"), []
    except UnicodeDecodeError as e:
        good = raw[: e.start].decode("utf-8", errors="replace")
        line, col = _offset_to_line_col(good, len(good))
        return None, [
            Problem(
                file,
                line,
                col,
                "error",
                "yaml.encoding",
                f"this file is not UTF-8 text (byte 0x{raw[e.start]:02x} here): save it as UTF-8",
            )
        ]


def _syntax_message(e: yaml.MarkedYAMLError, text: str) -> str:
    problem = e.problem or str(e)
    mark = e.problem_mark
    if "tab" in problem or "'\\t'" in problem or (mark is not None and text[mark.index : mark.index + 1] == "\t"):
        return _TAB_MESSAGE
    opened = e.context_mark
    # Where the unclosed quote or bracket (or the mapping) began: the fix is often there, not here.
    began = (
        f" (it begins on line {opened.line + 1})"
        if opened is not None and mark is not None and opened.line != mark.line
        else ""
    )
    for raws, plain in _PLAIN_SYNTAX:
        if problem.startswith(raws) or (e.context or "").startswith(raws):
            return plain + began
    context = f" ({e.context})" if e.context else ""
    return f"YAML syntax: {problem}{context}"


def _common_slip(e: yaml.MarkedYAMLError, lines: list[str], line: int) -> tuple[int, int, str] | None:
    """(line, col, message) where the fix is, for an unclosed quote or a missing ':' above the error."""
    if _syntax_message(e, "\n".join(lines)) == _TAB_MESSAGE:
        return None
    for number, written in enumerate(lines[: line - 1], start=1):
        quote = _UNCLOSED_QUOTE.match(written)
        if quote and _open_quote(quote.group(2), quote.group(1)):
            return (
                number,
                quote.start(1) + 1,
                f"the text in quotes that starts here is not closed: end it with {quote.group(1)} on this line",
            )
    if (e.problem or "").startswith("mapping values are not allowed"):
        above = next(
            (n for n in range(line - 1, 0, -1) if lines[n - 1].strip() and not lines[n - 1].lstrip().startswith("#")), 0
        )
        written = lines[above - 1].strip() if above else ""
        if written and ":" not in written and not written.startswith(("-", '"', "'", "[", "{")):
            word, _, rest = written.partition(" ")
            fixed = f"{word}: {rest}" if rest else f"{word}:"
            col = len(lines[above - 1]) - len(lines[above - 1].lstrip()) + 1
            return above, col, f"a ':' is missing after '{word}': write '{fixed}'"
    return None


def _open_quote(rest: str, quote: str) -> bool:
    """Whether a quoted text that begins just before rest stays open at the end of the line."""
    if quote == "'":
        return rest.replace("''", "").count("'") == 0
    return rest.replace("\\\\", "").replace('\\"', "").count('"') == 0


_EMPTY = "the file is empty: a flow needs at least 'flow:' and 'steps:'"


def _compose(text: str, file: str) -> tuple[Node | None, Problem | None]:
    """The YAML node tree of text, or the one problem that stops it from being read."""
    try:
        return yaml.compose(text, Loader=_LOADER), None
    except yaml.reader.ReaderError as e:
        # libyaml counts the position in UTF-8 bytes, the pure-Python reader in characters.
        offset = (
            len(text.encode("utf-8")[: e.position].decode("utf-8", "ignore"))
            if _SAFE_LOADER is not yaml.SafeLoader
            else e.position
        )
        line, col = _offset_to_line_col(text, offset)
        char = e.character if isinstance(e.character, str) else chr(e.character)
        message = f"the character {char!r} cannot be used in a flow file: remove it"
        return None, Problem(file, line, col, "error", "yaml.bad_character", message)
    except yaml.MarkedYAMLError as e:
        line, col = _at(e.problem_mark or e.context_mark)
        slip = _common_slip(e, text.splitlines(), line)
        line, col, message = slip if slip else (line, col, _syntax_message(e, text))
        return None, Problem(file, line, col, "error", "yaml.syntax", message)
    except yaml.YAMLError as e:
        return None, Problem(file, 1, 1, "error", "yaml.syntax", f"YAML syntax: {e}")
    except RecursionError:
        return None, Problem(file, 1, 1, "error", "yaml.too_deep", "the file is nested too deeply to be a flow")


def parse(text: str, file: str) -> Source:
    """Compose text and convert it; every problem found is in the returned Source."""
    source = Source(file)
    if not text.strip() or all(not line.strip() or line.lstrip().startswith("#") for line in text.splitlines()):
        source.problems.append(Problem(file, 1, 1, "error", "yaml.empty", _EMPTY))
        return source
    root, problem = _compose(text, file)
    if problem is not None:
        source.problems.append(problem)
        return source
    if root is None or (isinstance(root, ScalarNode) and root.tag == _TAG + "null" and not root.value):
        source.problems.append(Problem(file, 1, 1, "error", "yaml.empty", _EMPTY))
        return source
    if not isinstance(root, MappingNode):
        line, col = _at(root.start_mark)
        message = "a flow file must be a set of 'name: value' lines (flow:, title:, steps:, …)"
        source.problems.append(Problem(file, line, col, "error", "yaml.not_mapping", message))
        return source
    # Without an anchor no node is shared, so each can be let go once converted (see _Converter.consume).
    converter = _Converter(source, consume="&" not in text)
    data = converter.convert(root, (), 0)
    # Past the size guard the data is cut short, and checking it would only add confusing problems.
    source.data = None if converter.stopped else data
    return source


class _Converter:
    """Node graph to plain objects, recording marks and problems as it goes.

    With consume, each node is dropped from its parent as soon as it is converted, so the node graph
    shrinks while the data grows: a 5,000-step flow's nodes take about 26 MB, and holding them all until
    the end made parsing peak at 37 MB instead of 28.5 (by tracemalloc; what no longer fits in the
    processor's cache makes every step of a large flow slower). Only for a graph without anchors, where
    no node is reached twice.
    """

    def __init__(self, source: Source, consume: bool = False) -> None:
        self.source = source
        self.consume = consume
        self.nodes = 0
        self.active: set[int] = set()  # ids of nodes on the current path, to catch recursive aliases
        self.stopped = False

    def fail(self, node: Node, code: str, message: str) -> None:
        line, col = _at(node.start_mark)
        self.source.problems.append(Problem(self.source.file, line, col, "error", code, message))

    def convert(self, node: Node, path: Path, depth: int) -> Any:
        if path not in self.source.values:
            self.source.values[path] = _place(node.start_mark)
        self.nodes += 1
        if self.nodes > _MAX_NODES:
            if not self.stopped:
                self.stopped = True
                self.fail(
                    node, "yaml.too_large", "this file expands to too much data to be a flow (check the '*' aliases)"
                )
            return None
        if depth > _MAX_DEPTH:
            self.fail(node, "yaml.too_deep", "this is nested too deeply to be part of a flow")
            return None
        if isinstance(node, ScalarNode):
            return self.scalar(node)
        if id(node) in self.active:
            self.fail(node, "yaml.recursive", "this '*' alias refers to itself")
            return None
        self.active.add(id(node))
        try:
            if isinstance(node, SequenceNode):
                if node.tag != _SEQ:
                    self.fail(node, "yaml.tag", f"the tag '{node.tag}' is not supported in a flow: remove it")
                return [self.convert(item, path + (i,), depth + 1) for i, item in enumerate(self._children(node))]
            return self.mapping(node, path, depth)
        finally:
            self.active.discard(id(node))

    def scalar(self, node: ScalarNode) -> Any:
        tag, value = node.tag, node.value
        if tag == _STR or (node.style and tag in _SCALAR_TAGS):  # quoted or block: always text
            return value
        if tag == _NULL:
            return None
        if tag == _BOOL:
            return {"true": True, "false": False}.get(value.lower(), value)
        if tag == _INT_TAG:
            return int(value) if _INT.fullmatch(value) else value
        if tag == _FLOAT_TAG:
            if value.lower() in _SPECIAL_FLOATS:
                return _SPECIAL_FLOATS[value.lower()]
            return float(value) if _FLOAT.fullmatch(value) else value
        if tag == _TIMESTAMP:
            return value
        self.fail(node, "yaml.tag", f"the tag '{tag}' is not supported in a flow: remove it")
        return value

    def mapping(self, node: MappingNode, path: Path, depth: int) -> dict:
        if node.tag != _MAP:
            self.fail(node, "yaml.tag", f"the tag '{node.tag}' is not supported in a flow: remove it")
        result: dict[str, Any] = {}
        merged: list[tuple[Node, Node]] = []
        keys = self.source.keys
        for key_node, value_node in self._children(node):
            if not isinstance(key_node, ScalarNode):
                self.fail(key_node, "yaml.bad_key", "a name before ':' must be a plain word, not a list or a mapping")
                continue
            if key_node.tag == _MERGE:
                merged.extend(self._merge_sources(value_node))
                continue
            key = key_node.value
            here = path + (key,)
            if key in result:  # merged keys come after: result holds only what this mapping writes itself
                line, col = _at(key_node.start_mark)
                self.source.problems.append(
                    Problem(
                        self.source.file,
                        line,
                        col,
                        "error",
                        "yaml.duplicate_key",
                        f"'{key}' is written twice here (first on line {_line_col(keys[here])[0]}): only one can be kept, remove or rename one",
                    )
                )
                continue
            keys[here] = _place(key_node.start_mark)
            result[key] = self.convert(value_node, here, depth + 1)
        # `<<: *defaults` fills in keys the mapping does not write itself, as YAML's merge key does.
        for key_node, value_node in merged:
            if not isinstance(key_node, ScalarNode) or key_node.tag == _MERGE:
                continue
            key = key_node.value
            if key not in result:
                self.source.keys[path + (key,)] = _place(key_node.start_mark)
                result[key] = self.convert(value_node, path + (key,), depth + 1)
        return result

    def _children(self, node: Node) -> Iterator[Any]:
        """node.value's items in order; with consume, each let go of (by node and by this) once the next is asked."""
        if not self.consume:
            yield from node.value
            return
        items, node.value = node.value, []
        items.reverse()
        while items:
            yield items.pop()

    def _merge_sources(self, node: Node) -> list[tuple[Node, Node]]:
        sources = node.value if isinstance(node, SequenceNode) else [node]
        pairs: list[tuple[Node, Node]] = []
        for src in sources:
            if isinstance(src, MappingNode):
                pairs.extend(src.value)
            else:
                self.fail(src, "yaml.bad_merge", "'<<' must be followed by a '*name' alias of a mapping")
        return pairs


__all__ = ["Source", "parse", "decode"]
