"""Load a YAML file and remember the line of every node, so errors can name it.

PyYAML's safe loader throws the node marks away; here the document is composed into
nodes first, turned into plain data, and a map from the JSON path of each value
(a tuple of keys / indexes) to its 1-based line is kept beside it.
"""

from __future__ import annotations

from pathlib import Path

import yaml

from .model import PatternDatabaseError

JsonPath = tuple  # tuple[str | int, ...]


class LocatedDocument:
    """Plain data of one YAML file plus the line of each node in it."""

    def __init__(self, file: Path, data, lines: dict[JsonPath, int]):
        self.file = file
        self.data = data
        self.lines = lines

    def line_of(self, path) -> int:
        """Line of the node at `path`, or of its nearest ancestor that has one."""
        path = tuple(path)
        while path:
            if path in self.lines:
                return self.lines[path]
            path = path[:-1]
        return self.lines.get((), 1)

    def error(self, path, cause: str) -> PatternDatabaseError:
        return PatternDatabaseError(self.file, self.line_of(path), cause)


def load_located_yaml(file: Path, raw: bytes) -> LocatedDocument:
    """Parse `raw` (the bytes of `file`); malformed YAML raises with file and line."""
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise PatternDatabaseError(file, None, f"not valid UTF-8 ({exc})") from exc
    loader = yaml.SafeLoader(text)
    try:
        node = loader.get_single_node()
        if node is None:
            raise PatternDatabaseError(file, 1, "file is empty")
        lines: dict[JsonPath, int] = {}
        _record_lines(file, node, (), lines)
        data = loader.construct_document(node)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = mark.line + 1 if mark is not None else None
        problem = exc.problem or str(exc)
        raise PatternDatabaseError(file, line, f"invalid YAML: {problem}") from exc
    except yaml.YAMLError as exc:
        raise PatternDatabaseError(file, None, f"invalid YAML: {exc}") from exc
    finally:
        loader.dispose()
    return LocatedDocument(file, data, lines)


def _record_lines(file: Path, node: yaml.Node, path: JsonPath, lines: dict) -> None:
    lines[path] = node.start_mark.line + 1
    if isinstance(node, yaml.MappingNode):
        seen: dict[str, int] = {}
        for key_node, value_node in node.value:
            key = key_node.value
            line = key_node.start_mark.line + 1
            # PyYAML silently keeps the last of two equal keys; in evidence-grade
            # data a duplicated key is almost always a copy-paste mistake.
            if key in seen:
                raise PatternDatabaseError(file, line, f"duplicate key {key!r} (first at line {seen[key]})")
            seen[key] = line
            _record_lines(file, value_node, path + (key,), lines)
            # A key's own line is the better location for errors about its value.
            lines[path + (key,)] = line
    elif isinstance(node, yaml.SequenceNode):
        for index, item in enumerate(node.value):
            _record_lines(file, item, path + (index,), lines)
