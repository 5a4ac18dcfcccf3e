"""Parse Ruby source with tree-sitter into a small tree the interpreter walks.

tree-sitter nodes are converted once into `Node`s (type, named children, fields, line):
walking them is cheaper than asking tree-sitter again on every loop iteration, and the
conversion is iterative, so a deeply nested file is refused cleanly instead of
exhausting Python's stack. Heredoc bodies, which tree-sitter places after the line that
opens them, are attached to their `heredoc_beginning` node.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

from vmctl.errors import ConfigError

MAX_SOURCE_BYTES = 2 * 1024 * 1024
MAX_TREE_DEPTH = 400


@dataclass
class Source:
    path: Path
    text: bytes
    display: str  # the path as shown in errors and warnings

    def __post_init__(self) -> None:
        # Ruby reads CRLF as a newline (Vagrantfiles written on Windows): so do we.
        self.text = self.text.replace(b"\r\n", b"\n")

    def line(self, number: int) -> str:
        lines = self.text.split(b"\n", number)
        if 0 < number <= len(lines):
            return lines[number - 1].decode("utf-8", "replace")
        return ""


class Node:
    __slots__ = ("type", "kids", "fields", "line", "start", "end", "source", "op", "heredoc")

    def __init__(self, type_: str, line: int, start: int, end: int, source: Source) -> None:
        self.type = type_
        self.kids: list[Node] = []
        self.fields: dict[str, list[Node]] = {}
        self.line = line
        self.start = start
        self.end = end
        self.source = source
        self.op: str | None = None  # the anonymous `operator` token (binary, unary, call, ...)
        self.heredoc: Node | None = None  # heredoc_beginning -> its heredoc_body

    def field(self, name: str) -> Node | None:
        nodes = self.fields.get(name)
        return nodes[0] if nodes else None

    def all(self, name: str) -> list[Node]:
        return self.fields.get(name, [])

    @property
    def text(self) -> str:
        return self.source.text[self.start : self.end].decode("utf-8", "replace")

    def __repr__(self) -> str:
        return f"<{self.type} line {self.line}>"


@cache
def _parser() -> Any:
    # Imported here: `vmctl --help` must not pay for tree-sitter.
    import tree_sitter
    import tree_sitter_ruby

    return tree_sitter.Parser(tree_sitter.Language(tree_sitter_ruby.language()))


def parse(source: Source) -> Node:
    """The program's tree; a ConfigError naming the line for a syntax error."""
    if len(source.text) > MAX_SOURCE_BYTES:
        raise ConfigError(
            f"file is too large to be a Vagrantfile ({len(source.text)} bytes)", file=source.display
        )
    tree = _parser().parse(source.text)
    root = tree.root_node
    if root.has_error:
        bad = _first_error(root)
        line = bad.start_point.row + 1 if bad is not None else 1
        what = "syntax error"
        if bad is not None and bad.is_missing:
            what = f"syntax error: missing `{bad.type}`"
        raise ConfigError(
            what, file=source.display, line=line, source_line=source.line(line),
            hint="check the Ruby syntax on this line (an unclosed block, string or bracket?)",
        )
    return _convert(root, source)


def _first_error(root: Any) -> Any:
    stack = [root]
    while stack:
        node = stack.pop()
        if node.is_error or node.is_missing:
            return node
        if node.has_error:
            stack.extend(reversed(node.children))
    return None


def _convert(ts_root: Any, source: Source) -> Node:
    cursor = ts_root.walk()
    parents: list[Node] = []
    root: Node | None = None
    beginnings: list[Node] = []
    bodies: list[Node] = []
    while True:
        ts_node = cursor.node
        descended = False
        if ts_node.is_named:
            if ts_node.type != "comment":
                node = Node(
                    ts_node.type, ts_node.start_point.row + 1, ts_node.start_byte,
                    ts_node.end_byte, source,
                )
                if parents:
                    parent = parents[-1]
                    if node.type == "heredoc_body":
                        bodies.append(node)
                    else:
                        parent.kids.append(node)
                        field_name = cursor.field_name
                        if field_name:
                            parent.fields.setdefault(field_name, []).append(node)
                else:
                    root = node
                if node.type == "heredoc_beginning":
                    beginnings.append(node)
                if len(parents) > MAX_TREE_DEPTH:
                    raise ConfigError(
                        "the code is nested too deeply", file=source.display, line=node.line,
                        source_line=source.line(node.line),
                    )
                if cursor.goto_first_child():
                    parents.append(node)
                    descended = True
        elif parents and cursor.field_name == "operator":
            parents[-1].op = ts_node.type
        if descended:
            continue
        while not cursor.goto_next_sibling():
            if not cursor.goto_parent() or not parents:
                assert root is not None
                for begin, body in zip(beginnings, bodies, strict=False):
                    begin.heredoc = body
                return root
            parents.pop()
