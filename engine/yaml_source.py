"""YAML text to plain Python objects, keeping where the author wrote every key and value.

PyYAML's loader throws positions away, so this reads the safe loader's parser events and converts
them by hand as they come, recording a 1-based (line, col) for each value and each mapping key, found by
its JSON path (a tuple of keys and list indexes). On the way it refuses what a loader would silently accept:
a key written twice (the loader keeps the last), tags, and recursive aliases.

Scalars follow YAML 1.2 rather than PyYAML's 1.1 rules, because flow authors write words: `yes`, `no`,
`on` and `off` stay text (a button titled Yes must not become `True`, a key `on:` must stay "on"),
`10:30` stays text (1.1 reads it as the number 630), and dates stay text.
"""

from __future__ import annotations

import re
from array import array
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass, field
from functools import partial
from sys import intern
from typing import Any, Iterable, Iterator

import yaml
from yaml.composer import ComposerError
from yaml.events import (
    AliasEvent,
    Event,
    MappingEndEvent,
    MappingStartEvent,
    ScalarEvent,
    SequenceEndEvent,
    SequenceStartEvent,
    StreamEndEvent,
)
from yaml.nodes import MappingNode, Node, ScalarNode

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
    """The safe loader with the same tags, found faster: the converter asks for every plain scalar, and the
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
    problems: list[Problem] = field(default_factory=list)
    # Two numbers a value, in the order the values were converted: where its key is written (_place, 0 for a
    # list item or the document) and where the value starts. No path is kept: `places` walks `data` in the
    # same order when first asked, and a valid flow is never asked (validate reads a place for a problem
    # only). A path tuple and a place int a value were 70,000 objects for a 5,000-step flow, each made,
    # kept and freed at the end (cachegrind: misses of an 8 MB cache that grew with the flow).
    marks: array = field(default_factory=partial(array, "Q"), repr=False)
    _places: dict[Path, int] | None = field(default=None, repr=False)

    @property
    def places(self) -> dict[Path, int]:
        """path -> where its value starts, and above it where its key is written (a mapping's value), each
        as line << 32 | column (_place)."""
        if self._places is None:
            self._places = {}
            if self.marks:
                _placed(self.data, (), self.marks, 0, self._places)
        return self._places

    def where(self, path: Path, *, key: bool = False) -> tuple[int, int]:
        """Where path is written (its key when key=True and it has one), else its nearest written parent."""
        path = tuple(path)
        places = self.places
        while (place := places.get(path)) is None:
            if not path:
                return (1, 1)
            path = path[:-1]
        return _line_col(place >> _KEY if key and place >> _KEY else place & _VALUE)

    def problem(self, path: Path, severity: str, code: str, message: str, *, key: bool = False) -> Problem:
        line, col = self.where(path, key=key)
        return Problem(self.file, line, col, severity, code, message)

    def key_places(self, path: Path) -> dict[Any, tuple[int, int]]:
        """Where each key of the mapping at path is written: {key: where(path + (key,), key=True)}, for a
        built flow's steps. Unless `places` was made already, found by counting the values before each
        (the marks of what a value holds follow its own), with no place made for what they hold: making
        them all cost a 1,000-step flow's load 2.5 % more instructions."""
        found_at = _find(self.data, tuple(path), 0)
        if found_at is None or type(found_at[0]) is not dict:
            return {}
        mapping, at = found_at
        if self._places is not None or not self.marks:
            return {key: self.where((*path, key), key=True) for key in mapping}
        marks, found = self.marks, {}
        at += 2
        for key, value in mapping.items():
            found[key] = _line_col(marks[at] or marks[at + 1])
            at += 2 * _count(value)
        return found


def _placed(value: Any, path: Path, marks: array, at: int, places: dict[Path, int]) -> int:
    """Place value (converted from marks[at:]) and what it holds under path; the index of the marks after them.

    The converter writes a value's marks, then its items' in order: a mapping's own keys as written, then
    the keys a `<<` merges in (as the dict holds them); an alias is converted again, to new objects, and a
    value refused (too deep, recursive, too large) is one None."""
    places[path] = marks[at] << _KEY | marks[at + 1]
    at += 2
    if type(value) is dict:
        for key, item in value.items():
            at = _placed(item, path + (key,), marks, at, places)
    elif type(value) is list:
        for index, item in enumerate(value):
            at = _placed(item, path + (index,), marks, at, places)
    return at


def _count(value: Any) -> int:
    """How many values value is, itself and all it holds: its marks are twice as many (see _placed)."""
    if type(value) is dict:
        return 1 + sum(map(_count, value.values()))
    if type(value) is list:
        return 1 + sum(map(_count, value))
    return 1


def _find(value: Any, path: Path, at: int) -> tuple[Any, int] | None:
    """The value at path below value (whose marks start at at) and the index in the marks where its own
    start; None when path is not there."""
    for part in path:
        at += 2
        if type(value) is dict:
            items: Iterable[tuple[Any, Any]] = value.items()
        elif type(value) is list:
            items = enumerate(value)
        else:
            return None
        for key, item in items:
            if key == part:
                value = item
                break
            at += 2 * _count(item)
        else:
            return None
    return value, at


def _place(mark: yaml.Mark) -> int:
    return (mark.line + 1) << 32 | (mark.column + 1)


# A path's place: its key's _place shifted above its value's (0 for a list item or the document).
_KEY = 64
_VALUE = (1 << _KEY) - 1


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
# The start of a line (str.splitlines' line breaks) that holds more than blanks (str.isspace's) and a comment:
# a text without one is empty. Searched for rather than splitting the text into lines, which for a
# 5,000-step flow made 30,000 strings and read its 1.7 MB twice more (cachegrind: misses of a 1 MB cache).
_CONTENT = re.compile(r"(?:^|(?<=[\n\r\x0b\x0c\x1c\x1d\x1e\x85\u2028\u2029]))\s*[^\s#]")


def _read_problem(e: Exception, text: str, file: str) -> Problem:
    """The one problem that stops text from being read, for an error the parser or the reading raised."""
    if isinstance(e, yaml.reader.ReaderError):
        # libyaml counts the position in UTF-8 bytes, the pure-Python reader in characters.
        offset = (
            len(text.encode("utf-8")[: e.position].decode("utf-8", "ignore"))
            if _SAFE_LOADER is not yaml.SafeLoader
            else e.position
        )
        line, col = _offset_to_line_col(text, offset)
        char = e.character if isinstance(e.character, str) else chr(e.character)
        message = f"the character {char!r} cannot be used in a flow file: remove it"
        return Problem(file, line, col, "error", "yaml.bad_character", message)
    if isinstance(e, yaml.MarkedYAMLError):
        line, col = _at(e.problem_mark or e.context_mark)
        slip = _common_slip(e, text.splitlines(), line)
        line, col, message = slip if slip else (line, col, _syntax_message(e, text))
        return Problem(file, line, col, "error", "yaml.syntax", message)
    return Problem(file, 1, 1, "error", "yaml.syntax", f"YAML syntax: {e}")


def parse(text: str, file: str) -> Source:
    """Read text and convert it; every problem found is in the returned Source."""
    source = Source(file)
    if _CONTENT.search(text) is None:
        source.problems.append(Problem(file, 1, 1, "error", "yaml.empty", _EMPTY))
        return source
    loader = _LOADER(text)
    converter = _Converter(source, loader, anchored="&" in text)
    try:
        data = converter.document()
    except yaml.YAMLError as e:
        # Whatever was converted before the mistake is let go: the one problem is all the author sees.
        return Source(file, problems=[_read_problem(e, text, file)])
    finally:
        loader.dispose()
    # Past the size guard the data is cut short, and checking it would only add confusing problems.
    source.data = None if converter.stopped else data
    return source


_STARTS = (MappingStartEvent, SequenceStartEvent)
# How an event moves the nesting: a mapping or a list opens one level, its end closes it.
_NESTING = {MappingStartEvent: 1, SequenceStartEvent: 1, MappingEndEvent: -1, SequenceEndEvent: -1}


class _Converter:
    """The parser's events to plain objects, recording marks and problems as it goes.

    The events are converted as the parser makes them, so no node graph is built: a 5,000-step flow's
    nodes took about 26 MB, which the conversion then read back from memory the processor's cache no
    longer held (cachegrind, 32 MB last-level cache: a step's misses nearly doubled from 1,000 steps to
    5,000). It converts what yaml.compose and the node graph would give: an alias converts the events
    recorded for its anchor again (with the anchor's marks), as a shared node was converted again where
    each alias names it; an alias inside what its own anchor marks is refused, as is an anchored mapping
    or list met again inside itself through another alias.
    """

    def __init__(self, source: Source, loader: Any, anchored: bool = False) -> None:
        self.source = source
        self.marks = source.marks
        self.write = source.marks.append
        self.parse_event = loader.get_event
        self.resolve = loader.resolve
        # Only a text with '&' can hold anchors: the others skip the recording on every event.
        self.anchored = anchored
        self.anchors: dict[str, list[Event]] = {}  # anchor -> its events, the first one first
        self.recording: list[list] = []  # [events, open collections] of anchors still being read
        self.replays: list[Iterator[Event]] = []  # events of aliases (and merged pairs) being converted again
        self.nodes = 0
        self.active: set[str] = set()  # anchors of the mappings and lists on the current path
        self.stopped = False

    def next(self) -> Event:
        """The next event: of the innermost replay, else the parser's (recorded for the anchors open)."""
        if self.replays:
            return next(self.replays[-1])
        event = self.parse_event()
        if self.anchored:
            self.record(event)
        elif type(event) is AliasEvent:  # no '&' in the text, so no anchor for it to name
            raise ComposerError(None, None, "found undefined alias", event.start_mark)
        return event

    def record(self, event: Event) -> None:
        """Append event to every anchor being read, and open a recording for an anchor it starts, with
        the composer's errors for an alias of no anchor and an anchor written twice."""
        kind = type(event)
        step = _NESTING.get(kind, 0)
        for recording in self.recording:
            recording[0].append(event)
            recording[1] += step
        self.recording = [recording for recording in self.recording if recording[1]]
        if kind is AliasEvent:
            if event.anchor not in self.anchors:
                raise ComposerError(None, None, "found undefined alias", event.start_mark)
        elif kind in _STARTS or kind is ScalarEvent:
            anchor = event.anchor
            if anchor is None:
                return
            if anchor in self.anchors:
                first = self.anchors[anchor][0].start_mark
                raise ComposerError(
                    "found duplicate anchor; first occurrence", first, "second occurrence", event.start_mark
                )
            self.anchors[anchor] = [event]
            if step:
                self.recording.append([self.anchors[anchor], 1])

    def skip(self, event: Event) -> None:
        """Read past the rest of the mapping or list event starts (nothing for a scalar or an alias)."""
        self.capture(event)

    def capture(self, event: Event) -> list[Event]:
        """The events of the value event starts, read (an alias stays one event)."""
        events = [event]
        depth = type(event) in _STARTS
        while depth:
            events.append(self.next())
            depth += _NESTING.get(type(events[-1]), 0)
        return events

    @contextmanager
    def replaying(self, events: list[Event]) -> Iterator[None]:
        """Read events (recorded earlier) next, then go back to what was being read."""
        self.replays.append(iter(events))
        try:
            yield
        finally:
            self.replays.pop()

    def document(self) -> Any:
        """The single document's data (None without a mapping at its root, with the problem recorded)."""
        self.next()  # the stream's start
        started = self.next()
        if type(started) is StreamEndEvent:
            return self.empty()
        root = self.next()
        if type(root) is MappingStartEvent:
            data = self.convert(root, 0)
        else:
            self.skip(root)
            data = None
        self.next()  # the document's end
        ended = self.next()
        if type(ended) is not StreamEndEvent:
            raise ComposerError(
                "expected a single document in the stream",
                root.start_mark,
                "but found another document",
                ended.start_mark,
            )
        if type(root) is MappingStartEvent:
            return data
        if type(root) is ScalarEvent and self.tag(root) == _NULL and not root.value:
            return self.empty()
        line, col = _at(root.start_mark)
        message = "a flow file must be a set of 'name: value' lines (flow:, title:, steps:, …)"
        self.source.problems.append(Problem(self.source.file, line, col, "error", "yaml.not_mapping", message))
        return None

    def empty(self) -> None:
        self.source.problems.append(Problem(self.source.file, 1, 1, "error", "yaml.empty", _EMPTY))

    def fail(self, event: Event, code: str, message: str) -> None:
        line, col = _at(event.start_mark)
        self.source.problems.append(Problem(self.source.file, line, col, "error", code, message))

    def tag(self, event: Any) -> str:
        """event's tag, resolved as the composer resolves it when the text leaves it implicit."""
        tag = event.tag
        if tag is None or tag == "!":
            if type(event) is ScalarEvent:
                return self.resolve(ScalarNode, event.value, event.implicit)
            return _MAP if type(event) is MappingStartEvent else _SEQ
        return tag

    def convert(self, event: Event, depth: int, key: int = 0) -> Any:
        """The value event starts (an alias: the value its anchor marks), its events read; key: where its key
        is written (_place), for a mapping's value."""
        recorded = None
        if type(event) is AliasEvent:
            recorded = self.anchors[event.anchor]
            event = recorded[0]
        self.write(key)
        self.write(_place(event.start_mark))
        self.nodes += 1
        if self.nodes > _MAX_NODES:
            if not self.stopped:
                self.stopped = True
                self.fail(
                    event, "yaml.too_large", "this file expands to too much data to be a flow (check the '*' aliases)"
                )
            return self.skip(event) if recorded is None else None
        if depth > _MAX_DEPTH:
            self.fail(event, "yaml.too_deep", "this is nested too deeply to be part of a flow")
            return self.skip(event) if recorded is None else None
        if type(event) is ScalarEvent:
            return self.scalar(event)
        anchor = event.anchor
        if anchor is not None:
            if anchor in self.active:
                self.fail(event, "yaml.recursive", "this '*' alias refers to itself")
                return self.skip(event) if recorded is None else None
            self.active.add(anchor)
        if recorded is not None:
            self.replays.append(iter(recorded[1:]))
        try:
            if type(event) is SequenceStartEvent:
                tag = self.tag(event)
                if tag != _SEQ:
                    self.fail(event, "yaml.tag", f"the tag '{tag}' is not supported in a flow: remove it")
                items: list[Any] = []
                while type(item := self.next()) is not SequenceEndEvent:
                    items.append(self.convert(item, depth + 1))
                return items
            return self.mapping(event, depth)
        finally:
            if recorded is not None:
                self.replays.pop()
            self.active.discard(anchor)

    def scalar(self, event: ScalarEvent) -> Any:
        tag, value = self.tag(event), event.value
        if tag == _STR or (event.style and tag in _SCALAR_TAGS):  # quoted or block: always text
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
        self.fail(event, "yaml.tag", f"the tag '{tag}' is not supported in a flow: remove it")
        return value

    def key(self, event: Event) -> ScalarEvent | None:
        """The scalar event a mapping key is (an alias: its anchor's), or None for a mapping or list."""
        if type(event) is AliasEvent:
            event = self.anchors[event.anchor][0]
        return event if type(event) is ScalarEvent else None

    def mapping(self, event: MappingStartEvent, depth: int) -> dict:
        tag = self.tag(event)
        if tag != _MAP:
            self.fail(event, "yaml.tag", f"the tag '{tag}' is not supported in a flow: remove it")
        result: dict[str, Any] = {}
        first = len(self.marks)  # where the marks of its first value start
        merged: list[tuple[list[Event], list[Event]]] = []
        while type(key_event := self.next()) is not MappingEndEvent:
            key_start = self.key(key_event)
            if key_start is None:
                self.fail(
                    self.anchors[key_event.anchor][0] if type(key_event) is AliasEvent else key_event,
                    "yaml.bad_key",
                    "a name before ':' must be a plain word, not a list or a mapping",
                )
                self.skip(key_event)
                self.skip(self.next())
                continue
            if self.tag(key_start) == _MERGE:
                merged.extend(self._merge_sources(self.next(), event.anchor))
                continue
            # Keys interned: a 5,000-step flow's 34,500 keys are then the code's own "next", "say", ... not a
            # new string each, kept to the end. The step names targets hold are validate's to share
            # (_FileChecker.step_key maps every target, `on:` outcomes and cancel/expire included, to the
            # step's own name): interning `next:`/`goto:`/`on_fail:` here too cost 3.4k instructions a step
            # and saved no miss beyond linear once it did (cachegrind, 8 MB cache: 313k with, 314k without).
            key = intern(key_start.value)
            if key in result:  # merged keys come after: result holds only what this mapping writes itself
                line, col = _at(key_start.start_mark)
                self.source.problems.append(
                    Problem(
                        self.source.file,
                        line,
                        col,
                        "error",
                        "yaml.duplicate_key",
                        f"'{key}' is written twice here (first on line {self.first_line(result, key, first)}): only one can be kept, remove or rename one",
                    )
                )
                self.skip(self.next())
                continue
            result[key] = self.convert(self.next(), depth + 1, _place(key_start.start_mark))
        # `<<: *defaults` fills in keys the mapping does not write itself, as YAML's merge key does.
        for key_events, value_events in merged:
            key_start = self.key(key_events[0])
            if key_start is None or self.tag(key_start) == _MERGE:
                continue
            key = intern(key_start.value)
            if key not in result:
                with self.replaying(value_events[1:]):
                    result[key] = self.convert(value_events[0], depth + 1, _place(key_start.start_mark))
        return result

    def first_line(self, result: dict, key: str, at: int) -> int:
        """The line of key in the mapping being read into result, whose first value's marks start at at: the
        marks of the values before it counted (rare, so counted rather than kept)."""
        for written, value in result.items():
            if written == key:
                return self.marks[at] >> 32
            at = _placed(value, (), self.marks, at, {})
        raise AssertionError(key)

    def _merge_sources(self, event: Event, merging: str | None) -> list[tuple[list[Event], list[Event]]]:
        """The (key, value) events of the mappings a `<<` value names, the value's events read (merging: the
        anchor of the mapping that merges them)."""
        pairs: list[tuple[list[Event], list[Event]]] = []
        if type(event) is AliasEvent and event.anchor not in self.active:
            recorded = self.anchors[event.anchor]
            with self.replaying(recorded[1:]):
                return self._merge_sources(recorded[0], merging)
        if type(event) is not SequenceStartEvent:
            return self._merge_source(event, merging)
        while type(item := self.next()) is not SequenceEndEvent:
            pairs.extend(self._merge_source(item, merging))
        return pairs

    def _merge_source(self, event: Event, merging: str | None) -> list[tuple[list[Event], list[Event]]]:
        recorded = None
        if type(event) is AliasEvent:
            recorded = self.anchors[event.anchor]
            event = recorded[0]
            if event.anchor in self.active:
                # A mapping merging itself gains nothing (it writes every key it has); one it is part of is
                # still being read.
                if event.anchor != merging:
                    self.fail(event, "yaml.recursive", "this '*' alias refers to itself")
                return []
        if type(event) is not MappingStartEvent:
            self.fail(event, "yaml.bad_merge", "'<<' must be followed by a '*name' alias of a mapping")
            if recorded is None:
                self.skip(event)
            return []
        with self.replaying(recorded[1:]) if recorded is not None else nullcontext():
            pairs = []
            while type(key_event := self.next()) is not MappingEndEvent:
                pairs.append((self.capture(key_event), self.capture(self.next())))
            return pairs


__all__ = ["Source", "parse", "decode"]
