"""The evaluator: walks the syntax tree of a safe Ruby subset. It never executes Ruby.

Nodes outside the subset raise UnsupportedConstruct when evaluation reaches them (a
branch not taken may hold anything). Every evaluation is bounded by `Limits`: steps,
block calls, call depth, string and collection sizes, and wall time.

Control flow uses Python exceptions that Ruby code cannot rescue: `Next`, `Break`
(tagged with the block or loop it leaves), `Return` (tagged with the method frame).
Ruby exceptions are `RubyError`; `rescue` catches only those.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from vmctl.errors import ConfigError, UnsupportedConstruct
from vmctl.vagrantfile import builtins, host, objects
from vmctl.vagrantfile.recording import Recorder, RecordingEnv
from vmctl.vagrantfile.syntax import Node, Source, parse
from vmctl.vagrantfile.values import (
    Abort,
    LimitError,
    Proc,
    RException,
    RRange,
    RubyError,
    Symbol,
    class_name,
    exception_is_a,
    inspect,
    truthy,
)


@dataclass(frozen=True)
class Limits:
    max_steps: int = 5_000_000  # nodes evaluated
    max_iterations: int = 1_000_000  # block calls and loop turns
    max_call_depth: int = 100  # nested method, block and file calls
    max_string: int = 1_000_000  # characters in one string
    max_items: int = 200_000  # elements in one array or hash
    max_files: int = 50  # files loaded with require/load
    max_messages: int = 1_000
    seconds: float = 10.0


class Scope:
    __slots__ = ("vars", "parent", "frame", "proc", "loops")

    def __init__(self, parent: Scope | None, frame: Frame, proc: Proc | None = None) -> None:
        self.vars: dict[str, Any] = {}
        self.parent = parent
        self.frame = frame
        self.proc = proc  # set on a block's own scope: `break` leaves that block's call
        self.loops = 0  # `for` loops running in this scope: `break` leaves the loop

    def find(self, name: str) -> Scope | None:
        scope: Scope | None = self
        while scope is not None:
            if name in scope.vars:
                return scope
            scope = scope.parent
        return None

    def assign(self, name: str, value: Any) -> None:
        (self.find(name) or self).vars[name] = value


class Frame:
    """A method invocation, or a file's top level."""

    __slots__ = ("block", "name")

    def __init__(self, name: str, block: Proc | None = None) -> None:
        self.name = name
        self.block = block


@dataclass(eq=False)
class UserMethod:
    name: str
    params: Node | None
    body: Node | None


class Next(Exception):
    def __init__(self, value: Any) -> None:
        self.value = value


class Break(Exception):
    def __init__(self, tag: Any, value: Any) -> None:
        self.tag = tag
        self.value = value


class Return(Exception):
    def __init__(self, frame: Frame, value: Any) -> None:
        self.frame = frame
        self.value = value


# Python exceptions a builtin may raise on bad input, as the Ruby class they stand for.
_PY_ERRORS: dict[type[BaseException], str] = {
    ZeroDivisionError: "ZeroDivisionError",
    OverflowError: "RangeError",
    KeyError: "KeyError",
    IndexError: "IndexError",
    TypeError: "TypeError",
    ValueError: "ArgumentError",
    AttributeError: "NoMethodError",
    re.error: "RegexpError",
    UnicodeError: "EncodingError",
}
_PY_ERROR_TYPES = tuple(_PY_ERRORS)

_STRING_MUTATORS = {
    "<<": "+", "concat": "+", "replace": "replace", "prepend": "prepend",
    "gsub!": "gsub", "sub!": "sub", "strip!": "strip", "lstrip!": "lstrip",
    "rstrip!": "rstrip", "chomp!": "chomp", "chop!": "chop", "upcase!": "upcase",
    "downcase!": "downcase", "capitalize!": "capitalize", "squeeze!": "squeeze",
    "tr!": "tr", "delete!": "delete", "swapcase!": "swapcase", "reverse!": "reverse",
    "insert": "insert", "force_encoding": "force_encoding",
}
_BANG_RETURNS_NIL = frozenset(n for n in _STRING_MUTATORS if n.endswith("!"))

_CONTAINERS = frozenset({
    "program", "body_statement", "block_body", "begin", "then", "else", "ensure", "do",
    "parenthesized_statements", "interpolation", "in",
})

_REFUSED_NODES = {
    "subshell": "backticks (`...` and %x)",
    "class": "class",
    "module": "module",
    "singleton_class": "class << self",
    "while": "while",
    "until": "until",
    "while_modifier": "while",
    "until_modifier": "until",
    "alias": "alias",
    "undef": "undef",
    "super": "super",
    "redo": "redo",
    "retry": "retry",
    "begin_block": "BEGIN",
    "end_block": "END",
    "case_match": "case/in (pattern matching)",
    "match_pattern": "pattern matching (=>)",
    "test_pattern": "pattern matching (in)",
    "class_variable": "class variables (@@)",
    "rational": "rational numbers",
    "complex": "complex numbers",
    "forward_argument": "argument forwarding (...)",
    "forward_parameter": "argument forwarding (...)",
}


