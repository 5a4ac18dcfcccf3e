"""Ruby values as the evaluator represents them, and the errors Ruby code can raise.

    nil -> None, true/false -> bool, Integer -> int, Float -> float, String -> str,
    Symbol -> Symbol, Array -> list, Hash -> dict (insertion-ordered, as in Ruby),
    Range -> RRange, Proc/lambda -> Proc, Regexp -> RRegexp, exceptions -> RException.

Python strings are immutable while Ruby's are not: the few mutating String methods
(`<<`, `gsub!`, ...) rebind the variable they were called on instead (see interpreter).
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from typing import Any

from vmctl.errors import ConfigError


class Symbol:
    """An interned Ruby symbol; distinct from the String of the same name."""

    __slots__ = ("name",)
    _table: dict[str, Symbol] = {}

    def __new__(cls, name: str) -> Symbol:
        sym = cls._table.get(name)
        if sym is None:
            sym = object.__new__(cls)
            sym.name = name
            if len(cls._table) < 100_000:  # bounded: fuzzed input must not grow it forever
                cls._table[name] = sym
        return sym

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Symbol) and other.name == self.name

    def __hash__(self) -> int:
        return hash(("Symbol", self.name))

    def __repr__(self) -> str:
        return f":{self.name}"


@dataclass(eq=False)
class RRange:
    begin: Any
    end: Any
    exclusive: bool = False

    def __eq__(self, other: object) -> bool:
        return (
            isinstance(other, RRange)
            and rb_eq(self.begin, other.begin)
            and rb_eq(self.end, other.end)
            and self.exclusive == other.exclusive
        )

    def __hash__(self) -> int:
        return hash(("Range", self.begin, self.end, self.exclusive))


@dataclass(eq=False)
class RRegexp:
    source: str
    flags: str
    compiled: re.Pattern[str]


@dataclass(eq=False)
class RMatch:
    match: re.Match[str]


@dataclass(eq=False)
class RException:
    cls: str
    message: str


@dataclass(eq=False)
class Proc:
    """A block, proc or lambda: code plus the scope it closes over."""

    params: Any  # syntax.Node or None
    body: Any  # syntax.Node or None
    scope: Any  # interpreter.Scope
    frame: Any  # the method invocation it was created in (for `return`)
    is_lambda: bool = False
    native: Any = None  # a Python callable standing in for `&:sym`


@dataclass(eq=False)
class Enumerator:
    """What `each_with_index`, `map`, ... return without a block: enough for `.with_index`."""

    receiver: Any
    method: str
    args: list[Any] = field(default_factory=list)


class RubyError(Exception):
    """A Ruby-level exception: rescuable by `rescue`, else a ConfigError at its line."""

    def __init__(self, cls: str, message: str) -> None:
        super().__init__(message)
        self.cls = cls
        self.message = message
        self.location: tuple[str, int, str] | None = None  # file, line, source line


class Abort(Exception):
    """`abort`, `exit` and uncaught `raise`: stops evaluation (not rescuable by `rescue => e`)."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class LimitError(ConfigError):
    """An evaluation bound was hit (time, steps, depth, size): never rescued, never a warning."""


# Ruby's exception hierarchy, as far as `rescue` needs it.
_EXC_PARENTS = {
    "Exception": None,
    "ScriptError": "Exception",
    "LoadError": "ScriptError",
    "NotImplementedError": "ScriptError",
    "StandardError": "Exception",
    "RuntimeError": "StandardError",
    "ArgumentError": "StandardError",
    "TypeError": "StandardError",
    "NameError": "StandardError",
    "NoMethodError": "NameError",
    "KeyError": "IndexError",
    "IndexError": "StandardError",
    "StopIteration": "IndexError",
    "RangeError": "StandardError",
    "FloatDomainError": "RangeError",
    "ZeroDivisionError": "StandardError",
    "IOError": "StandardError",
    "SystemCallError": "StandardError",
    "Errno::ENOENT": "SystemCallError",
    "Errno::EACCES": "SystemCallError",
    "Errno::EISDIR": "SystemCallError",
    "RegexpError": "StandardError",
    "FrozenError": "RuntimeError",
    "LocalJumpError": "StandardError",
    "Psych::SyntaxError": "StandardError",
    "JSON::ParserError": "StandardError",
    "EncodingError": "StandardError",
}
EXCEPTION_CLASSES = frozenset(_EXC_PARENTS)


def exception_is_a(cls: str, ancestor: str) -> bool:
    seen = 0
    current: str | None = cls
    while current is not None and seen < 20:
        if current == ancestor:
            return True
        current = _EXC_PARENTS.get(current, "StandardError" if current != "StandardError" else None)
        seen += 1
    return False


def truthy(value: Any) -> bool:
    return value is not None and value is not False