class Interpreter:
    def __init__(
        self,
        *,
        project_dir: Path,
        env: Mapping[str, str],
        argv: list[str],
        has_plugin: bool,
        limits: Limits | None = None,
        cwd: Path | None = None,
        recorder: Recorder | None = None,
    ) -> None:
        self.limits = limits or Limits()
        self.project_dir = project_dir
        self.box_dirs: dict[Path, str] = {}  # folder of a box whose Vagrantfile runs -> box name
        # Every input from outside the Vagrantfile is a probe of the recorder (cache.py).
        self.recorder = recorder or Recorder()
        self._cwd = cwd or project_dir
        self.env: Mapping[str, str] = RecordingEnv(env, self.recorder)
        self.env_overlay: dict[str, str | None] = {}
        self._argv = argv
        self.has_plugin = has_plugin
        self.globals: dict[str, Any] = {}
        self.constants: dict[str, Any] = {}
        self.ivars: dict[str, Any] = {}
        self.methods: dict[str, UserMethod] = {}
        self.messages: list[str] = []
        self.warnings: list[str] = []
        self._warned: set[str] = set()
        self.loaded: set[Path] = set()
        self.files_loaded = 0
        self.builtin_constants: dict[str, Any] | None = None  # see host.builtin_constants
        self.configure_blocks: list[tuple[Proc, Node]] = []  # Vagrant.configure, in order
        self.inert = 0  # >0 while evaluating blocks whose config writes are only recorded
        self.steps = 0
        self.iterations = 0
        self.depth = 0
        self.deadline = time.monotonic() + self.limits.seconds
        self.main = objects.Main()
        self._handlers: dict[str, Callable[[Node, Scope], Any]] = {
            name[3:]: getattr(self, name) for name in dir(self) if name.startswith("ev_")
        }

    @property
    def cwd(self) -> Path:
        return Path(self.recorder.note("cwd", None, str(self._cwd)))

    @property
    def argv(self) -> list[str]:
        return list(self.recorder.note("argv", None, tuple(self._argv)))

    # -- entry points ----------------------------------------------------------------

    def run_file(self, path: Path, display: str, node: Node | None = None) -> None:
        """Evaluate a whole file (the Vagrantfile, or one it loads) at top level."""
        self.files_loaded += 1
        if self.files_loaded > self.limits.max_files:
            raise self.limit(node, "too many files loaded")
        try:
            text = host.read_bytes(self, path, display)
        except RubyError as exc:
            raise ConfigError(f"cannot read {display}: {exc.message}", file=display) from None
        program = parse(Source(path, text, display))
        frame = Frame("<main>")
        scope = Scope(None, frame)
        self.enter(node)
        try:
            self.eval_body(program, scope)
        except Return as ret:
            if ret.frame is not frame:
                raise
        finally:
            self.depth -= 1

    def call_configure_block(self, proc: Proc, args: list[Any]) -> None:
        """Run a deferred block (Vagrant.configure, define, provider) to completion."""
        try:
            self.call_block(proc, args)
        except Return:
            pass
        except Break:
            raise self.error_at(proc.body, "LocalJumpError", "break from proc-closure") from None

    # -- errors and bounds -----------------------------------------------------------

    def location(self, node: Node | None) -> dict[str, Any]:
        if node is None:
            return {}
        return {
            "file": node.source.display,
            "line": node.line,
            "source_line": node.source.line(node.line),
        }

    def unsupported(self, node: Node, what: str, why: str = "") -> UnsupportedConstruct:
        message = f"unsupported construct `{what}`"
        if why:
            message += f" ({why})"
        return UnsupportedConstruct(
            message,
            hint="vmctl reads Vagrantfiles without running Ruby; it evaluates the safe subset "
            "described in docs/vagrantfile.md",
            **self.location(node),
        )

    def limit(self, node: Node | None, what: str) -> LimitError:
        return LimitError(f"evaluation stopped: {what}", **self.location(node))

    def error_at(self, node: Node | None, cls: str, message: str) -> RubyError:
        err = RubyError(cls, message)
        if node is not None:
            err.location = (node.source.display, node.line, node.source.line(node.line))
        return err

    def warn(self, text: str, node: Node | None = None) -> None:
        if node is not None:
            text = f"{node.source.display}:{node.line}: {text}"
        if text not in self._warned and len(self.warnings) < self.limits.max_messages:
            self._warned.add(text)
            self.warnings.append(text)

    def message(self, text: str) -> None:
        if len(self.messages) < self.limits.max_messages:
            self.messages.append(text[:10_000])

    def tick(self, node: Node | None) -> None:
        """Count one loop turn or block call."""
        self.iterations += 1
        if self.iterations > self.limits.max_iterations:
            raise self.limit(node, f"more than {self.limits.max_iterations} loop iterations")

    def enter(self, node: Node | None) -> None:
        self.depth += 1
        if self.depth > self.limits.max_call_depth:
            self.depth -= 1
            raise self.limit(node, f"calls nested more than {self.limits.max_call_depth} deep")

    def check_string(self, value: str, node: Node | None = None) -> str:
        if len(value) > self.limits.max_string:
            raise self.limit(node, f"a string longer than {self.limits.max_string} characters")
        return value

    def check_size(self, n: int, node: Node | None = None) -> int:
        if n > self.limits.max_items:
            raise self.limit(node, f"a collection of more than {self.limits.max_items} elements")
        return n

    # -- evaluation ------------------------------------------------------------------

    def eval(self, node: Node, scope: Scope) -> Any:
        self.steps += 1
        if not self.steps & 1023:
            if self.steps > self.limits.max_steps:
                raise self.limit(node, f"more than {self.limits.max_steps} evaluation steps")
            if time.monotonic() > self.deadline:
                raise self.limit(node, f"took longer than {self.limits.seconds:g} s")
        handler = self._handlers.get(node.type)
        if handler is None:
            what = _REFUSED_NODES.get(node.type, node.type)
            raise self.unsupported(node, what)
        return handler(node, scope)

    def eval_body(self, node: Node | None, scope: Scope) -> Any:
        """A sequence of statements, with `rescue`/`else`/`ensure` clauses if present."""
        if node is None:
            return None
        if node.type not in _CONTAINERS:
            return self.eval(node, scope)  # an endless def's body is one expression
        kids = node.kids
        if any(k.type in ("rescue", "ensure") for k in kids):
            return self._eval_begin(node, scope)
        value = None
        for kid in kids:
            value = self.eval(kid, scope)
        return value

    def _eval_begin(self, node: Node, scope: Scope) -> Any:
        body = [k for k in node.kids if k.type not in ("rescue", "else", "ensure")]
        rescues = [k for k in node.kids if k.type == "rescue"]
        else_ = next((k for k in node.kids if k.type == "else"), None)
        ensure = next((k for k in node.kids if k.type == "ensure"), None)
        try:
            try:
                value = None
                for kid in body:
                    value = self.eval(kid, scope)
            except RubyError as err:
                for clause in rescues:
                    if self._rescues(clause, err, scope):
                        var = clause.field("variable")
                        if var is not None and var.kids:
                            exc = RException(err.cls, err.message)
                            self.assign(var.kids[0], exc, scope)
                        return self.eval_body(clause.field("body"), scope)
                raise
            if else_ is not None:
                value = self.eval_body(else_, scope)
            return value
        finally:
            if ensure is not None:
                self.eval_body(ensure, scope)

    def _rescues(self, clause: Node, err: RubyError, scope: Scope) -> bool:
        exceptions = clause.field("exceptions")
        if exceptions is None:
            return exception_is_a(err.cls, "StandardError")
        for kid in exceptions.kids:
            cls = self.eval(kid, scope)
            names = cls if isinstance(cls, list) else [cls]
            for c in names:
                if isinstance(c, objects.RClass) and exception_is_a(err.cls, c.name):
                    return True
        return False

    # statements containers
    def ev_program(self, node: Node, scope: Scope) -> Any:
        return self.eval_body(node, scope)

    ev_body_statement = ev_program
    ev_block_body = ev_program
    ev_then = ev_program
    ev_else = ev_program
    ev_begin = ev_program
    ev_ensure = ev_program
    ev_do = ev_program

    def ev_parenthesized_statements(self, node: Node, scope: Scope) -> Any:
        return self.eval_body(node, scope)

    def ev_empty_statement(self, node: Node, scope: Scope) -> Any:
        return None

    def ev_heredoc_body(self, node: Node, scope: Scope) -> Any:
        return None  # evaluated through its heredoc_beginning

    def ev_uninterpreted(self, node: Node, scope: Scope) -> Any:
        return None  # text after __END__

    # literals
    def ev_nil(self, node: Node, scope: Scope) -> Any:
        return None

    def ev_true(self, node: Node, scope: Scope) -> Any:
        return True

    def ev_false(self, node: Node, scope: Scope) -> Any:
        return False

    def ev_self(self, node: Node, scope: Scope) -> Any:
        return self.main

    def ev_integer(self, node: Node, scope: Scope) -> Any:
        text = node.text.replace("_", "").lower()
        try:
            if text.startswith("0x"):
                return int(text[2:], 16)
            if text.startswith("0b"):
                return int(text[2:], 2)
            if text.startswith(("0o", "0_")):
                return int(text[2:], 8)
            if text.startswith("0d"):
                return int(text[2:])
            if len(text) > 1 and text.startswith("0"):
                return int(text[1:], 8)
            if len(text) > 1000:
                raise self.limit(node, "an integer literal that long")
            return int(text)
        except ValueError:
            raise self.error_at(node, "SyntaxError", f"bad integer literal {text}") from None

    def ev_float(self, node: Node, scope: Scope) -> Any:
        try:
            return float(node.text.replace("_", ""))
        except ValueError:
            raise self.error_at(node, "SyntaxError", f"bad float literal {node.text}") from None

    def ev_character(self, node: Node, scope: Scope) -> Any:
        text = node.text[1:]
        return builtins.unescape(text) if text.startswith("\\") else text

    def ev_string(self, node: Node, scope: Scope) -> Any:
        opener = node.source.text[node.start : node.start + 3].decode("utf-8", "replace")
        raw = opener.startswith("'") or opener.startswith(("%q", "%w", "%i"))
        return self.check_string(self._string_parts(node.kids, raw, scope), node)

    ev_bare_string = ev_string

    def _string_parts(self, kids: list[Node], raw: bool, scope: Scope) -> str:
        parts: list[str] = []
        total = 0
        for kid in kids:
            if kid.type == "string_content":
                text = kid.text
                piece = builtins.unescape_single(text) if raw else text
            elif kid.type == "escape_sequence":
                piece = builtins.unescape(kid.text)
            elif kid.type == "interpolation":
                piece = self.to_s(self.eval_body(kid, scope), kid)
            else:
                piece = self.to_s(self.eval(kid, scope), kid)
            total += len(piece)
            if total > self.limits.max_string:
                raise self.limit(kid, f"a string longer than {self.limits.max_string} characters")
            parts.append(piece)
        return "".join(parts)

    def ev_chained_string(self, node: Node, scope: Scope) -> Any:
        return self.check_string("".join(self.eval(k, scope) for k in node.kids), node)

    def ev_interpolation(self, node: Node, scope: Scope) -> Any:
        return self.to_s(self.eval_body(node, scope), node)

    def ev_heredoc_beginning(self, node: Node, scope: Scope) -> Any:
        body = node.heredoc
        if body is None:
            return ""
        tag = node.text
        if tag.lstrip("<~-").startswith("`"):
            # <<`EOS` is a command heredoc: Ruby runs its body as a shell command.
            raise self.unsupported(node, _REFUSED_NODES["subshell"], "a command heredoc runs a host command")
        raw = "'" in tag
        squiggly = tag.startswith("<<~")
        segments: list[tuple[str, str]] = []
        for kid in body.kids:
            if kid.type == "heredoc_content":
                segments.append(("lit", kid.text))
            elif kid.type == "escape_sequence":
                segments.append(("esc", kid.text if raw else builtins.unescape(kid.text)))
            elif kid.type == "interpolation":
                segments.append(("val", self.to_s(self.eval_body(kid, scope), kid)))
        text = builtins.assemble_heredoc(segments, squiggly)
        return self.check_string(text, node)

    def ev_simple_symbol(self, node: Node, scope: Scope) -> Any:
        return Symbol(node.text[1:])

    def ev_hash_key_symbol(self, node: Node, scope: Scope) -> Any:
        return Symbol(node.text)

    def ev_delimited_symbol(self, node: Node, scope: Scope) -> Any:
        raw = node.text.startswith(":'")
        return Symbol(self._string_parts(node.kids, raw, scope))

    def ev_bare_symbol(self, node: Node, scope: Scope) -> Any:
        return Symbol(self._string_parts(node.kids, True, scope))

    def ev_regex(self, node: Node, scope: Scope) -> Any:
        text = node.text
        flags = text[text.rfind("/") + 1 :] if text.startswith("/") else ""
        if text.startswith("%r"):
            closer = text[-1]
            i = len(text) - 1
            while i > 0 and text[i].isalpha():
                i -= 1
            flags = text[i + 1 :] if text[i] == closer or not closer.isalpha() else ""
        parts = []
        for kid in node.kids:
            if kid.type == "interpolation":
                parts.append(self.to_s(self.eval_body(kid, scope), kid))
            else:
                parts.append(kid.text)
        return builtins.make_regexp(self, "".join(parts), flags, node)

    def ev_array(self, node: Node, scope: Scope) -> Any:
        out: list[Any] = []
        for kid in node.kids:
            if kid.type == "splat_argument":
                out.extend(builtins.splat(self.eval(kid.kids[0], scope)))
            elif kid.type == "pair":
                # [a: 1, b: 2] is an array holding one hash
                if out and isinstance(out[-1], dict) and kid is not node.kids[0]:
                    out[-1].update(self._pair(kid, scope))
                else:
                    out.append(self._pair(kid, scope))
            else:
                out.append(self.eval(kid, scope))
            self.check_size(len(out), node)
        return out

    ev_string_array = ev_array
    ev_symbol_array = ev_array

    def ev_hash(self, node: Node, scope: Scope) -> Any:
        out: dict[Any, Any] = {}
        for kid in node.kids:
            if kid.type == "pair":
                out.update(self._pair(kid, scope))
            elif kid.type == "hash_splat_argument":
                value = self.eval(kid.kids[0], scope)
                if value is not None:
                    if not isinstance(value, dict):
                        raise self.error_at(kid, "TypeError", f"no implicit conversion of {class_name(value)} into Hash")
                    out.update(value)
            self.check_size(len(out), node)
        return out

    def _pair(self, node: Node, scope: Scope) -> dict[Any, Any]:
        key_node = node.field("key")
        value_node = node.field("value")
        assert key_node is not None
        if key_node.type in ("string", "delimited_symbol") and node.source.text[
            key_node.end : key_node.end + 1
        ] == b":":
            key: Any = Symbol(self.to_s(self.eval(key_node, scope), key_node))
        else:
            key = self.eval(key_node, scope)
        if value_node is None:  # `{x:}` shorthand
            value = self.lookup_identifier(key.name if isinstance(key, Symbol) else str(key), node, scope)
        else:
            value = self.eval(value_node, scope)
        try:
            return {key: value}
        except TypeError:
            raise self.error_at(node, "TypeError", f"{class_name(key)} cannot be a hash key here") from None

    def ev_range(self, node: Node, scope: Scope) -> Any:
        begin = node.field("begin")
        end = node.field("end")
        return RRange(
            self.eval(begin, scope) if begin is not None else None,
            self.eval(end, scope) if end is not None else None,
            node.op == "...",
        )

    # variables and constants
    def ev_identifier(self, node: Node, scope: Scope) -> Any:
        return self.lookup_identifier(node.text, node, scope)

    def lookup_identifier(self, name: str, node: Node, scope: Scope) -> Any:
        found = scope.find(name)
        if found is not None:
            return found.vars[name]
        if name == "__FILE__":
            return str(node.source.path)
        if name == "__dir__":
            return str(node.source.path.parent)
        if name == "__LINE__":
            return node.line
        return self.call_function(name, node, scope, [], None)

    def ev_file(self, node: Node, scope: Scope) -> Any:
        return str(node.source.path)

    def ev_line(self, node: Node, scope: Scope) -> Any:
        return node.line

    def ev_encoding(self, node: Node, scope: Scope) -> Any:
        return "UTF-8"

    def ev_global_variable(self, node: Node, scope: Scope) -> Any:
        name = node.text
        if name in self.globals:
            return self.globals[name]
        return host.special_global(self, name, node)

    def ev_instance_variable(self, node: Node, scope: Scope) -> Any:
        return self.ivars.get(node.text)

    def ev_constant(self, node: Node, scope: Scope) -> Any:
        name = node.text
        if name in self.constants:
            return self.constants[name]
        return host.constant(self, name, node)

    def ev_scope_resolution(self, node: Node, scope: Scope) -> Any:
        name_node = node.field("name")
        scope_node = node.field("scope")
        assert name_node is not None
        if scope_node is None:
            return self.ev_constant(name_node, scope)
        owner = self.eval(scope_node, scope)
        return host.scoped_constant(self, owner, name_node.text, node)

    # assignment
    def ev_assignment(self, node: Node, scope: Scope) -> Any:
        left = node.field("left")
        right = node.field("right")
        assert left is not None and right is not None
        if left.type == "left_assignment_list":
            if right.type == "right_assignment_list":
                values = self._list_values(right.kids, scope)
            elif right.type == "splat_argument":
                values = builtins.splat(self.eval(right.kids[0], scope))
            else:
                value = self.eval(right, scope)
                values = value if isinstance(value, list) else [value]
            self._destructure(left.kids, values, scope)
            return values
        if right.type == "right_assignment_list":
            value = self._list_values(right.kids, scope)
        elif right.type == "splat_argument":
            value = builtins.splat(self.eval(right.kids[0], scope))
        else:
            value = self.eval(right, scope)
        self.assign(left, value, scope)
        return value

    def _list_values(self, kids: list[Node], scope: Scope) -> list[Any]:
        out: list[Any] = []
        for kid in kids:
            if kid.type == "splat_argument":
                out.extend(builtins.splat(self.eval(kid.kids[0], scope)))
            else:
                out.append(self.eval(kid, scope))
        return out

    def _destructure(self, targets: list[Node], values: list[Any], scope: Scope) -> None:
        rest = next((i for i, t in enumerate(targets) if t.type == "rest_assignment"), None)
        if rest is None:
            for i, target in enumerate(targets):
                self._assign_part(target, values[i] if i < len(values) else None, scope)
            return
        after = len(targets) - rest - 1
        for i in range(rest):
            self._assign_part(targets[i], values[i] if i < len(values) else None, scope)
        middle_end = max(rest, len(values) - after)
        if targets[rest].kids:
            self.assign(targets[rest].kids[0], list(values[rest:middle_end]), scope)
        for j in range(after):
            k = middle_end + j
            self._assign_part(targets[rest + 1 + j], values[k] if k < len(values) else None, scope)

    def _assign_part(self, target: Node, value: Any, scope: Scope) -> None:
        if target.type == "destructured_left_assignment":
            self._destructure(target.kids, value if isinstance(value, list) else [value], scope)
        else:
            self.assign(target, value, scope)

    def assign(self, target: Node, value: Any, scope: Scope) -> None:
        kind = target.type
        if kind == "identifier":
            scope.assign(target.text, value)
        elif kind == "global_variable":
            if target.text in host.READONLY_GLOBALS:
                raise self.unsupported(target, f"assigning {target.text}")
            if len(self.globals) > 100_000:
                raise self.limit(target, "too many global variables")
            self.globals[target.text] = value
        elif kind == "instance_variable":
            self.ivars[target.text] = value
        elif kind == "constant":
            self.constants[target.text] = value
        elif kind == "call":
            receiver = target.field("receiver")
            method = target.field("method")
            if receiver is None or method is None:
                raise self.unsupported(target, "assignment to " + target.text)
            recv = self.eval(receiver, scope)
            if target.op == "&." and recv is None:
                return
            self.send(recv, method.text + "=", [value], None, target)
        elif kind == "element_reference":
            obj = target.field("object")
            assert obj is not None
            recv = self.eval(obj, scope)
            args, _ = self.eval_args([k for k in target.kids if k is not obj], None, scope)
            self.send(recv, "[]=", [*args, value], None, target)
        elif kind == "splat_argument" or kind == "rest_assignment":
            if target.kids:
                self.assign(target.kids[0], value if isinstance(value, list) else [value], scope)
        else:
            raise self.unsupported(target, f"assignment to {kind}")

    def read_target(self, target: Node, scope: Scope) -> Any:
        """The current value of an assignment target (for `||=` and `+=`)."""
        kind = target.type
        if kind == "identifier":
            found = scope.find(target.text)
            return found.vars[target.text] if found else None
        if kind == "global_variable":
            return self.globals.get(target.text)
        if kind == "instance_variable":
            return self.ivars.get(target.text)
        if kind == "constant":
            return self.constants.get(target.text)
        return self.eval(target, scope)

    def ev_operator_assignment(self, node: Node, scope: Scope) -> Any:
        left = node.field("left")
        right = node.field("right")
        assert left is not None and right is not None
        op = (node.op or "=")[:-1]
        current = self.read_target(left, scope)
        if op == "||":
            if truthy(current):
                return current
            value = self.eval(right, scope)
        elif op == "&&":
            if not truthy(current):
                return current
            value = self.eval(right, scope)
        else:
            value = self.binary_op(current, op, self.eval(right, scope), node)
        self.assign(left, value, scope)
        return value

    # operators
    def ev_binary(self, node: Node, scope: Scope) -> Any:
        op = node.op or ""
        left_node = node.field("left")
        right_node = node.field("right")
        assert left_node is not None and right_node is not None
        left = self.eval(left_node, scope)
        if op in ("&&", "and"):
            return self.eval(right_node, scope) if truthy(left) else left
        if op in ("||", "or"):
            return left if truthy(left) else self.eval(right_node, scope)
        right = self.eval(right_node, scope)
        if op == "<<" and isinstance(left, str):
            value = self.binary_op(left, "+", right if isinstance(right, str) else self._chr(right, node), node)
            self._rebind(left_node, value, scope)
            return value
        if op == "=~" or op == "!~":
            result = self.send(left, "=~", [right], None, node)
            return result if op == "=~" else result is None
        return self.binary_op(left, op, right, node)

    def _chr(self, value: Any, node: Node) -> str:
        if isinstance(value, int) and not isinstance(value, bool) and 0 <= value < 0x110000:
            return chr(value)
        raise self.error_at(node, "TypeError", f"no implicit conversion of {class_name(value)} into String")

    def binary_op(self, left: Any, op: str, right: Any, node: Node) -> Any:
        if op == "!=":
            return not truthy(self.send(left, "==", [right], None, node))
        return self.send(left, op, [right], None, node)

    def ev_unary(self, node: Node, scope: Scope) -> Any:
        op = node.op or ""
        operand = node.field("operand")
        assert operand is not None
        if op == "defined?":
            return host.defined(self, operand, scope)
        value = self.eval(operand, scope)
        if op in ("!", "not"):
            return not truthy(value)
        if op == "-":
            return self.send(value, "-@", [], None, node)
        if op == "+":
            return self.send(value, "+@", [], None, node)
        if op == "~":
            return self.send(value, "~", [], None, node)
        raise self.unsupported(node, op)

    def ev_conditional(self, node: Node, scope: Scope) -> Any:
        cond = node.field("condition")
        assert cond is not None
        branch = node.field("consequence") if truthy(self.eval(cond, scope)) else node.field("alternative")
        return self.eval(branch, scope) if branch is not None else None

    def ev_if(self, node: Node, scope: Scope) -> Any:
        cond = node.field("condition")
        assert cond is not None
        test = truthy(self.eval(cond, scope))
        if node.type == "unless":
            test = not test
        branch = node.field("consequence") if test else node.field("alternative")
        return self.eval(branch, scope) if branch is not None else None

    ev_unless = ev_if
    ev_elsif = ev_if

    def ev_if_modifier(self, node: Node, scope: Scope) -> Any:
        cond = node.field("condition")
        body = node.field("body")
        assert cond is not None and body is not None
        test = truthy(self.eval(cond, scope))
        if node.type == "unless_modifier":
            test = not test
        return self.eval(body, scope) if test else None

    ev_unless_modifier = ev_if_modifier

    def ev_rescue_modifier(self, node: Node, scope: Scope) -> Any:
        body = node.field("body")
        handler = node.field("handler")
        assert body is not None and handler is not None
        try:
            return self.eval(body, scope)
        except RubyError as err:
            if exception_is_a(err.cls, "StandardError"):
                return self.eval(handler, scope)
            raise

    def ev_case(self, node: Node, scope: Scope) -> Any:
        value_node = node.field("value")
        has_value = value_node is not None
        value = self.eval(value_node, scope) if value_node is not None else None
        for clause in node.kids:
            if clause.type == "when":
                for pattern in clause.all("pattern"):
                    for kid in pattern.kids:
                        if kid.type == "splat_argument":
                            candidates = builtins.splat(self.eval(kid.kids[0], scope))
                        else:
                            candidates = [self.eval(kid, scope)]
                        for candidate in candidates:
                            if has_value:
                                hit = truthy(self.send(candidate, "===", [value], None, kid))
                            else:
                                hit = truthy(candidate)
                            if hit:
                                return self.eval_body(clause.field("body"), scope)
            elif clause.type == "else":
                return self.eval_body(clause, scope)
        return None

    def ev_for(self, node: Node, scope: Scope) -> Any:
        pattern = node.field("pattern")
        value_node = node.field("value")
        body = node.field("body")
        assert pattern is not None and value_node is not None
        collection = self.eval_body(value_node, scope)
        items = builtins.iterate(self, collection, node)
        scope.loops += 1
        try:
            for item in items:
                self.tick(node)
                if pattern.type == "left_assignment_list":
                    self._destructure(pattern.kids, item if isinstance(item, list) else [item], scope)
                else:
                    self.assign(pattern, item, scope)
                try:
                    self.eval_body(body, scope)
                except Next:
                    continue
                except Break as brk:
                    if brk.tag == ("loop", id(scope)):
                        return brk.value
                    raise
        finally:
            scope.loops -= 1
        return collection

    def ev_in(self, node: Node, scope: Scope) -> Any:
        return self.eval_body(node, scope)

    def _jump_value(self, node: Node, scope: Scope) -> Any:
        if not node.kids:
            return None
        args = node.kids[0]
        if args.type == "argument_list":
            values, _ = self.eval_args(args.kids, None, scope)
            return values[0] if len(values) == 1 else (values or None)
        return self.eval(args, scope)

    def ev_next(self, node: Node, scope: Scope) -> Any:
        raise Next(self._jump_value(node, scope))

    def ev_break(self, node: Node, scope: Scope) -> Any:
        value = self._jump_value(node, scope)
        s: Scope | None = scope
        while s is not None:
            if s.loops:
                raise Break(("loop", id(s)), value)
            if s.proc is not None:
                raise Break(s.proc, value)
            s = s.parent
        raise self.error_at(node, "LocalJumpError", "break outside a loop or block")

    def ev_return(self, node: Node, scope: Scope) -> Any:
        raise Return(scope.frame, self._jump_value(node, scope))

    # definitions and blocks
    def ev_method(self, node: Node, scope: Scope) -> Any:
        name_node = node.field("name")
        assert name_node is not None
        name = name_node.text
        if len(self.methods) > 10_000:
            raise self.limit(node, "too many methods defined")
        body = node.field("body")
        self.methods[name] = UserMethod(name, node.field("parameters"), body)
        return Symbol(name)

    def ev_singleton_method(self, node: Node, scope: Scope) -> Any:
        obj = node.field("object")
        if obj is None or obj.type != "self":
            raise self.unsupported(node, "def on an object")
        return self.ev_method(node, scope)

    def ev_lambda(self, node: Node, scope: Scope) -> Any:
        block = node.field("body")
        params = node.field("parameters")
        body = block.field("body") if block is not None else None
        return Proc(params, body, scope, scope.frame, is_lambda=True)

    def make_block(self, node: Node, scope: Scope) -> Proc:
        return Proc(node.field("parameters"), node.field("body"), scope, scope.frame)

    def ev_yield(self, node: Node, scope: Scope) -> Any:
        block = scope.frame.block
        if block is None:
            raise self.error_at(node, "LocalJumpError", "no block given (yield)")
        args, _ = self.eval_args(node.kids[0].kids if node.kids else [], None, scope)
        return self.call_block(block, args, node)

    # calls
    def ev_call(self, node: Node, scope: Scope) -> Any:
        method = node.field("method")
        receiver = node.field("receiver")
        args_node = node.field("arguments")
        block_node = node.field("block")
        name = method.text if method is not None else "call"
        arg_kids = args_node.kids if args_node is not None else []
        if receiver is None or receiver.type == "self":
            return self.call_function(name, node, scope, arg_kids, block_node)
        recv = self.eval(receiver, scope)
        if node.op == "&." and recv is None:
            return None
        host.check_refused_method(self, recv, name, node)
        args, block = self.eval_args(arg_kids, block_node, scope)
        try:
            if isinstance(recv, str) and name in _STRING_MUTATORS:
                return self._mutate_string(recv, name, args, block, receiver, node, scope)
            return self.send(recv, name, args, block, node)
        except Break as brk:
            if block is not None and brk.tag is block and block_node is not None:
                return brk.value
            raise

    def _mutate_string(
        self, recv: str, name: str, args: list[Any], block: Proc | None, receiver: Node,
        node: Node, scope: Scope,
    ) -> Any:
        base = _STRING_MUTATORS[name]
        if base == "+" and args and isinstance(args[0], int) and not isinstance(args[0], bool):
            args = [self._chr(args[0], node)]
        value = self.send(recv, base, args, block, node)
        self._rebind(receiver, value, scope)
        if name in _BANG_RETURNS_NIL and value == recv:
            return None
        return value

    def _rebind(self, target: Node, value: Any, scope: Scope) -> None:
        """Ruby mutates strings in place; here the variable holding it gets the new one."""
        if target.type in ("identifier", "global_variable", "instance_variable", "element_reference"):
            if target.type == "identifier" and scope.find(target.text) is None:
                return
            self.assign(target, value, scope)

    def ev_element_reference(self, node: Node, scope: Scope) -> Any:
        obj = node.field("object")
        assert obj is not None
        recv = self.eval(obj, scope)
        host.check_refused_method(self, recv, "[]", node)
        args, _ = self.eval_args([k for k in node.kids if k is not obj], None, scope)
        return self.send(recv, "[]", args, None, node)

    def eval_args(
        self, kids: list[Node], block_node: Node | None, scope: Scope
    ) -> tuple[list[Any], Proc | None]:
        """Arguments as Ruby 2 passes them: keyword pairs gathered into a trailing Hash."""
        args: list[Any] = []
        kwargs: dict[Any, Any] | None = None
        block: Proc | None = None
        for kid in kids:
            kind = kid.type
            if kind == "pair":
                kwargs = kwargs if kwargs is not None else {}
                kwargs.update(self._pair(kid, scope))
            elif kind == "hash_splat_argument":
                value = self.eval(kid.kids[0], scope) if kid.kids else None
                kwargs = kwargs if kwargs is not None else {}
                if isinstance(value, dict):
                    kwargs.update(value)
            elif kind == "splat_argument":
                args.extend(builtins.splat(self.eval(kid.kids[0], scope)) if kid.kids else [])
            elif kind == "block_argument":
                value = self.eval(kid.kids[0], scope) if kid.kids else scope.frame.block
                block = self.to_proc(value, kid)
            elif kind == "heredoc_body":
                continue
            else:
                args.append(self.eval(kid, scope))
            if len(args) > self.limits.max_items:
                raise self.limit(kid, "too many arguments")
        if kwargs is not None:
            args.append(kwargs)
        if block_node is not None:
            block = self.make_block(block_node, scope)
        return args, block

    def to_proc(self, value: Any, node: Node) -> Proc | None:
        if value is None or isinstance(value, Proc):
            return value
        if isinstance(value, Symbol):
            name = value.name

            def call_symbol(args: list[Any], block: Proc | None, where: Node | None) -> Any:
                if not args:
                    raise self.error_at(where, "ArgumentError", "no receiver given")
                return self.send(args[0], name, list(args[1:]), block, where or node)

            return Proc(None, None, None, None, is_lambda=False, native=call_symbol)
        if isinstance(value, objects.MethodRef):
            return value.to_proc(self)
        raise self.error_at(node, "TypeError", f"wrong argument type {class_name(value)} (expected Proc)")

    def call_function(
        self, name: str, node: Node, scope: Scope, arg_kids: list[Node], block_node: Node | None
    ) -> Any:
        """A call without a receiver: a `def` helper, else a Kernel function."""
        host.check_refused_function(self, name, node)
        if name == "eval":
            return host.kernel_eval(self, node, scope, arg_kids)
        if name in ("block_given?", "iterator?"):
            return scope.frame.block is not None
        if name == "binding" or name == "local_variables":
            raise self.unsupported(node, name)
        args, block = self.eval_args(arg_kids, block_node, scope)
        try:
            user = self.methods.get(name)
            if user is not None:
                return self.invoke(user, args, block, node)
            return host.call_kernel(self, name, args, block, node, scope)
        except Break as brk:
            if block is not None and brk.tag is block and block_node is not None:
                return brk.value
            raise

    def send(self, recv: Any, name: str, args: list[Any], block: Proc | None, node: Node | None) -> Any:
        try:
            return builtins.dispatch(self, recv, name, args, block, node)
        except RubyError as err:
            if err.location is None and node is not None:
                err.location = (node.source.display, node.line, node.source.line(node.line))
            raise
        except RecursionError:
            raise
        except _PY_ERROR_TYPES as exc:
            cls = next((c for t, c in _PY_ERRORS.items() if isinstance(exc, t)), "StandardError")
            message = str(exc) or cls
            if isinstance(exc, KeyError):
                message = f"key not found: {exc}"
            raise self.error_at(node, cls, f"{name}: {message}") from None

    def invoke(self, method: UserMethod, args: list[Any], block: Proc | None, node: Node | None) -> Any:
        frame = Frame(method.name, block)
        scope = Scope(None, frame)
        self.enter(node)
        try:
            self.bind_params(method.params, args, block, scope, strict=True, node=node)
            return self.eval_body(method.body, scope) if method.body is not None else None
        except Return as ret:
            if ret.frame is frame:
                return ret.value
            raise
        finally:
            self.depth -= 1

    def call_block(self, proc: Proc, args: list[Any], node: Node | None = None) -> Any:
        self.tick(node)
        if proc.native is not None:
            return proc.native(args, None, node)
        frame = proc.frame
        if proc.is_lambda:
            frame = Frame("<lambda>", proc.frame.block if proc.frame else None)
        scope = Scope(proc.scope, frame, proc)
        self.enter(node)
        try:
            self.bind_params(proc.params, args, None, scope, strict=False, node=node, proc=proc)
            return self.eval_body(proc.body, scope)
        except Next as nxt:
            return nxt.value
        except Return as ret:
            if proc.is_lambda and ret.frame is frame:
                return ret.value
            raise
        finally:
            self.depth -= 1

    def bind_params(
        self, params: Node | None, args: list[Any], block: Proc | None, scope: Scope, *,
        strict: bool, node: Node | None, proc: Proc | None = None,
    ) -> None:
        kids = [k for k in params.kids if k.type != "identifier" or k not in params.all("locals")] if params else []
        for local in params.all("locals") if params else []:
            scope.vars[local.text] = None
        positional = [k for k in kids if k.type in ("identifier", "optional_parameter", "destructured_parameter")]
        splat = next((k for k in kids if k.type == "splat_parameter"), None)
        keywords = [k for k in kids if k.type == "keyword_parameter"]
        kwsplat = next((k for k in kids if k.type == "hash_splat_parameter"), None)
        block_param = next((k for k in kids if k.type == "block_parameter"), None)
        args = list(args)
        if (
            not strict and len(args) == 1 and isinstance(args[0], list)
            and (len(positional) + (1 if splat else 0) > 1 or (params is not None and params.text.rstrip("| ").endswith(",")))
        ):
            args = list(args[0])
        kwargs: dict[Any, Any] = {}
        if (keywords or kwsplat) and args and isinstance(args[-1], dict) and all(
            isinstance(k, Symbol) for k in args[-1]
        ):
            kwargs = dict(args.pop())
        required = [k for k in positional if k.type != "optional_parameter"]
        optional = [k for k in positional if k.type == "optional_parameter"]
        if strict and (len(args) < len(required) or (splat is None and len(args) > len(positional))):
            expected = str(len(required)) if not optional and splat is None else (
                f"{len(required)}+" if splat is not None else f"{len(required)}..{len(positional)}"
            )
            raise self.error_at(
                node, "ArgumentError",
                f"wrong number of arguments (given {len(args)}, expected {expected})",
            )
        # required parameters after the splat take from the end
        splat_index = kids.index(splat) if splat is not None else len(kids)
        before = [k for k in positional if kids.index(k) < splat_index]
        after = [k for k in positional if kids.index(k) > splat_index]
        n_opt_fill = max(0, len(args) - len(required))
        values_before: list[Any] = []
        i = 0
        for param in before:
            if param.type == "optional_parameter":
                if n_opt_fill > 0 and i < len(args) - len(after):
                    values_before.append((param, args[i], True))
                    n_opt_fill -= 1
                    i += 1
                else:
                    values_before.append((param, None, False))
            else:
                values_before.append((param, args[i] if i < len(args) else None, True))
                i += 1
        rest_end = max(i, len(args) - len(after))
        rest = args[i:rest_end]
        values_after = [
            (param, args[rest_end + j] if rest_end + j < len(args) else None, True)
            for j, param in enumerate(after)
        ]
        for param, value, given in values_before + values_after:
            self._bind_one(param, value, given, scope)
        if splat is not None:
            name = splat.field("name")
            if name is not None:
                scope.vars[name.text] = rest
        for kw in keywords:
            name_node = kw.field("name")
            assert name_node is not None
            key = Symbol(name_node.text)
            if key in kwargs:
                scope.vars[name_node.text] = kwargs.pop(key)
            else:
                default = kw.field("value")
                if default is None:
                    if strict:
                        raise self.error_at(node, "ArgumentError", f"missing keyword: :{name_node.text}")
                    scope.vars[name_node.text] = None
                else:
                    scope.vars[name_node.text] = self.eval(default, scope)
        if kwsplat is not None:
            name = kwsplat.field("name")
            if name is not None:
                scope.vars[name.text] = kwargs
        elif kwargs and strict:
            raise self.error_at(node, "ArgumentError", f"unknown keyword: {inspect(next(iter(kwargs)))}")
        if block_param is not None:
            name = block_param.field("name")
            if name is not None:
                scope.vars[name.text] = block if proc is None else None

    def _bind_one(self, param: Node, value: Any, given: bool, scope: Scope) -> None:
        if param.type == "identifier":
            scope.vars[param.text] = value
        elif param.type == "optional_parameter":
            name = param.field("name")
            default = param.field("value")
            assert name is not None
            scope.vars[name.text] = value if given else (self.eval(default, scope) if default else None)
        elif param.type == "destructured_parameter":
            self.bind_params(param, value if isinstance(value, list) else [value], None, scope,
                             strict=False, node=param)

    # helpers for builtins
    def to_s(self, value: Any, node: Node | None = None) -> str:
        if isinstance(value, str):
            return value
        if isinstance(value, objects.RObject):
            result = self.send(value, "to_s", [], None, node)
            return result if isinstance(result, str) else inspect(result)
        return self.check_string(builtins.to_s(value), node)

    def ruby_truthy(self, value: Any) -> bool:
        return truthy(value)

    def abort(self, message: str) -> Abort:
        return Abort(message)