def rb_eq(a: Any, b: Any, _depth: int = 0) -> bool:
    """Ruby's `==`: true is not 1, "a" is not :a, 1 == 1.0."""
    if _depth > 100:
        raise RubyError("SystemStackError", "stack level too deep")
    if a is b:
        return True
    if isinstance(a, bool) or isinstance(b, bool) or a is None or b is None:
        return False
    if isinstance(a, int | float) and isinstance(b, int | float):
        return a == b
    if type(a) is not type(b):
        return False
    if isinstance(a, list):
        return len(a) == len(b) and all(rb_eq(x, y, _depth + 1) for x, y in zip(a, b, strict=True))
    if isinstance(a, dict):
        if len(a) != len(b):
            return False
        return all(k in b and rb_eq(v, b[k], _depth + 1) for k, v in a.items())
    if isinstance(a, str | Symbol | RRange):
        return bool(a == b)
    return False


def class_name(value: Any) -> str:
    if value is None:
        return "NilClass"
    if value is True:
        return "TrueClass"
    if value is False:
        return "FalseClass"
    name = _CLASS_NAMES.get(type(value))
    if name:
        return name
    return getattr(value, "ruby_class", type(value).__name__)


_CLASS_NAMES = {
    int: "Integer",
    float: "Float",
    str: "String",
    Symbol: "Symbol",
    list: "Array",
    dict: "Hash",
    RRange: "Range",
    Proc: "Proc",
    RRegexp: "Regexp",
    RMatch: "MatchData",
    Enumerator: "Enumerator",
}


def format_float(value: float) -> str:
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "Infinity" if value > 0 else "-Infinity"
    if value == int(value) and abs(value) < 1e16:
        return f"{value:.1f}"
    text = repr(value)
    if "e" in text:
        mantissa, exp = text.split("e")
        if "." not in mantissa:
            mantissa += ".0"
        sign = "-" if exp.startswith("-") else "+"
        text = f"{mantissa}e{sign}{exp.lstrip('+-').zfill(2)}"
    return text


def to_s(value: Any, _depth: int = 0) -> str:
    """Ruby's `to_s` (what interpolation shows)."""
    if isinstance(value, str):
        return value
    if value is None:
        return ""
    if isinstance(value, Symbol):
        return value.name
    if isinstance(value, list | dict | RRange) or value is True or value is False:
        return inspect(value, _depth)
    if isinstance(value, float):
        return format_float(value)
    if isinstance(value, int):
        return str(value)
    if isinstance(value, RException):
        return value.message
    if isinstance(value, RRegexp):
        return f"(?{value.flags}-mix:{value.source})" if value.flags else f"(?-mix:{value.source})"
    text = getattr(value, "ruby_to_s", None)
    if callable(text):
        return str(text())
    return f"#<{class_name(value)}>"


_ESCAPES = {"\n": "\\n", "\t": "\\t", "\r": "\\r", "\x1b": "\\e", '"': '\\"', "\\": "\\\\"}


def inspect(value: Any, _depth: int = 0) -> str:
    """Ruby's `inspect` (what `p` prints and arrays show)."""
    if _depth > 50:
        return "[...]"
    if value is None:
        return "nil"
    if value is True:
        return "true"
    if value is False:
        return "false"
    if isinstance(value, str):
        body = "".join(_ESCAPES.get(c, c) for c in value)
        return f'"{body}"'
    if isinstance(value, Symbol):
        if re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*[?!=]?", value.name):
            return f":{value.name}"
        return f":{inspect(value.name)}"
    if isinstance(value, list):
        return "[" + ", ".join(inspect(v, _depth + 1) for v in value) + "]"
    if isinstance(value, dict):
        parts = []
        for k, v in value.items():
            parts.append(f"{inspect(k, _depth + 1)}=>{inspect(v, _depth + 1)}")
        return "{" + ", ".join(parts) + "}"
    if isinstance(value, RRange):
        dots = "..." if value.exclusive else ".."
        begin = "" if value.begin is None else inspect(value.begin, _depth + 1)
        end = "" if value.end is None else inspect(value.end, _depth + 1)
        return f"{begin}{dots}{end}"
    if isinstance(value, RRegexp):
        return f"/{value.source}/{value.flags}"
    if isinstance(value, RException):
        return f"#<{value.cls}: {value.message}>"
    return to_s(value, _depth)


def to_json_value(value: Any, _depth: int = 0) -> Any:
    """A Ruby value as plain JSON data (symbols become strings)."""
    if _depth > 50:
        return None
    if value is None or isinstance(value, bool | int | str):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else format_float(value)
    if isinstance(value, Symbol):
        return value.name
    if isinstance(value, list | tuple):
        return [to_json_value(v, _depth + 1) for v in value]
    if isinstance(value, dict):
        return {to_s(k): to_json_value(v, _depth + 1) for k, v in value.items()}
    return inspect(value)
