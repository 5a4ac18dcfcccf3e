"""Methods of Ruby's core values: String, Symbol, Integer, Float, Array, Hash, Range, nil, ...

Every method is `fn(ip, recv, args, block, node)`, registered by name in the table of its
class. Anything that builds a string or a collection checks the size bounds first, so
`"x" * 10**12` is an error, not an out-of-memory.
"""

from __future__ import annotations

import functools
import math
import re
import shlex
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from vmctl.vagrantfile.values import (
    Enumerator,
    Proc,
    RException,
    RMatch,
    RRange,
    RRegexp,
    RubyError,
    Symbol,
    class_name,
    format_float,
    inspect,
    rb_eq,
    to_s,
    truthy,
)

if TYPE_CHECKING:
    from vmctl.vagrantfile.interpreter import Interpreter
    from vmctl.vagrantfile.syntax import Node

__all__ = ["dispatch", "to_s"]

Fn = Callable[["Interpreter", Any, list[Any], "Proc | None", "Node | None"], Any]

STRING: dict[str, Fn] = {}
SYMBOL: dict[str, Fn] = {}
NUMBER: dict[str, Fn] = {}
INTEGER: dict[str, Fn] = {}
FLOAT: dict[str, Fn] = {}
ARRAY: dict[str, Fn] = {}
HASH: dict[str, Fn] = {}
RANGE: dict[str, Fn] = {}
NIL: dict[str, Fn] = {}
BOOL: dict[str, Fn] = {}
PROC: dict[str, Fn] = {}
REGEXP: dict[str, Fn] = {}
MATCH: dict[str, Fn] = {}
EXCEPTION: dict[str, Fn] = {}
ENUM: dict[str, Fn] = {}  # Enumerable, shared by Array, Hash, Range and Enumerator
OBJECT: dict[str, Fn] = {}

MAX_INT_BITS = 4096
MAX_REGEX_SUBJECT = 100_000


def _m(*tables_and_names: Any) -> Callable[[Fn], Fn]:
    tables = [t for t in tables_and_names if isinstance(t, dict)]
    names = [n for n in tables_and_names if isinstance(n, str)]

    def register(fn: Fn) -> Fn:
        for table in tables:
            for name in names:
                table[name] = fn
        return fn

    return register


def err(cls: str, message: str) -> RubyError:
    return RubyError(cls, message)


def describe(value: Any) -> str:
    if value is None:
        return "nil"
    if value is True or value is False:
        return "true" if value else "false"
    name = getattr(value, "ruby_describe", None)
    if isinstance(name, str):
        return name
    return f"an instance of {class_name(value)}"


def dispatch(ip: Interpreter, recv: Any, name: str, args: list[Any], block: Proc | None, node: Node | None) -> Any:
    rb_send = getattr(recv, "rb_send", None)
    if rb_send is not None:
        return rb_send(ip, name, args, block, node)
    table = _TABLES.get(type(recv))
    if table is None:
        table = next((t for cls, t in _TABLES.items() if isinstance(recv, cls)), None)
    fn = table.get(name) if table is not None else None
    if fn is None:
        fn = OBJECT.get(name)
    if fn is None:
        raise err("NoMethodError", f"undefined method `{name}' for {describe(recv)}")
    return fn(ip, recv, args, block, node)


def arity(args: list[Any], low: int, high: int | None = None) -> None:
    high = low if high is None else high
    if not (low <= len(args) <= high):
        expected = str(low) if low == high else f"{low}..{high}"
        raise err("ArgumentError", f"wrong number of arguments (given {len(args)}, expected {expected})")


def need_int(value: Any, what: str = "Integer") -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        if isinstance(value, float) and math.isfinite(value):
            return int(value)
        raise err("TypeError", f"no implicit conversion of {class_name(value)} into {what}")
    return value


def need_str(value: Any) -> str:
    if isinstance(value, str):
        return value
    raise err("TypeError", f"no implicit conversion of {class_name(value)} into String")


def check_int(value: int) -> int:
    if value.bit_length() > MAX_INT_BITS:
        raise err("RangeError", f"integer too large (more than {MAX_INT_BITS} bits)")
    return value


def call(ip: Interpreter, block: Proc | None, *args: Any, node: Node | None = None) -> Any:
    if block is None:
        raise err("LocalJumpError", "no block given (yield)")
    return ip.call_block(block, list(args), node)


def splat(value: Any) -> list[Any]:
    if value is None:
        return []
    if isinstance(value, list):
        return list(value)
    if isinstance(value, dict):
        return [[k, v] for k, v in value.items()]
    if isinstance(value, RRange):
        return _range_list(None, value)
    return [value]


# -- string literal helpers (used by the interpreter) -------------------------------------

_SIMPLE_ESCAPES = {
    "n": "\n", "t": "\t", "s": " ", "r": "\r", "0": "\0", "e": "\x1b", "a": "\a",
    "b": "\b", "f": "\f", "v": "\v",
}


def unescape(text: str) -> str:
    """A double-quoted escape sequence (`\\n`, `\\u00e9`, `\\x41`, `\\101`, ...)."""
    if not text.startswith("\\") or len(text) < 2:
        return text
    body = text[1:]
    first = body[0]
    if first == "\n":
        return ""
    if first in _SIMPLE_ESCAPES and len(body) == 1:
        return _SIMPLE_ESCAPES[first]
    try:
        if first == "u":
            digits = body[1:].strip("{}")
            return "".join(chr(int(d, 16)) for d in digits.split())
        if first == "x":
            return chr(int(body[1:], 16))
        if first.isdigit():
            return chr(int(body, 8))
    except (ValueError, OverflowError):
        return body
    return body


def unescape_single(text: str) -> str:
    return re.sub(r"\\([\\'])", r"\1", text)


def assemble_heredoc(segments: list[tuple[str, str]], squiggly: bool) -> str:
    """Join a heredoc's pieces: drop the opening newline and the closing line's indent,
    and for `<<~` remove the common indentation of the literal lines."""
    segs = [list(s) for s in segments]
    if segs and segs[0][0] == "lit" and segs[0][1].startswith("\n"):
        segs[0][1] = segs[0][1][1:]
    if segs and segs[-1][0] == "lit":
        text = segs[-1][1]
        cut = text.rfind("\n")
        tail = text[cut + 1 :]
        if tail.strip(" \t") == "":
            segs[-1][1] = text[: cut + 1]
    if squiggly:
        indent = _heredoc_indent(segs)
        if indent:
            at_line_start = True
            for seg in segs:
                if seg[0] != "lit":
                    at_line_start = False
                    continue
                lines = seg[1].split("\n")
                for i, line in enumerate(lines):
                    if i > 0 or at_line_start:
                        strip = 0
                        while strip < indent and strip < len(line) and line[strip] in " \t":
                            strip += 1
                        lines[i] = line[strip:]
                seg[1] = "\n".join(lines)
                at_line_start = seg[1].endswith("\n") or (at_line_start and seg[1] == "")
    return "".join(s[1] for s in segs)


def _heredoc_indent(segs: list[list[str]]) -> int:
    best: int | None = None
    at_line_start = True
    current: int | None = 0  # indentation counted so far on this line, None once content seen
    for kind, text in segs:
        if kind != "lit":
            if current is not None and at_line_start:
                best = current if best is None else min(best, current)
            current = None
            at_line_start = False
            continue
        for ch in text:
            if ch == "\n":
                current = 0
                at_line_start = True
            elif current is not None and ch in " \t":
                current += 1
            elif current is not None:
                best = current if best is None else min(best, current)
                current = None
                at_line_start = False
    return best or 0


# -- regular expressions ----------------------------------------------------------------

_POSIX = {
    "[:alpha:]": "a-zA-Z", "[:digit:]": "0-9", "[:alnum:]": "a-zA-Z0-9", "[:space:]": r"\s",
    "[:upper:]": "A-Z", "[:lower:]": "a-z", "[:xdigit:]": "0-9a-fA-F", "[:word:]": r"\w",
    "[:punct:]": r"!-/:-@\[-`{-~", "[:blank:]": r" \t",
}


def ruby_to_python_regex(source: str) -> str:
    out = re.sub(r"\(\?<(?![=!])", "(?P<", source)
    out = out.replace(r"\h", "[0-9a-fA-F]").replace(r"\z", r"\Z")
    for posix, py in _POSIX.items():
        out = out.replace(posix, py)
    return out


def make_regexp(ip: Interpreter, source: str, flags: str, node: Node | None) -> RRegexp:
    if len(source) > 10_000:
        raise ip.limit(node, "a regular expression that long")
    py_flags = re.MULTILINE  # Ruby's ^ and $ always match at line boundaries
    if "i" in flags:
        py_flags |= re.IGNORECASE
    if "m" in flags:
        py_flags |= re.DOTALL
    if "x" in flags:
        py_flags |= re.VERBOSE
    pattern = ruby_to_python_regex(source)
    try:
        compiled = re.compile(pattern, py_flags)
        parsed = re._parser.parse(pattern, py_flags)  # type: ignore[attr-defined]
    except (re.error, ValueError, OverflowError, RecursionError) as exc:
        raise ip.error_at(node, "RegexpError", f"invalid regular expression /{source}/: {exc}") from None
    if _nested_repeat(parsed, False, 0):
        raise ip.unsupported(
            node, f"/{source}/", "nested repetition in a regular expression can take forever to match"
        ) if node is not None else err("RegexpError", "nested repetition is not supported")
    return RRegexp(source, "".join(c for c in flags if c in "imx"), compiled)


def _nested_repeat(parsed: Any, inside_repeat: bool, depth: int) -> bool:
    if depth > 100:
        return True
    for op, av in getattr(parsed, "data", parsed):
        name = str(op)
        if name in ("MAX_REPEAT", "MIN_REPEAT", "POSSESSIVE_REPEAT"):
            low, high, sub = av
            unbounded = high is re._constants.MAXREPEAT or high > 50  # type: ignore[attr-defined]
            if inside_repeat and unbounded:
                return True
            if _nested_repeat(sub, inside_repeat or unbounded, depth + 1):
                return True
        elif name == "SUBPATTERN":
            if _nested_repeat(av[-1], inside_repeat, depth + 1):
                return True
        elif name == "BRANCH":
            if any(_nested_repeat(b, inside_repeat, depth + 1) for b in av[1]):
                return True
        elif name in ("ASSERT", "ASSERT_NOT") and _nested_repeat(av[1], inside_repeat, depth + 1):
            return True
    return False


def to_regexp(ip: Interpreter, value: Any, node: Node | None) -> RRegexp:
    if isinstance(value, RRegexp):
        return value
    return make_regexp(ip, re.escape(need_str(value)), "", node)


def _subject(value: str) -> str:
    if len(value) > MAX_REGEX_SUBJECT:
        raise err("ArgumentError", f"string too long for a regular expression ({len(value)} characters)")
    return value


def _set_match(ip: Interpreter, m: re.Match[str] | None) -> None:
    ip.globals["$~"] = RMatch(m) if m is not None else None


# -- formatting -------------------------------------------------------------------------

_FORMAT_SPEC = re.compile(
    r"%(?P<flags>[-+ 0#]*)(?:<(?P<name>\w+)>|\{(?P<brace>\w+)\})?(?P<flags2>[-+ 0#]*)"
    r"(?P<width>\*|\d+)?(?:\.(?P<prec>\d+))?(?P<conv>[sdifgeExXobBcpu%])?"
)


def rb_format(ip: Interpreter, fmt: str, values: list[Any], node: Node | None) -> str:
    """Kernel#format / String#%: %s %d %05.2f %-10s %x %<name>s %{name} ..."""
    out: list[str] = []
    pos = 0
    index = 0
    named = values[0] if len(values) == 1 and isinstance(values[0], dict) else None
    total = 0
    while True:
        start = fmt.find("%", pos)
        if start < 0:
            out.append(fmt[pos:])
            break
        out.append(fmt[pos:start])
        m = _FORMAT_SPEC.match(fmt, start)
        if m is None or (m.group("conv") is None and m.group("brace") is None):
            raise err("ArgumentError", f"malformed format string - {fmt[start:start + 3]}")
        pos = m.end()
        conv = m.group("conv")
        if conv == "%" and not m.group("name"):
            out.append("%")
            continue
        flags = (m.group("flags") or "") + (m.group("flags2") or "")
        width_text = m.group("width")
        if width_text == "*":
            width = need_int(values[index]) if index < len(values) else 0
            index += 1
        else:
            width = int(width_text) if width_text else 0
        prec = int(m.group("prec")) if m.group("prec") is not None else None
        if width > ip.limits.max_string or (prec or 0) > ip.limits.max_string:
            raise ip.limit(node, "a format width that large")
        key = m.group("name") or m.group("brace")
        if key is not None:
            if named is None:
                raise err("ArgumentError", "one hash required")
            sym = Symbol(key)
            if sym not in named and key not in named:
                raise err("KeyError", f"key<{key}> not found")
            value = named[sym] if sym in named else named[key]
            if m.group("brace"):
                text = ip.to_s(value, node)
                out.append(text)
                continue
        else:
            if index >= len(values):
                raise err("ArgumentError", "too few arguments")
            value = values[index]
            index += 1
        text = _format_one(ip, value, conv or "s", flags, width, prec, node)
        total += len(text)
        if total > ip.limits.max_string:
            raise ip.limit(node, "a formatted string that long")
        out.append(text)
    return ip.check_string("".join(out), node)


def _format_one(ip: Interpreter, value: Any, conv: str, flags: str, width: int, prec: int | None, node: Node | None) -> str:
    py_flags = "".join(sorted(set(flags), key=flags.index))
    if conv in "sp":
        text = ip.to_s(value, node) if conv == "s" else inspect(value)
        if prec is not None:
            text = text[:prec]
        return text.ljust(width) if "-" in flags else text.rjust(width)
    if conv == "c":
        text = value if isinstance(value, str) else chr(need_int(value))
        return text[:1].ljust(width) if "-" in flags else text[:1].rjust(width)
    if conv in "diuxXobB":
        number = _to_integer(value)
        spec = {"d": "d", "i": "d", "u": "d", "x": "x", "X": "X", "o": "o", "b": "b", "B": "b"}[conv]
        prec_text = ""
        result = format(number, f"{py_flags.replace('#', '')}{width if width else ''}{spec}")
        if prec is not None:
            digits = format(abs(number), spec).rjust(prec, "0")
            sign = "-" if number < 0 else ("+" if "+" in flags else "")
            result = sign + digits
            result = result.ljust(width) if "-" in flags else result.rjust(width)
        del prec_text
        return result
    number = _to_float(value)
    precision = 6 if prec is None else prec
    try:
        return format(number, f"{py_flags}{width if width else ''}.{precision}{conv}")
    except ValueError as exc:
        raise err("ArgumentError", str(exc)) from None


def _to_integer(value: Any) -> int:
    if isinstance(value, bool):
        raise err("TypeError", f"can't convert {value} into Integer")
    if isinstance(value, int):
        return value
    if isinstance(value, float):
        if not math.isfinite(value):
            raise err("FloatDomainError", format_float(value))
        return int(value)
    if isinstance(value, str):
        return _kernel_integer(value)
    if value is None:
        raise err("TypeError", "can't convert nil into Integer")
    raise err("TypeError", f"can't convert {class_name(value)} into Integer")


def _to_float(value: Any) -> float:
    if isinstance(value, bool) or value is None:
        raise err("TypeError", f"can't convert {describe(value)} into Float")
    if isinstance(value, int | float):
        return float(value)
    if isinstance(value, str):
        return _kernel_float(value)
    raise err("TypeError", f"can't convert {class_name(value)} into Float")


def _kernel_integer(text: str) -> int:
    clean = text.strip().replace("_", "")
    if len(clean) > 1000:
        raise err("ArgumentError", "invalid value for Integer(): too long")
    try:
        return int(clean, 0)
    except ValueError:
        try:
            if re.fullmatch(r"[-+]?0\d+", clean):
                return int(clean, 8)
        except ValueError:
            pass
        raise err("ArgumentError", f"invalid value for Integer(): {inspect(text)}") from None


def _kernel_float(text: str) -> float:
    try:
        return float(text.strip().replace("_", ""))
    except ValueError:
        raise err("ArgumentError", f"invalid value for Float(): {inspect(text)}") from None


# -- comparison -------------------------------------------------------------------------


def rb_cmp(a: Any, b: Any) -> int | None:
    if isinstance(a, bool) or isinstance(b, bool):
        return 0 if a is b else None
    if isinstance(a, int | float) and isinstance(b, int | float):
        return (a > b) - (a < b)
    if isinstance(a, str) and isinstance(b, str):
        return (a > b) - (a < b)
    if isinstance(a, Symbol) and isinstance(b, Symbol):
        return (a.name > b.name) - (a.name < b.name)
    if isinstance(a, list) and isinstance(b, list):
        for x, y in zip(a, b, strict=False):
            c = rb_cmp(x, y)
            if c is None or c != 0:
                return c
        return (len(a) > len(b)) - (len(a) < len(b))
    cmp = getattr(a, "rb_cmp", None)
    if cmp is not None:
        return cmp(b)  # type: ignore[no-any-return]
    return None


def must_cmp(a: Any, b: Any) -> int:
    c = rb_cmp(a, b)
    if c is None:
        raise err("ArgumentError", f"comparison of {class_name(a)} with {describe(b)} failed")
    return c


_cmp_key = functools.cmp_to_key(must_cmp)


# -- Object -----------------------------------------------------------------------------


@_m(OBJECT, "nil?")
def _nil_p(ip, recv, args, block, node):
    return recv is None


@_m(OBJECT, "==", "eql?", "equal?", "===")
def _obj_eq(ip, recv, args, block, node):
    arity(args, 1)
    return rb_eq(recv, args[0])


@_m(OBJECT, "!=")
def _obj_ne(ip, recv, args, block, node):
    arity(args, 1)
    return not truthy(dispatch(ip, recv, "==", args, None, node))


@_m(OBJECT, "!")
def _obj_not(ip, recv, args, block, node):
    return not truthy(recv)


@_m(OBJECT, "to_s")
def _obj_to_s(ip, recv, args, block, node):
    return ip.check_string(to_s(recv), node)


@_m(OBJECT, "inspect")
def _obj_inspect(ip, recv, args, block, node):
    return ip.check_string(inspect(recv), node)


@_m(OBJECT, "freeze", "dup", "clone", "itself", "-@", "+@")
def _obj_self(ip, recv, args, block, node):
    return recv


@_m(OBJECT, "frozen?")
def _obj_frozen(ip, recv, args, block, node):
    return isinstance(recv, int | float | Symbol) or recv is None or isinstance(recv, bool)


@_m(OBJECT, "class")
def _obj_class(ip, recv, args, block, node):
    from vmctl.vagrantfile.host import class_object

    return class_object(class_name(recv))


@_m(OBJECT, "is_a?", "kind_of?", "instance_of?")
def _obj_is_a(ip, recv, args, block, node):
    from vmctl.vagrantfile.host import RClass

    arity(args, 1)
    cls = args[0]
    if not isinstance(cls, RClass):
        raise err("TypeError", "class or module required")
    return cls.includes(recv)


@_m(OBJECT, "respond_to?")
def _obj_respond_to(ip, recv, args, block, node):
    arity(args, 1, 2)
    name = to_s(args[0])
    table = _TABLES.get(type(recv), {})
    return name in table or name in OBJECT


@_m(OBJECT, "tap")
def _obj_tap(ip, recv, args, block, node):
    call(ip, block, recv, node=node)
    return recv


@_m(OBJECT, "then", "yield_self")
def _obj_then(ip, recv, args, block, node):
    return call(ip, block, recv, node=node)


@_m(OBJECT, "hash")
def _obj_hash(ip, recv, args, block, node):
    try:
        return hash(recv)
    except TypeError:
        return hash(inspect(recv))


@_m(OBJECT, "to_json")
def _obj_to_json(ip, recv, args, block, node):
    from vmctl.vagrantfile.host import json_generate

    return json_generate(ip, recv, pretty=False, node=node)


@_m(OBJECT, "to_yaml")
def _obj_to_yaml(ip, recv, args, block, node):
    from vmctl.vagrantfile.host import yaml_dump

    return yaml_dump(ip, recv, node)


@_m(OBJECT, "instance_variable_defined?", "instance_variables")
def _obj_no_ivars(ip, recv, args, block, node):
    return False if args else []


@_m(OBJECT, "<=>")
def _obj_cmp(ip, recv, args, block, node):
    arity(args, 1)
    return rb_cmp(recv, args[0])


@_m(OBJECT, "between?")
def _obj_between(ip, recv, args, block, node):
    arity(args, 2)
    return must_cmp(recv, args[0]) >= 0 and must_cmp(recv, args[1]) <= 0


@_m(OBJECT, "clamp")
def _obj_clamp(ip, recv, args, block, node):
    if len(args) == 1 and isinstance(args[0], RRange):
        args = [args[0].begin, args[0].end]
    arity(args, 2)
    if must_cmp(recv, args[0]) < 0:
        return args[0]
    if must_cmp(recv, args[1]) > 0:
        return args[1]
    return recv


for _op, _want in (("<", lambda c: c < 0), (">", lambda c: c > 0), ("<=", lambda c: c <= 0), (">=", lambda c: c >= 0)):

    def _compare(ip, recv, args, block, node, _want=_want):
        arity(args, 1)
        return _want(must_cmp(recv, args[0]))

    for _table in (STRING, NUMBER, SYMBOL, ARRAY):
        _table[_op] = _compare


# -- nil, true, false -------------------------------------------------------------------


@_m(NIL, "to_s")
def _nil_to_s(ip, recv, args, block, node):
    return ""


@_m(NIL, "to_a")
def _nil_to_a(ip, recv, args, block, node):
    return []


@_m(NIL, "to_h")
def _nil_to_h(ip, recv, args, block, node):
    return {}


@_m(NIL, "to_i")
def _nil_to_i(ip, recv, args, block, node):
    return 0


@_m(NIL, "to_f")
def _nil_to_f(ip, recv, args, block, node):
    return 0.0


@_m(NIL, BOOL, "&")
def _bool_and(ip, recv, args, block, node):
    arity(args, 1)
    return truthy(recv) and truthy(args[0])


@_m(NIL, BOOL, "|")
def _bool_or(ip, recv, args, block, node):
    arity(args, 1)
    return truthy(recv) or truthy(args[0])


@_m(NIL, BOOL, "^")
def _bool_xor(ip, recv, args, block, node):
    arity(args, 1)
    return truthy(recv) != truthy(args[0])


@_m(NIL, "empty?")
def _nil_empty(ip, recv, args, block, node):
    raise err("NoMethodError", "undefined method `empty?' for nil")


# -- numbers ----------------------------------------------------------------------------


def _num(value: Any, op: str) -> int | float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise err("TypeError", f"{describe(value) if value is None else class_name(value)} can't be coerced into Integer"
                   if value is not None else "nil can't be coerced into Integer")
    return value


def _finish(value: Any) -> Any:
    if isinstance(value, int):
        return check_int(value)
    return value


@_m(NUMBER, "+")
def _add(ip, recv, args, block, node):
    arity(args, 1)
    return _finish(recv + _num(args[0], "+"))


@_m(NUMBER, "-")
def _sub(ip, recv, args, block, node):
    arity(args, 1)
    return _finish(recv - _num(args[0], "-"))


@_m(NUMBER, "*")
def _mul(ip, recv, args, block, node):
    arity(args, 1)
    other = _num(args[0], "*")
    if isinstance(recv, int) and isinstance(other, int) and recv.bit_length() + other.bit_length() > MAX_INT_BITS + 1:
        raise err("RangeError", "integer too large")
    try:
        return _finish(recv * other)
    except OverflowError:
        return math.inf


@_m(NUMBER, "/", "div")
def _div(ip, recv, args, block, node):
    arity(args, 1)
    other = _num(args[0], "/")
    if isinstance(recv, int) and isinstance(other, int):
        if other == 0:
            raise err("ZeroDivisionError", "divided by 0")
        return recv // other
    if other == 0:
        if recv == 0 or math.isnan(recv):
            return math.nan
        return math.copysign(math.inf, recv) * (1 if math.copysign(1, other) > 0 else -1)
    return recv / other


@_m(NUMBER, "fdiv")
def _fdiv(ip, recv, args, block, node):
    arity(args, 1)
    return _div(ip, float(recv), [float(_num(args[0], "/"))], block, node)


@_m(NUMBER, "%", "modulo")
def _mod(ip, recv, args, block, node):
    arity(args, 1)
    other = _num(args[0], "%")
    if other == 0 and isinstance(other, int) and isinstance(recv, int):
        raise err("ZeroDivisionError", "divided by 0")
    if other == 0:
        return math.nan
    return recv % other


@_m(NUMBER, "divmod")
def _divmod(ip, recv, args, block, node):
    return [_div(ip, recv, args, block, node), _mod(ip, recv, args, block, node)]


@_m(NUMBER, "**", "pow")
def _pow(ip, recv, args, block, node):
    arity(args, 1)
    other = _num(args[0], "**")
    if isinstance(recv, int) and isinstance(other, int):
        if other < 0:
            return recv ** float(other) if recv else math.inf
        if abs(recv) > 1 and other * max(1, abs(recv).bit_length()) > MAX_INT_BITS:
            raise err("RangeError", f"integer too large ({recv} ** {other})")
        return recv**other
    try:
        result = float(recv) ** float(other)
    except OverflowError:
        return math.inf
    except ZeroDivisionError:
        return math.inf
    return result if not isinstance(result, complex) else math.nan


@_m(NUMBER, "-@")
def _neg(ip, recv, args, block, node):
    return -recv


@_m(NUMBER, "+@")
def _pos(ip, recv, args, block, node):
    return recv


@_m(NUMBER, "==", "===", "eql?", "equal?")
def _num_eq(ip, recv, args, block, node):
    arity(args, 1)
    return rb_eq(recv, args[0])


@_m(NUMBER, "abs", "magnitude")
def _abs(ip, recv, args, block, node):
    return abs(recv)


@_m(NUMBER, "to_i", "to_int", "truncate")
def _to_i(ip, recv, args, block, node):
    return _to_integer(recv)


@_m(NUMBER, "to_f")
def _to_f(ip, recv, args, block, node):
    return float(recv)


@_m(NUMBER, "to_s", "inspect")
def _num_to_s(ip, recv, args, block, node):
    if args and isinstance(recv, int):
        base = need_int(args[0])
        if not 2 <= base <= 36:
            raise err("ArgumentError", f"invalid radix {base}")
        digits = "0123456789abcdefghijklmnopqrstuvwxyz"
        n, out = abs(recv), ""
        while True:
            n, r = divmod(n, base)
            out = digits[r] + out
            if n == 0:
                break
        return ("-" if recv < 0 else "") + out
    return to_s(recv)


@_m(NUMBER, "round", "floor", "ceil")
def _round(ip, recv, args, block, node):
    # Which one was called is not passed in; the three differ, so resolve by table lookup.
    raise AssertionError  # replaced below


def _rounder(kind: str) -> Fn:
    def fn(ip, recv, args, block, node):
        digits = need_int(args[0]) if args and not isinstance(args[0], dict) else 0
        if isinstance(recv, float) and not math.isfinite(recv):
            if digits > 0:
                return recv
            raise err("FloatDomainError", format_float(recv))
        if abs(digits) > 300:
            raise err("ArgumentError", "precision too large")
        factor = 10.0**digits
        if kind == "round":
            value = math.floor(abs(recv) * factor + 0.5) / factor * (1 if recv >= 0 else -1)
        elif kind == "floor":
            value = math.floor(recv * factor) / factor
        else:
            value = math.ceil(recv * factor) / factor
        return value if digits > 0 and isinstance(recv, float) else int(value)

    return fn


for _kind in ("round", "floor", "ceil"):
    NUMBER[_kind] = _rounder(_kind)


@_m(NUMBER, "zero?")
def _zero(ip, recv, args, block, node):
    return recv == 0


@_m(NUMBER, "positive?")
def _positive(ip, recv, args, block, node):
    return recv > 0


@_m(NUMBER, "negative?")
def _negative(ip, recv, args, block, node):
    return recv < 0


@_m(NUMBER, "nonzero?")
def _nonzero(ip, recv, args, block, node):
    return None if recv == 0 else recv


@_m(FLOAT, "nan?")
def _nan(ip, recv, args, block, node):
    return math.isnan(recv)


@_m(FLOAT, "infinite?")
def _infinite(ip, recv, args, block, node):
    return (1 if recv > 0 else -1) if math.isinf(recv) else None


@_m(FLOAT, "finite?")
def _finite(ip, recv, args, block, node):
    return math.isfinite(recv)


@_m(INTEGER, "even?")
def _even(ip, recv, args, block, node):
    return recv % 2 == 0


@_m(INTEGER, "odd?")
def _odd(ip, recv, args, block, node):
    return recv % 2 == 1


@_m(INTEGER, "succ", "next")
def _succ(ip, recv, args, block, node):
    return check_int(recv + 1)


@_m(INTEGER, "pred")
def _pred(ip, recv, args, block, node):
    return check_int(recv - 1)


@_m(INTEGER, "chr")
def _chr(ip, recv, args, block, node):
    if not 0 <= recv < 0x110000:
        raise err("RangeError", f"{recv} out of char range")
    return chr(recv)


@_m(INTEGER, "ord")
def _ord_int(ip, recv, args, block, node):
    return recv


@_m(INTEGER, "&")
def _band(ip, recv, args, block, node):
    return recv & need_int(args[0])


@_m(INTEGER, "|")
def _bor(ip, recv, args, block, node):
    return recv | need_int(args[0])


@_m(INTEGER, "^")
def _bxor(ip, recv, args, block, node):
    return recv ^ need_int(args[0])


@_m(INTEGER, "~")
def _binv(ip, recv, args, block, node):
    return ~recv


@_m(INTEGER, "<<")
def _shl(ip, recv, args, block, node):
    shift = need_int(args[0])
    if shift > MAX_INT_BITS:
        raise err("RangeError", "shift width too big")
    return check_int(recv << shift) if shift >= 0 else recv >> -shift


@_m(INTEGER, ">>")
def _shr(ip, recv, args, block, node):
    shift = need_int(args[0])
    if shift < -MAX_INT_BITS:
        raise err("RangeError", "shift width too big")
    return recv >> shift if shift >= 0 else check_int(recv << -shift)


@_m(INTEGER, "gcd")
def _gcd(ip, recv, args, block, node):
    return math.gcd(recv, need_int(args[0]))


@_m(INTEGER, "digits")
def _digits(ip, recv, args, block, node):
    if recv < 0:
        raise err("Math::DomainError", "out of domain")
    return [int(d) for d in reversed(str(recv))]


@_m(INTEGER, "times")
def _times(ip, recv, args, block, node):
    if block is None:
        return Enumerator(recv, "times")
    for i in range(recv):
        call(ip, block, i, node=node)
    return recv


@_m(INTEGER, "upto")
def _upto(ip, recv, args, block, node):
    arity(args, 1)
    if block is None:
        return Enumerator(recv, "upto", args)
    stop = _num(args[0], "upto")
    i = recv
    while i <= stop:
        call(ip, block, i, node=node)
        i += 1
    return recv


@_m(INTEGER, "downto")
def _downto(ip, recv, args, block, node):
    arity(args, 1)
    if block is None:
        return Enumerator(recv, "downto", args)
    stop = _num(args[0], "downto")
    i = recv
    while i >= stop:
        call(ip, block, i, node=node)
        i -= 1
    return recv


@_m(NUMBER, "step")
def _step(ip, recv, args, block, node):
    arity(args, 1, 2)
    if block is None:
        return Enumerator(recv, "step", args)
    stop = _num(args[0], "step")
    by = _num(args[1], "step") if len(args) > 1 else 1
    if by == 0:
        raise err("ArgumentError", "step can't be 0")
    i = recv
    while (i <= stop) if by > 0 else (i >= stop):
        call(ip, block, i, node=node)
        i += by
    return recv


# -- String -----------------------------------------------------------------------------


@_m(STRING, "+")
def _str_add(ip, recv, args, block, node):
    arity(args, 1)
    other = need_str(args[0])
    if len(recv) + len(other) > ip.limits.max_string:
        raise ip.limit(node, "a string that long")
    return recv + other


@_m(STRING, "*")
def _str_mul(ip, recv, args, block, node):
    arity(args, 1)
    n = need_int(args[0])
    if n < 0:
        raise err("ArgumentError", "negative argument")
    if len(recv) * n > ip.limits.max_string:
        raise ip.limit(node, "a string that long")
    return recv * n


@_m(STRING, "%")
def _str_format(ip, recv, args, block, node):
    arity(args, 1)
    values = args[0] if isinstance(args[0], list) else [args[0]]
    return rb_format(ip, recv, values, node)


@_m(STRING, SYMBOL, "==", "===", "eql?")
def _str_eq(ip, recv, args, block, node):
    arity(args, 1)
    return rb_eq(recv, args[0])


@_m(STRING, "=~")
def _str_match_op(ip, recv, args, block, node):
    arity(args, 1)
    if not isinstance(args[0], RRegexp):
        raise err("TypeError", "wrong argument type (expected Regexp)")
    m = args[0].compiled.search(_subject(recv))
    _set_match(ip, m)
    return m.start() if m else None


@_m(STRING, "match")
def _str_match(ip, recv, args, block, node):
    arity(args, 1, 2)
    m = to_regexp(ip, args[0], node).compiled.search(_subject(recv), need_int(args[1]) if len(args) > 1 else 0)
    _set_match(ip, m)
    return RMatch(m) if m else None


@_m(STRING, "match?")
def _str_match_p(ip, recv, args, block, node):
    arity(args, 1, 2)
    return to_regexp(ip, args[0], node).compiled.search(_subject(recv)) is not None


@_m(STRING, "scan")
def _str_scan(ip, recv, args, block, node):
    arity(args, 1)
    rx = to_regexp(ip, args[0], node).compiled
    out: list[Any] = []
    for m in rx.finditer(_subject(recv)):
        ip.tick(node)
        item = list(m.groups()) if rx.groups else m.group(0)
        if block is not None:
            call(ip, block, item, node=node)
        else:
            out.append(item)
    return recv if block is not None else out


@_m(STRING, "[]", "slice")
def _str_index(ip, recv, args, block, node):
    arity(args, 1, 2)
    first = args[0]
    if isinstance(first, RRegexp):
        m = first.compiled.search(_subject(recv))
        _set_match(ip, m)
        if m is None:
            return None
        group = args[1] if len(args) > 1 else 0
        try:
            return m.group(group.name if isinstance(group, Symbol) else group)
        except (IndexError, error_types()):
            return None
    if isinstance(first, str):
        return first if first in recv else None
    return _slice(recv, args)


def error_types() -> type[Exception]:
    return re.error


def _slice(seq: Any, args: list[Any]) -> Any:
    n = len(seq)
    first = args[0]
    if isinstance(first, RRange):
        start = 0 if first.begin is None else need_int(first.begin)
        stop = n - 1 if first.end is None else need_int(first.end)
        if start < 0:
            start += n
        if stop < 0:
            stop += n
        if first.exclusive and first.end is not None:
            stop -= 1
        if start < 0 or start > n:
            return None
        return seq[start : max(start, stop + 1)]
    index = need_int(first)
    if len(args) == 2:
        length = need_int(args[1])
        if index < 0:
            index += n
        if index < 0 or index > n or length < 0:
            return None
        return seq[index : index + length]
    if index < -n or index >= n:
        return None
    return seq[index]


@_m(STRING, "length", "size", "bytesize")
def _str_len(ip, recv, args, block, node):
    return len(recv) if isinstance(recv, str) else len(recv.name)


@_m(STRING, "to_s", "to_str")
def _str_to_s(ip, recv, args, block, node):
    return recv


@_m(STRING, "to_sym", "intern")
def _str_to_sym(ip, recv, args, block, node):
    return Symbol(recv)


@_m(STRING, "to_i")
def _str_to_i(ip, recv, args, block, node):
    base = need_int(args[0]) if args else 10
    if not 2 <= base <= 36:
        raise err("ArgumentError", f"invalid radix {base}")
    digits = "0123456789abcdefghijklmnopqrstuvwxyz"[:base]
    text = recv.lstrip().replace("_", "")
    sign = 1
    if text[:1] in "+-" and text:
        sign = -1 if text[0] == "-" else 1
        text = text[1:]
    if base == 16 and text[:2].lower() == "0x":
        text = text[2:]
    end = 0
    while end < len(text) and text[end].lower() in digits:
        end += 1
        if end > 1000:
            raise err("RangeError", "number too long")
    return sign * int(text[:end], base) if end else 0


@_m(STRING, "to_f")
def _str_to_f(ip, recv, args, block, node):
    m = re.match(r"\s*[-+]?(\d[\d_]*)?(\.\d+)?([eE][-+]?\d+)?", recv)
    text = m.group(0).replace("_", "") if m else ""
    try:
        return float(text) if text.strip() not in ("", "+", "-") else 0.0
    except ValueError:
        return 0.0


@_m(STRING, "to_c", "to_r")
def _str_unsupported(ip, recv, args, block, node):
    raise err("NotImplementedError", "complex and rational numbers are not supported")


@_m(STRING, "hex")
def _str_hex(ip, recv, args, block, node):
    return _str_to_i(ip, recv, [16], block, node)


@_m(STRING, "oct")
def _str_oct(ip, recv, args, block, node):
    return _str_to_i(ip, recv, [8], block, node)


def _str_fn(py: Callable[[str], str]) -> Fn:
    def fn(ip, recv, args, block, node):
        return py(recv)

    return fn


for _name, _py in {
    "upcase": str.upper, "downcase": str.lower, "swapcase": str.swapcase,
    "capitalize": lambda s: s[:1].upper() + s[1:].lower(),
    "strip": lambda s: s.strip(" \t\n\v\f\r\0"), "lstrip": lambda s: s.lstrip(" \t\n\v\f\r\0"),
    "rstrip": lambda s: s.rstrip(" \t\n\v\f\r\0"), "chop": lambda s: s[:-2] if s.endswith("\r\n") else s[:-1],
    "reverse": lambda s: s[::-1], "force_encoding": lambda s: s, "encode": lambda s: s,
    "unicode_normalize": lambda s: s, "scrub": lambda s: s, "b": lambda s: s,
    "shellescape": lambda s: shlex.quote(s), "dump": inspect, "squish": lambda s: " ".join(s.split()),
}.items():
    STRING[_name] = _str_fn(_py)


@_m(STRING, "chomp")
def _str_chomp(ip, recv, args, block, node):
    if args:
        suffix = need_str(args[0])
        return recv[: -len(suffix)] if suffix and recv.endswith(suffix) else recv
    for ending in ("\r\n", "\n", "\r"):
        if recv.endswith(ending):
            return recv[: -len(ending)]
    return recv


@_m(STRING, "chars")
def _str_chars(ip, recv, args, block, node):
    ip.check_size(len(recv), node)
    return list(recv)


@_m(STRING, "bytes")
def _str_bytes(ip, recv, args, block, node):
    data = recv.encode()
    ip.check_size(len(data), node)
    return list(data)


@_m(STRING, "lines")
def _str_lines(ip, recv, args, block, node):
    lines = recv.splitlines(keepends=True)
    ip.check_size(len(lines), node)
    return lines


@_m(STRING, "each_line")
def _str_each_line(ip, recv, args, block, node):
    lines = _str_lines(ip, recv, args, None, node)
    if block is None:
        return Enumerator(lines, "each")
    for line in lines:
        call(ip, block, line, node=node)
    return recv


@_m(STRING, "each_char")
def _str_each_char(ip, recv, args, block, node):
    if block is None:
        return Enumerator(list(recv), "each")
    for ch in recv:
        call(ip, block, ch, node=node)
    return recv


@_m(STRING, "split")
def _str_split(ip, recv, args, block, node):
    arity(args, 0, 2)
    sep = args[0] if args else None
    limit = need_int(args[1]) if len(args) > 1 else 0
    if sep is None or sep == " ":
        parts = recv.split(None, limit - 1) if limit > 0 else recv.split()
    elif isinstance(sep, RRegexp):
        rx = sep.compiled
        if rx.groups:
            parts = rx.split(_subject(recv), max(0, limit - 1))
            parts = [p for p in parts if p is not None]
        else:
            parts = rx.split(_subject(recv), max(0, limit - 1))
        if sep.source == "":
            parts = list(recv)
    else:
        sep = need_str(sep)
        parts = list(recv) if sep == "" else recv.split(sep, limit - 1 if limit > 0 else -1)
    if limit == 0:
        while parts and parts[-1] == "":
            parts.pop()
    ip.check_size(len(parts), node)
    return parts


def _replacement(template: str, m: re.Match[str]) -> str:
    def sub(rm: re.Match[str]) -> str:
        token = rm.group(1)
        if token == "\\":
            return "\\"
        if token == "&" or token == "0":
            return m.group(0)
        if token.startswith("k<"):
            try:
                return m.group(token[2:-1]) or ""
            except (IndexError, re.error):
                return ""
        if token.isdigit():
            idx = int(token)
            return (m.group(idx) or "") if idx <= (m.re.groups or 0) else ""
        return "\\" + token

    return re.sub(r"\\(\\|&|\d|k<\w+>|.)", sub, template)


def _gsub(ip: Interpreter, recv: str, args: list[Any], block: Proc | None, node: Node | None, count: int) -> str:
    arity(args, 1, 2)
    rx = to_regexp(ip, args[0], node).compiled
    replacement = args[1] if len(args) > 1 else None
    if replacement is None and block is None:
        raise err("ArgumentError", "wrong number of arguments (given 1, expected 2)")
    pieces: list[str] = []
    pos = 0
    total = 0
    subject = _subject(recv)
    for done, m in enumerate(rx.finditer(subject)):
        if count and done >= count:
            break
        ip.tick(node)
        if isinstance(replacement, dict):
            value = replacement.get(m.group(0))
            rep = ip.to_s(value, node)
        elif replacement is not None:
            rep = _replacement(need_str(replacement), m)
        else:
            _set_match(ip, m)
            rep = ip.to_s(call(ip, block, m.group(0), node=node), node)
        pieces.append(subject[pos : m.start()])
        pieces.append(rep)
        total += m.start() - pos + len(rep)
        if total > ip.limits.max_string:
            raise ip.limit(node, "a string that long")
        pos = m.end()
    pieces.append(subject[pos:])
    return ip.check_string("".join(pieces), node)


@_m(STRING, "gsub")
def _str_gsub(ip, recv, args, block, node):
    return _gsub(ip, recv, args, block, node, 0)


@_m(STRING, "sub")
def _str_sub(ip, recv, args, block, node):
    return _gsub(ip, recv, args, block, node, 1)


def _tr_set(spec: str) -> tuple[list[str], bool]:
    negate = len(spec) > 1 and spec.startswith("^")
    if negate:
        spec = spec[1:]
    chars: list[str] = []
    i = 0
    while i < len(spec):
        if i + 2 < len(spec) and spec[i + 1] == "-":
            lo, hi = ord(spec[i]), ord(spec[i + 2])
            if hi - lo > 10_000:
                raise err("ArgumentError", "character range too large")
            chars.extend(chr(c) for c in range(lo, hi + 1))
            i += 3
        else:
            chars.append(spec[i])
            i += 1
    return chars, negate


@_m(STRING, "tr")
def _str_tr(ip, recv, args, block, node):
    arity(args, 2)
    source, negate = _tr_set(need_str(args[0]))
    target, _ = _tr_set(need_str(args[1]))
    out = []
    for ch in recv:
        if negate:
            out.append(target[-1] if ch not in source and target else ch)
        elif ch in source:
            i = source.index(ch)
            out.append(target[min(i, len(target) - 1)] if target else "")
        else:
            out.append(ch)
    return "".join(out)


@_m(STRING, "delete")
def _str_delete(ip, recv, args, block, node):
    arity(args, 1)
    chars, negate = _tr_set(need_str(args[0]))
    return "".join(c for c in recv if (c in chars) == negate)


@_m(STRING, "squeeze")
def _str_squeeze(ip, recv, args, block, node):
    chars = _tr_set(need_str(args[0]))[0] if args else None
    out: list[str] = []
    for ch in recv:
        if out and out[-1] == ch and (chars is None or ch in chars):
            continue
        out.append(ch)
    return "".join(out)


@_m(STRING, "count")
def _str_count(ip, recv, args, block, node):
    arity(args, 1)
    chars, negate = _tr_set(need_str(args[0]))
    return sum(1 for c in recv if (c in chars) != negate)


@_m(STRING, SYMBOL, "start_with?")
def _str_start(ip, recv, args, block, node):
    text = recv.name if isinstance(recv, Symbol) else recv
    for prefix in args:
        if isinstance(prefix, RRegexp):
            if prefix.compiled.match(_subject(text)):
                return True
        elif text.startswith(need_str(prefix)):
            return True
    return False


@_m(STRING, SYMBOL, "end_with?")
def _str_end(ip, recv, args, block, node):
    text = recv.name if isinstance(recv, Symbol) else recv
    return any(text.endswith(need_str(s)) for s in args)


@_m(STRING, "include?")
def _str_include(ip, recv, args, block, node):
    arity(args, 1)
    return need_str(args[0]) in recv


@_m(STRING, SYMBOL, "empty?")
def _str_empty(ip, recv, args, block, node):
    return len(recv if isinstance(recv, str) else recv.name) == 0


@_m(STRING, "index")
def _str_find(ip, recv, args, block, node):
    arity(args, 1, 2)
    start = need_int(args[1]) if len(args) > 1 else 0
    if isinstance(args[0], RRegexp):
        m = args[0].compiled.search(_subject(recv), start)
        return m.start() if m else None
    i = recv.find(need_str(args[0]), start)
    return i if i >= 0 else None


@_m(STRING, "rindex")
def _str_rfind(ip, recv, args, block, node):
    arity(args, 1)
    i = recv.rfind(need_str(args[0]))
    return i if i >= 0 else None


def _pad(kind: str) -> Fn:
    def fn(ip, recv, args, block, node):
        arity(args, 1, 2)
        width = need_int(args[0])
        fill = need_str(args[1]) if len(args) > 1 else " "
        if not fill:
            raise err("ArgumentError", "zero width padding")
        if width > ip.limits.max_string:
            raise ip.limit(node, "a string that long")
        missing = max(0, width - len(recv))
        if kind == "ljust":
            return recv + (fill * missing)[:missing]
        if kind == "rjust":
            return (fill * missing)[:missing] + recv
        left = missing // 2
        return (fill * left)[:left] + recv + (fill * (missing - left))[: missing - left]

    return fn


for _kind in ("ljust", "rjust", "center"):
    STRING[_kind] = _pad(_kind)


@_m(STRING, "replace")
def _str_replace(ip, recv, args, block, node):
    arity(args, 1)
    return need_str(args[0])


@_m(STRING, "prepend")
def _str_prepend(ip, recv, args, block, node):
    return ip.check_string("".join(need_str(a) for a in args) + recv, node)


@_m(STRING, "insert")
def _str_insert(ip, recv, args, block, node):
    arity(args, 2)
    i = need_int(args[0])
    text = need_str(args[1])
    if i < 0:
        i = len(recv) + i + 1
    return ip.check_string(recv[:i] + text + recv[i:], node)


@_m(STRING, "concat")
def _str_concat(ip, recv, args, block, node):
    return ip.check_string(recv + "".join(need_str(a) for a in args), node)


@_m(STRING, "succ", "next")
def _str_succ(ip, recv, args, block, node):
    if not recv:
        return ""
    chars = list(recv)
    i = len(chars) - 1
    while i >= 0:
        c = chars[i]
        if c == "z":
            chars[i] = "a"
        elif c == "Z":
            chars[i] = "A"
        elif c == "9":
            chars[i] = "0"
        elif c.isalnum():
            chars[i] = chr(ord(c) + 1)
            return "".join(chars)
        else:
            chars[i] = chr(ord(c) + 1) if ord(c) < 0x10FFFF else c
            return "".join(chars)
        i -= 1
    first = recv[0]
    lead = "a" if first.islower() else "A" if first.isupper() else "1"
    return lead + "".join(chars)


@_m(STRING, "ord")
def _str_ord(ip, recv, args, block, node):
    if not recv:
        raise err("ArgumentError", "empty string")
    return ord(recv[0])


@_m(STRING, "encoding")
def _str_encoding(ip, recv, args, block, node):
    return "UTF-8"


@_m(STRING, "casecmp")
def _str_casecmp(ip, recv, args, block, node):
    arity(args, 1)
    return rb_cmp(recv.lower(), need_str(args[0]).lower())


@_m(STRING, "casecmp?")
def _str_casecmp_p(ip, recv, args, block, node):
    arity(args, 1)
    return recv.casefold() == need_str(args[0]).casefold()


@_m(STRING, "partition")
def _str_partition(ip, recv, args, block, node):
    arity(args, 1)
    head, sep, tail = recv.partition(need_str(args[0]))
    return [head, sep, tail]


@_m(STRING, "rpartition")
def _str_rpartition(ip, recv, args, block, node):
    arity(args, 1)
    head, sep, tail = recv.rpartition(need_str(args[0]))
    return [head, sep, tail]


@_m(STRING, "shellsplit")
def _str_shellsplit(ip, recv, args, block, node):
    try:
        return shlex.split(recv)
    except ValueError as exc:
        raise err("ArgumentError", str(exc)) from None


@_m(STRING, "upto")
def _str_upto(ip, recv, args, block, node):
    arity(args, 1)
    items = _range_list(ip, RRange(recv, need_str(args[0])))
    if block is None:
        return Enumerator(items, "each")
    for item in items:
        call(ip, block, item, node=node)
    return recv


# -- Symbol -----------------------------------------------------------------------------


@_m(SYMBOL, "to_s", "id2name", "name")
def _sym_to_s(ip, recv, args, block, node):
    return recv.name


@_m(SYMBOL, "to_sym")
def _sym_to_sym(ip, recv, args, block, node):
    return recv


@_m(SYMBOL, "to_proc")
def _sym_to_proc(ip, recv, args, block, node):
    return ip.to_proc(recv, node)  # type: ignore[arg-type]


@_m(SYMBOL, "length", "size")
def _sym_len(ip, recv, args, block, node):
    return len(recv.name)


for _name in ("upcase", "downcase", "capitalize", "swapcase", "succ", "next"):

    def _sym_via_str(ip, recv, args, block, node, _name=_name):
        return Symbol(STRING[_name](ip, recv.name, args, block, node))

    SYMBOL[_name] = _sym_via_str


@_m(SYMBOL, "[]")
def _sym_index(ip, recv, args, block, node):
    return _str_index(ip, recv.name, args, block, node)


# -- Array and Enumerable ---------------------------------------------------------------


def _range_list(ip: Interpreter | None, r: RRange) -> list[Any]:
    begin, end = r.begin, r.end
    limit = ip.limits.max_items if ip is not None else 1_000_000
    if isinstance(begin, int) and not isinstance(begin, bool) and (end is None or isinstance(end, int | float)):
        if end is None or (isinstance(end, float) and math.isinf(end)):
            raise err("RangeError", "cannot convert endless range to an array")
        stop = int(math.floor(end)) if isinstance(end, float) else end
        if r.exclusive and stop == end:
            stop -= 1
        if stop - begin + 1 > limit:
            raise err("RangeError", f"range too large ({stop - begin + 1} elements)")
        return list(range(begin, stop + 1))
    if isinstance(begin, str) and isinstance(end, str):
        out = []
        current = begin
        if len(current) > len(end):
            return []
        while True:
            if current == end:
                if not r.exclusive:
                    out.append(current)
                break
            out.append(current)
            if len(out) > min(limit, 100_000) or len(current) > len(end):
                break
            current = _str_succ(None, current, [], None, None)  # type: ignore[arg-type]
        return out
    raise err("TypeError", f"can't iterate from {class_name(begin)}")


def items(ip: Interpreter, value: Any, node: Node | None = None) -> list[Any]:
    """The elements an Enumerable yields, as a list (hash pairs as [k, v])."""
    if isinstance(value, list):
        return value
    if isinstance(value, dict):
        return [[k, v] for k, v in value.items()]
    if isinstance(value, RRange):
        return _range_list(ip, value)
    if isinstance(value, Enumerator):
        return _enum_items(ip, value, node)
    raise err("NoMethodError", f"undefined method `each' for {describe(value)}")


def iterate(ip: Interpreter, value: Any, node: Node | None) -> list[Any]:
    return list(items(ip, value, node))


def _enum_items(ip: Interpreter, en: Enumerator, node: Node | None) -> list[Any]:
    collected: list[Any] = []

    def collect(args: list[Any], block: Proc | None, where: Node | None) -> Any:
        collected.append(args[0] if len(args) == 1 else list(args))
        ip.check_size(len(collected), node)
        return None

    dispatch(ip, en.receiver, en.method, list(en.args), Proc(None, None, None, None, native=collect), node)
    return collected


def _yield(ip: Interpreter, block: Proc | None, item: Any, node: Node | None) -> Any:
    return call(ip, block, item, node=node)


def _is_hash(recv: Any) -> bool:
    return isinstance(recv, dict)


@_m(ENUM, "each")
def _each(ip, recv, args, block, node):
    if block is None:
        return Enumerator(recv, "each")
    if isinstance(recv, Enumerator):
        return dispatch(ip, recv.receiver, recv.method, list(recv.args), block, node)
    for item in list(items(ip, recv, node)):
        _yield(ip, block, item, node)
    return recv


@_m(HASH, "each_pair")
def _each_pair(ip, recv, args, block, node):
    return _each(ip, recv, args, block, node)


@_m(ENUM, "each_with_index", "each_entry_with_index")
def _each_with_index(ip, recv, args, block, node):
    if block is None:
        return Enumerator(recv, "each_with_index")
    for i, item in enumerate(list(items(ip, recv, node))):
        call(ip, block, item, i, node=node)
    return recv


@_m(ENUM, "with_index", "each_with_index")
def _with_index(ip, recv, args, block, node):
    if not isinstance(recv, Enumerator):
        return _each_with_index(ip, recv, args, block, node)
    offset = need_int(args[0]) if args and args[0] is not None else 0
    if block is None:
        return Enumerator([[x, i + offset] for i, x in enumerate(items(ip, recv, node))], "each")
    counter = [offset]

    def with_index(a: list[Any], b: Proc | None, where: Node | None) -> Any:
        item = a[0] if len(a) == 1 else list(a)
        i = counter[0]
        counter[0] += 1
        return call(ip, block, item, i, node=node)

    return dispatch(ip, recv.receiver, recv.method, list(recv.args), Proc(None, None, None, None, native=with_index), node)


@_m(ENUM, "with_object", "each_with_object")
def _each_with_object(ip, recv, args, block, node):
    arity(args, 1)
    memo = args[0]
    for item in list(items(ip, recv, node)):
        call(ip, block, item, memo, node=node)
    return memo


@_m(ENUM, "map", "collect", "flat_map", "collect_concat")
def _map(ip, recv, args, block, node):
    raise AssertionError  # replaced below with the flat variants


def _mapper(flat: bool) -> Fn:
    def fn(ip, recv, args, block, node):
        if block is None:
            return Enumerator(recv, "flat_map" if flat else "map")
        out: list[Any] = []
        for item in list(items(ip, recv, node)):
            value = _yield(ip, block, item, node)
            if flat and isinstance(value, list):
                out.extend(value)
            else:
                out.append(value)
            ip.check_size(len(out), node)
        return out

    return fn


ENUM["map"] = ENUM["collect"] = _mapper(False)
ENUM["flat_map"] = ENUM["collect_concat"] = _mapper(True)


def _filter(keep: bool) -> Fn:
    def fn(ip, recv, args, block, node):
        if block is None:
            return Enumerator(recv, "select" if keep else "reject")
        if isinstance(recv, dict):
            return {k: v for k, v in list(recv.items()) if truthy(call(ip, block, k, v, node=node)) == keep}
        return [x for x in list(items(ip, recv, node)) if truthy(_yield(ip, block, x, node)) == keep]

    return fn


ENUM["select"] = ENUM["filter"] = ENUM["find_all"] = _filter(True)
ENUM["reject"] = _filter(False)


@_m(ENUM, "filter_map")
def _filter_map(ip, recv, args, block, node):
    out = []
    for item in list(items(ip, recv, node)):
        value = _yield(ip, block, item, node)
        if truthy(value):
            out.append(value)
    return out


@_m(ENUM, "find", "detect")
def _find(ip, recv, args, block, node):
    for item in list(items(ip, recv, node)):
        if truthy(_yield(ip, block, item, node)):
            return item
    return None


@_m(ENUM, "find_index", "index")
def _find_index(ip, recv, args, block, node):
    for i, item in enumerate(list(items(ip, recv, node))):
        if (truthy(_yield(ip, block, item, node)) if not args else rb_eq(item, args[0])):
            return i
    return None


@_m(ENUM, "any?")
def _any(ip, recv, args, block, node):
    for item in list(items(ip, recv, node)):
        if args:
            if truthy(dispatch(ip, args[0], "===", [item], None, node)):
                return True
        elif truthy(_yield(ip, block, item, node) if block else item):
            return True
    return False


@_m(ENUM, "all?")
def _all(ip, recv, args, block, node):
    for item in list(items(ip, recv, node)):
        if args:
            if not truthy(dispatch(ip, args[0], "===", [item], None, node)):
                return False
        elif not truthy(_yield(ip, block, item, node) if block else item):
            return False
    return True


@_m(ENUM, "none?")
def _none(ip, recv, args, block, node):
    return not _any(ip, recv, args, block, node)


@_m(ENUM, "count")
def _count(ip, recv, args, block, node):
    values = items(ip, recv, node)
    if args:
        return sum(1 for x in values if rb_eq(x, args[0]))
    if block is not None:
        return sum(1 for x in list(values) if truthy(_yield(ip, block, x, node)))
    return len(values)


@_m(ENUM, "size", "length")
def _size(ip, recv, args, block, node):
    if isinstance(recv, RRange) and isinstance(recv.begin, int) and isinstance(recv.end, int):
        return max(0, recv.end - recv.begin + (0 if recv.exclusive else 1))
    return len(recv) if isinstance(recv, list | dict) else len(items(ip, recv, node))


@_m(ENUM, "to_a", "entries", "force")
def _to_a(ip, recv, args, block, node):
    return list(items(ip, recv, node))


@_m(ENUM, "to_h")
def _to_h(ip, recv, args, block, node):
    out: dict[Any, Any] = {}
    for item in list(items(ip, recv, node)):
        pair = _yield(ip, block, item, node) if block is not None else item
        if not isinstance(pair, list) or len(pair) != 2:
            raise err("TypeError", f"wrong element type {class_name(pair)} (expected array of 2)")
        out[pair[0]] = pair[1]
    return out


@_m(ENUM, "first")
def _first(ip, recv, args, block, node):
    if isinstance(recv, RRange) and not args:
        return recv.begin
    values = items(ip, recv, node)
    if args:
        return list(values[: max(0, need_int(args[0]))])
    return values[0] if values else None


@_m(ENUM, "take")
def _take(ip, recv, args, block, node):
    arity(args, 1)
    return list(items(ip, recv, node)[: max(0, need_int(args[0]))])


@_m(ENUM, "drop")
def _drop(ip, recv, args, block, node):
    arity(args, 1)
    return list(items(ip, recv, node)[max(0, need_int(args[0])) :])


@_m(ENUM, "take_while")
def _take_while(ip, recv, args, block, node):
    out = []
    for x in list(items(ip, recv, node)):
        if not truthy(_yield(ip, block, x, node)):
            break
        out.append(x)
    return out


@_m(ENUM, "drop_while")
def _drop_while(ip, recv, args, block, node):
    values = list(items(ip, recv, node))
    for i, x in enumerate(values):
        if not truthy(_yield(ip, block, x, node)):
            return values[i:]
    return []


@_m(ENUM, "last")
def _last(ip, recv, args, block, node):
    if isinstance(recv, RRange) and not args:
        return recv.end
    values = items(ip, recv, node)
    if args:
        n = max(0, need_int(args[0]))
        return list(values[-n:]) if n else []
    return values[-1] if values else None


def _extreme(sign: int, by: bool) -> Fn:
    def fn(ip, recv, args, block, node):
        values = list(items(ip, recv, node))
        if by:
            keyed = [(_yield(ip, block, x, node), x) for x in values]
            key = functools.cmp_to_key(lambda a, b: must_cmp(a[0], b[0]) * sign)
            ordered = [x for _, x in sorted(keyed, key=key)]
        elif block is not None:
            ordered = sorted(values, key=functools.cmp_to_key(
                lambda a, b: need_int(call(ip, block, a, b, node=node)) * sign))
        else:
            ordered = sorted(values, key=functools.cmp_to_key(lambda a, b: must_cmp(a, b) * sign))
        n = next((a for a in args if isinstance(a, int) and not isinstance(a, bool)), None)
        if n is not None:
            return ordered[:n]
        return ordered[0] if ordered else None

    return fn


ENUM["min"] = _extreme(1, False)
ENUM["max"] = _extreme(-1, False)
ENUM["min_by"] = _extreme(1, True)
ENUM["max_by"] = _extreme(-1, True)


@_m(ENUM, "minmax")
def _minmax(ip, recv, args, block, node):
    return [ENUM["min"](ip, recv, [], None, node), ENUM["max"](ip, recv, [], None, node)]


@_m(ENUM, "sum")
def _sum(ip, recv, args, block, node):
    total = args[0] if args else 0
    for x in list(items(ip, recv, node)):
        value = _yield(ip, block, x, node) if block is not None else x
        total = dispatch(ip, total, "+", [value], None, node)
    return total


@_m(ENUM, "inject", "reduce")
def _inject(ip, recv, args, block, node):
    values = list(items(ip, recv, node))
    op: Symbol | None = None
    if args and isinstance(args[-1], Symbol) and (block is None):
        op = args[-1]
        args = args[:-1]
    if args:
        acc = args[0]
    elif values:
        acc, values = values[0], values[1:]
    else:
        return None
    for x in values:
        if op is not None:
            acc = dispatch(ip, acc, op.name, [x], None, node)
        else:
            acc = call(ip, block, acc, x, node=node)
    return acc


def _sorter(by: bool) -> Fn:
    def fn(ip, recv, args, block, node):
        values = list(items(ip, recv, node))
        if by:
            keyed = [(_yield(ip, block, x, node), x) for x in values]
            return [x for _, x in sorted(keyed, key=functools.cmp_to_key(lambda a, b: must_cmp(a[0], b[0])))]
        if block is not None:
            return sorted(values, key=functools.cmp_to_key(lambda a, b: need_int(call(ip, block, a, b, node=node))))
        return sorted(values, key=_cmp_key)

    return fn


ENUM["sort"] = _sorter(False)
ENUM["sort_by"] = _sorter(True)


@_m(ENUM, "group_by")
def _group_by(ip, recv, args, block, node):
    out: dict[Any, Any] = {}
    for x in list(items(ip, recv, node)):
        out.setdefault(_yield(ip, block, x, node), []).append(x)
    return out


@_m(ENUM, "partition")
def _partition(ip, recv, args, block, node):
    yes, no = [], []
    for x in list(items(ip, recv, node)):
        (yes if truthy(_yield(ip, block, x, node)) else no).append(x)
    return [yes, no]


@_m(ENUM, "tally")
def _tally(ip, recv, args, block, node):
    out: dict[Any, int] = {}
    for x in items(ip, recv, node):
        out[x] = out.get(x, 0) + 1
    return out


@_m(ENUM, "each_slice")
def _each_slice(ip, recv, args, block, node):
    arity(args, 1)
    n = need_int(args[0])
    if n <= 0:
        raise err("ArgumentError", "invalid slice size")
    values = list(items(ip, recv, node))
    slices = [values[i : i + n] for i in range(0, len(values), n)]
    if block is None:
        return Enumerator(slices, "each")
    for s in slices:
        _yield(ip, block, s, node)
    return recv


@_m(ENUM, "each_cons")
def _each_cons(ip, recv, args, block, node):
    arity(args, 1)
    n = need_int(args[0])
    if n <= 0:
        raise err("ArgumentError", "invalid size")
    values = list(items(ip, recv, node))
    windows = [values[i : i + n] for i in range(0, max(0, len(values) - n + 1))]
    ip.check_size(len(windows), node)
    if block is None:
        return Enumerator(windows, "each")
    for w in windows:
        _yield(ip, block, w, node)
    return recv


@_m(ENUM, "reverse_each")
def _reverse_each(ip, recv, args, block, node):
    values = list(reversed(items(ip, recv, node)))
    if block is None:
        return Enumerator(values, "each")
    for x in values:
        _yield(ip, block, x, node)
    return recv


@_m(ENUM, "include?", "member?")
def _include(ip, recv, args, block, node):
    arity(args, 1)
    if isinstance(recv, dict):
        return _hash_key(recv, args[0])
    if isinstance(recv, RRange):
        return _cover(recv, args[0])
    return any(rb_eq(x, args[0]) for x in items(ip, recv, node))


@_m(ENUM, "uniq")
def _uniq(ip, recv, args, block, node):
    out: list[Any] = []
    seen: list[Any] = []
    for x in list(items(ip, recv, node)):
        key = _yield(ip, block, x, node) if block is not None else x
        if not any(rb_eq(key, s) for s in seen):
            seen.append(key)
            out.append(x)
    return out


@_m(ENUM, "zip")
def _zip(ip, recv, args, block, node):
    values = items(ip, recv, node)
    others = [items(ip, a, node) for a in args]
    return [[x] + [o[i] if i < len(o) else None for o in others] for i, x in enumerate(values)]


@_m(ENUM, "cycle")
def _cycle(ip, recv, args, block, node):
    values = list(items(ip, recv, node))
    rounds = need_int(args[0]) if args and args[0] is not None else None
    n = 0
    while values and (rounds is None or n < rounds):
        for x in values:
            _yield(ip, block, x, node)
        n += 1
        ip.tick(node)
    return None


@_m(ENUM, "lazy")
def _lazy(ip, recv, args, block, node):
    return list(items(ip, recv, node))


@_m(ENUM, "chunk_while", "slice_when")
def _chunk_while(ip, recv, args, block, node):
    raise err("NotImplementedError", "chunk_while/slice_when are not supported")


@_m(ARRAY, "[]", "slice")
def _ary_index(ip, recv, args, block, node):
    arity(args, 1, 2)
    return _slice(recv, args)


@_m(ARRAY, "at")
def _ary_at(ip, recv, args, block, node):
    arity(args, 1)
    return _slice(recv, [need_int(args[0])])


@_m(ARRAY, "dig")
def _ary_dig(ip, recv, args, block, node):
    return _dig(ip, recv, args, node)


def _dig(ip: Interpreter, value: Any, keys: list[Any], node: Node | None) -> Any:
    for key in keys:
        if value is None:
            return None
        value = dispatch(ip, value, "[]", [key], None, node)
    return value


@_m(ARRAY, "[]=")
def _ary_set(ip, recv, args, block, node):
    arity(args, 2, 3)
    value = args[-1]
    if len(args) == 3 or isinstance(args[0], RRange):
        if isinstance(args[0], RRange):
            r = args[0]
            start = need_int(r.begin or 0)
            stop = len(recv) if r.end is None else need_int(r.end) + (0 if r.exclusive else 1)
        else:
            start = need_int(args[0])
            stop = start + need_int(args[1])
        if start < 0:
            start += len(recv)
        if start < 0 or start > ip.limits.max_items:
            raise err("IndexError", "index out of range")
        recv[start:stop] = value if isinstance(value, list) else [value]
        return value
    index = need_int(args[0])
    if index < 0:
        index += len(recv)
        if index < 0:
            raise err("IndexError", f"index {args[0]} too small for array")
    ip.check_size(index + 1, node)
    while len(recv) <= index:
        recv.append(None)
    recv[index] = value
    return value


@_m(ARRAY, "<<", "push", "append")
def _ary_push(ip, recv, args, block, node):
    ip.check_size(len(recv) + len(args), node)
    recv.extend(args)
    return recv


@_m(ARRAY, "unshift", "prepend")
def _ary_unshift(ip, recv, args, block, node):
    ip.check_size(len(recv) + len(args), node)
    recv[0:0] = args
    return recv


@_m(ARRAY, "insert")
def _ary_insert(ip, recv, args, block, node):
    index = need_int(args[0])
    ip.check_size(len(recv) + len(args), node)
    if index < 0:
        index += len(recv) + 1
    recv[index:index] = args[1:]
    return recv


@_m(ARRAY, "pop")
def _ary_pop(ip, recv, args, block, node):
    return recv.pop() if recv else None


@_m(ARRAY, "shift")
def _ary_shift(ip, recv, args, block, node):
    return recv.pop(0) if recv else None


@_m(ARRAY, "concat")
def _ary_concat(ip, recv, args, block, node):
    for a in args:
        ip.check_size(len(recv) + len(a), node)
        recv.extend(need_list(a))
    return recv


def need_list(value: Any) -> list[Any]:
    if isinstance(value, list):
        return value
    raise err("TypeError", f"no implicit conversion of {class_name(value)} into Array")


@_m(ARRAY, "+")
def _ary_add(ip, recv, args, block, node):
    arity(args, 1)
    other = need_list(args[0])
    ip.check_size(len(recv) + len(other), node)
    return recv + other


@_m(ARRAY, "-", "difference")
def _ary_sub(ip, recv, args, block, node):
    others = [need_list(a) for a in args]
    return [x for x in recv if not any(any(rb_eq(x, y) for y in o) for o in others)]


@_m(ARRAY, "*")
def _ary_mul(ip, recv, args, block, node):
    arity(args, 1)
    if isinstance(args[0], str):
        return _ary_join(ip, recv, args, block, node)
    n = need_int(args[0])
    if n < 0:
        raise err("ArgumentError", "negative argument")
    ip.check_size(len(recv) * n, node)
    return recv * n


@_m(ARRAY, "&", "intersection")
def _ary_and(ip, recv, args, block, node):
    other = need_list(args[0])
    return _uniq(ip, [x for x in recv if any(rb_eq(x, y) for y in other)], [], None, node)


@_m(ARRAY, "|", "union")
def _ary_or(ip, recv, args, block, node):
    joined = list(recv)
    for a in args:
        joined.extend(need_list(a))
    ip.check_size(len(joined), node)
    return _uniq(ip, joined, [], None, node)


@_m(ARRAY, "==", "eql?", "===")
def _ary_eq(ip, recv, args, block, node):
    arity(args, 1)
    return rb_eq(recv, args[0])


@_m(ARRAY, "<=>")
def _ary_cmp(ip, recv, args, block, node):
    return rb_cmp(recv, args[0])


@_m(ARRAY, "empty?")
def _ary_empty(ip, recv, args, block, node):
    return not recv


@_m(ARRAY, "any?")
def _ary_any(ip, recv, args, block, node):
    return _any(ip, recv, args, block, node)


@_m(ARRAY, "join")
def _ary_join(ip, recv, args, block, node):
    sep = need_str(args[0]) if args and args[0] is not None else ""
    parts: list[str] = []
    total = 0

    def add(value: Any, depth: int) -> None:
        nonlocal total
        if depth > 50:
            raise err("ArgumentError", "recursive array join")
        if isinstance(value, list):
            for v in value:
                add(v, depth + 1)
            return
        text = ip.to_s(value, node)
        total += len(text) + len(sep)
        if total > ip.limits.max_string:
            raise ip.limit(node, "a string that long")
        parts.append(text)

    for v in recv:
        add(v, 0)
    return sep.join(parts)


@_m(ARRAY, "flatten")
def _ary_flatten(ip, recv, args, block, node):
    level = need_int(args[0]) if args and args[0] is not None else -1
    out: list[Any] = []

    def add(values: list[Any], depth: int) -> None:
        if depth > 100:
            raise err("ArgumentError", "tried to flatten recursive array")
        for v in values:
            if isinstance(v, list) and (level < 0 or depth < level):
                add(v, depth + 1)
            else:
                out.append(v)
                if len(out) > ip.limits.max_items:
                    raise ip.limit(node, "a collection that large")

    add(recv, 0)
    return out


@_m(ARRAY, "compact")
def _ary_compact(ip, recv, args, block, node):
    return [x for x in recv if x is not None]


@_m(ARRAY, "reverse")
def _ary_reverse(ip, recv, args, block, node):
    return recv[::-1]


@_m(ARRAY, "rotate")
def _ary_rotate(ip, recv, args, block, node):
    if not recv:
        return []
    n = (need_int(args[0]) if args else 1) % len(recv)
    return recv[n:] + recv[:n]


@_m(ARRAY, "delete")
def _ary_delete(ip, recv, args, block, node):
    arity(args, 1)
    found = None
    i = 0
    while i < len(recv):
        if rb_eq(recv[i], args[0]):
            found = recv.pop(i)
        else:
            i += 1
    return found


@_m(ARRAY, "delete_at")
def _ary_delete_at(ip, recv, args, block, node):
    i = need_int(args[0])
    if -len(recv) <= i < len(recv):
        return recv.pop(i)
    return None


@_m(ARRAY, "delete_if", "reject!")
def _ary_delete_if(ip, recv, args, block, node):
    recv[:] = [x for x in list(recv) if not truthy(_yield(ip, block, x, node))]
    return recv


@_m(ARRAY, "keep_if", "select!", "filter!")
def _ary_keep_if(ip, recv, args, block, node):
    recv[:] = [x for x in list(recv) if truthy(_yield(ip, block, x, node))]
    return recv


@_m(ARRAY, "map!", "collect!")
def _ary_map_bang(ip, recv, args, block, node):
    recv[:] = [_yield(ip, block, x, node) for x in list(recv)]
    return recv


@_m(ARRAY, "clear")
def _ary_clear(ip, recv, args, block, node):
    recv.clear()
    return recv


@_m(ARRAY, "dup", "clone", "to_ary")
def _ary_dup(ip, recv, args, block, node):
    return list(recv)


@_m(ARRAY, "values_at")
def _ary_values_at(ip, recv, args, block, node):
    return [_slice(recv, [need_int(a)]) for a in args]


@_m(ARRAY, "fetch")
def _ary_fetch(ip, recv, args, block, node):
    arity(args, 1, 2)
    i = need_int(args[0])
    if -len(recv) <= i < len(recv):
        return recv[i]
    if block is not None:
        return call(ip, block, args[0], node=node)
    if len(args) > 1:
        return args[1]
    raise err("IndexError", f"index {i} outside of array bounds")


@_m(ARRAY, "assoc")
def _ary_assoc(ip, recv, args, block, node):
    return next((x for x in recv if isinstance(x, list) and x and rb_eq(x[0], args[0])), None)


@_m(ARRAY, "transpose")
def _ary_transpose(ip, recv, args, block, node):
    rows = [need_list(r) for r in recv]
    if rows and any(len(r) != len(rows[0]) for r in rows):
        raise err("IndexError", "element size differs")
    return [list(col) for col in zip(*rows, strict=False)]


@_m(ARRAY, "product")
def _ary_product(ip, recv, args, block, node):
    out: list[list[Any]] = [[x] for x in recv]
    for other in args:
        other = need_list(other)
        ip.check_size(len(out) * len(other), node)
        out = [row + [y] for row in out for y in other]
    return out


@_m(ARRAY, "sample", "shuffle", "shuffle!")
def _ary_random(ip, recv, args, block, node):
    raise ip.unsupported(node, "Array#sample/shuffle", "random values would change between runs") if node else err("NotImplementedError", "random")


@_m(ARRAY, "fill")
def _ary_fill(ip, recv, args, block, node):
    arity(args, 1)
    recv[:] = [args[0]] * len(recv)
    return recv


@_m(ARRAY, "sort!", "sort_by!", "uniq!", "flatten!", "compact!", "reverse!")
def _ary_bang(ip, recv, args, block, node):
    raise AssertionError  # replaced below


for _bang in ("sort!", "sort_by!", "uniq!", "flatten!", "compact!", "reverse!"):

    def _in_place(ip, recv, args, block, node, _base=_bang[:-1]):
        result = dispatch(ip, recv, _base, args, block, node)
        changed = len(result) != len(recv) or any(a is not b for a, b in zip(result, recv, strict=False))
        recv[:] = result
        return recv if changed or _base in ("sort", "sort_by", "reverse") else None

    ARRAY[_bang] = _in_place


@_m(ARRAY, "to_s", "inspect")
def _ary_to_s(ip, recv, args, block, node):
    return ip.check_string(inspect(recv), node)


@_m(ARRAY, "pack")
def _ary_pack(ip, recv, args, block, node):
    raise err("NotImplementedError", "Array#pack is not supported")


# -- Hash -------------------------------------------------------------------------------


class DefaultHash(dict):  # type: ignore[type-arg]
    """`Hash.new(default)` / `Hash.new { |h, k| ... }`."""

    default: Any = None
    default_proc: Proc | None = None


def _hash_key(recv: dict[Any, Any], key: Any) -> bool:
    try:
        return key in recv
    except TypeError:
        return False


def _hash_get(ip: Interpreter, recv: dict[Any, Any], key: Any, node: Node | None) -> Any:
    try:
        if key in recv:
            return recv[key]
    except TypeError:
        return None
    if isinstance(recv, DefaultHash):
        if recv.default_proc is not None:
            return call(ip, recv.default_proc, recv, key, node=node)
        return recv.default
    return None


@_m(HASH, "[]")
def _hash_index(ip, recv, args, block, node):
    arity(args, 1)
    return _hash_get(ip, recv, args[0], node)


@_m(HASH, "[]=", "store")
def _hash_set(ip, recv, args, block, node):
    arity(args, 2)
    ip.check_size(len(recv) + 1, node)
    try:
        recv[args[0]] = args[1]
    except TypeError:
        raise err("TypeError", f"{class_name(args[0])} cannot be a hash key here") from None
    return args[1]


@_m(HASH, "fetch")
def _hash_fetch(ip, recv, args, block, node):
    arity(args, 1, 2)
    if _hash_key(recv, args[0]):
        return recv[args[0]]
    if block is not None:
        return call(ip, block, args[0], node=node)
    if len(args) > 1:
        return args[1]
    raise err("KeyError", f"key not found: {inspect(args[0])}")


@_m(HASH, "dig")
def _hash_dig(ip, recv, args, block, node):
    return _dig(ip, recv, args, node)


@_m(HASH, "key?", "has_key?", "include?", "member?")
def _hash_has_key(ip, recv, args, block, node):
    arity(args, 1)
    return _hash_key(recv, args[0])


@_m(HASH, "value?", "has_value?")
def _hash_has_value(ip, recv, args, block, node):
    arity(args, 1)
    return any(rb_eq(v, args[0]) for v in recv.values())


@_m(HASH, "key")
def _hash_key_of(ip, recv, args, block, node):
    arity(args, 1)
    return next((k for k, v in recv.items() if rb_eq(v, args[0])), None)


@_m(HASH, "keys")
def _hash_keys(ip, recv, args, block, node):
    return list(recv.keys())


@_m(HASH, "values")
def _hash_values(ip, recv, args, block, node):
    return list(recv.values())


@_m(HASH, "values_at", "fetch_values")
def _hash_values_at(ip, recv, args, block, node):
    return [_hash_get(ip, recv, k, node) for k in args]


@_m(HASH, "length", "size", "count")
def _hash_size(ip, recv, args, block, node):
    if args or block is not None:
        return _count(ip, recv, args, block, node)
    return len(recv)


@_m(HASH, "empty?")
def _hash_empty(ip, recv, args, block, node):
    return not recv


@_m(HASH, "merge", "update", "merge!")
def _hash_merge(ip, recv, args, block, node):
    raise AssertionError  # replaced below


def _merger(in_place: bool) -> Fn:
    def fn(ip, recv, args, block, node):
        out = recv if in_place else _hash_copy(recv)
        for other in args:
            if other is None:
                continue
            if not isinstance(other, dict):
                raise err("TypeError", f"no implicit conversion of {class_name(other)} into Hash")
            for k, v in list(other.items()):
                if block is not None and k in out:
                    out[k] = call(ip, block, k, out[k], v, node=node)
                else:
                    out[k] = v
            ip.check_size(len(out), node)
        return out

    return fn


def _hash_copy(recv: dict[Any, Any]) -> dict[Any, Any]:
    if isinstance(recv, DefaultHash):
        copy = DefaultHash(recv)
        copy.default = recv.default
        copy.default_proc = recv.default_proc
        return copy
    return dict(recv)


HASH["merge"] = _merger(False)
HASH["merge!"] = HASH["update"] = _merger(True)


@_m(HASH, "dup", "clone", "to_hash")
def _hash_dup(ip, recv, args, block, node):
    return _hash_copy(recv)


@_m(HASH, "to_h")
def _hash_to_h(ip, recv, args, block, node):
    if block is None:
        return dict(recv)
    return _to_h(ip, recv, args, block, node)


@_m(HASH, "delete")
def _hash_delete(ip, recv, args, block, node):
    arity(args, 1)
    if _hash_key(recv, args[0]):
        return recv.pop(args[0])
    return call(ip, block, args[0], node=node) if block is not None else None


@_m(HASH, "delete_if", "reject!")
def _hash_delete_if(ip, recv, args, block, node):
    for k, v in list(recv.items()):
        if truthy(call(ip, block, k, v, node=node)):
            del recv[k]
    return recv


@_m(HASH, "keep_if", "select!", "filter!")
def _hash_keep_if(ip, recv, args, block, node):
    for k, v in list(recv.items()):
        if not truthy(call(ip, block, k, v, node=node)):
            del recv[k]
    return recv


@_m(HASH, "transform_values")
def _hash_transform_values(ip, recv, args, block, node):
    return {k: call(ip, block, v, node=node) for k, v in list(recv.items())}


@_m(HASH, "transform_keys")
def _hash_transform_keys(ip, recv, args, block, node):
    if args and isinstance(args[0], dict):
        return {args[0].get(k, k): v for k, v in recv.items()}
    return {call(ip, block, k, node=node): v for k, v in list(recv.items())}


@_m(HASH, "invert")
def _hash_invert(ip, recv, args, block, node):
    return {v: k for k, v in recv.items()}


@_m(HASH, "compact")
def _hash_compact(ip, recv, args, block, node):
    return {k: v for k, v in recv.items() if v is not None}


@_m(HASH, "slice")
def _hash_slice(ip, recv, args, block, node):
    return {k: recv[k] for k in args if _hash_key(recv, k)}


@_m(HASH, "except")
def _hash_except(ip, recv, args, block, node):
    return {k: v for k, v in recv.items() if not any(rb_eq(k, a) for a in args)}


@_m(HASH, "default")
def _hash_default(ip, recv, args, block, node):
    return recv.default if isinstance(recv, DefaultHash) else None


@_m(HASH, "clear")
def _hash_clear(ip, recv, args, block, node):
    recv.clear()
    return recv


@_m(HASH, "each_key")
def _hash_each_key(ip, recv, args, block, node):
    for k in list(recv.keys()):
        call(ip, block, k, node=node)
    return recv


@_m(HASH, "each_value")
def _hash_each_value(ip, recv, args, block, node):
    for v in list(recv.values()):
        call(ip, block, v, node=node)
    return recv


@_m(HASH, "any?")
def _hash_any(ip, recv, args, block, node):
    if block is None and not args:
        return bool(recv)
    return _any(ip, recv, args, block, node)


@_m(HASH, "==", "eql?")
def _hash_eq(ip, recv, args, block, node):
    arity(args, 1)
    return rb_eq(recv, args[0])


@_m(HASH, "to_s", "inspect")
def _hash_to_s(ip, recv, args, block, node):
    return ip.check_string(inspect(recv), node)


@_m(HASH, "to_a")
def _hash_to_a(ip, recv, args, block, node):
    return [[k, v] for k, v in recv.items()]


@_m(HASH, "sum")
def _hash_sum(ip, recv, args, block, node):
    return _sum(ip, recv, args, block, node)


# -- Range ------------------------------------------------------------------------------


def _cover(r: RRange, value: Any) -> bool:
    try:
        if r.begin is not None:
            c = rb_cmp(r.begin, value)
            if c is None or c > 0:
                return False
        if r.end is not None:
            c = rb_cmp(value, r.end)
            if c is None or c > 0 or (r.exclusive and c == 0):
                return False
        return True
    except RubyError:
        return False


@_m(RANGE, "===", "cover?", "include?", "member?")
def _range_cover(ip, recv, args, block, node):
    arity(args, 1)
    return _cover(recv, args[0])


@_m(RANGE, "begin", "min_value")
def _range_begin(ip, recv, args, block, node):
    return recv.begin


@_m(RANGE, "end")
def _range_end(ip, recv, args, block, node):
    return recv.end


@_m(RANGE, "exclude_end?")
def _range_exclusive(ip, recv, args, block, node):
    return recv.exclusive


@_m(RANGE, "each")
def _range_each(ip, recv, args, block, node):
    if block is None:
        return Enumerator(recv, "each")
    if isinstance(recv.begin, int) and not isinstance(recv.begin, bool) and (
        recv.end is None or isinstance(recv.end, int | float)
    ):
        i = recv.begin
        while recv.end is None or (i < recv.end if recv.exclusive else i <= recv.end):
            call(ip, block, i, node=node)
            i += 1
        return recv
    for item in _range_list(ip, recv):
        call(ip, block, item, node=node)
    return recv


@_m(RANGE, "step", "%")
def _range_step(ip, recv, args, block, node):
    arity(args, 1)
    by = _num(args[0], "step")
    if by <= 0:
        raise err("ArgumentError", "step can't be negative or 0")
    values = []
    i = recv.begin
    while recv.end is None or (i < recv.end if recv.exclusive else i <= recv.end):
        values.append(i)
        ip.check_size(len(values), node)
        i += by
    if block is None:
        return Enumerator(values, "each")
    for v in values:
        call(ip, block, v, node=node)
    return recv


@_m(RANGE, "sum")
def _range_sum(ip, recv, args, block, node):
    if block is None and not args and isinstance(recv.begin, int) and isinstance(recv.end, int):
        last = recv.end - (1 if recv.exclusive else 0)
        return 0 if last < recv.begin else (recv.begin + last) * (last - recv.begin + 1) // 2
    return _sum(ip, recv, args, block, node)


@_m(RANGE, "to_s")
def _range_to_s(ip, recv, args, block, node):
    return f"{to_s(recv.begin)}{'...' if recv.exclusive else '..'}{to_s(recv.end)}"


@_m(RANGE, "==", "eql?")
def _range_eq(ip, recv, args, block, node):
    return recv == args[0]


# -- Proc, Regexp, MatchData, exceptions, Enumerator -------------------------------------


@_m(PROC, "call", "()", "yield", "[]", "===")
def _proc_call(ip, recv, args, block, node):
    return ip.call_block(recv, args, node)


@_m(PROC, "to_proc")
def _proc_to_proc(ip, recv, args, block, node):
    return recv


@_m(PROC, "lambda?")
def _proc_lambda(ip, recv, args, block, node):
    return recv.is_lambda


@_m(PROC, "arity")
def _proc_arity(ip, recv, args, block, node):
    if recv.params is None:
        return 0 if recv.native is None else -1
    kids = recv.params.kids
    required = sum(1 for k in kids if k.type in ("identifier", "destructured_parameter"))
    if any(k.type in ("splat_parameter", "optional_parameter") for k in kids):
        return -required - 1
    return required


@_m(REGEXP, "match")
def _rx_match(ip, recv, args, block, node):
    arity(args, 1, 2)
    if args[0] is None:
        return None
    m = recv.compiled.search(_subject(need_str(to_s(args[0]) if isinstance(args[0], Symbol) else args[0])))
    _set_match(ip, m)
    return RMatch(m) if m else None


@_m(REGEXP, "match?")
def _rx_match_p(ip, recv, args, block, node):
    arity(args, 1, 2)
    if args[0] is None:
        return False
    return recv.compiled.search(_subject(to_s(args[0]))) is not None


@_m(REGEXP, "=~")
def _rx_match_op(ip, recv, args, block, node):
    arity(args, 1)
    if args[0] is None:
        return None
    m = recv.compiled.search(_subject(need_str(args[0])))
    _set_match(ip, m)
    return m.start() if m else None


@_m(REGEXP, "===")
def _rx_case(ip, recv, args, block, node):
    arity(args, 1)
    value = args[0]
    if isinstance(value, Symbol):
        value = value.name
    return isinstance(value, str) and recv.compiled.search(_subject(value)) is not None


@_m(REGEXP, "source")
def _rx_source(ip, recv, args, block, node):
    return recv.source


@_m(MATCH, "[]")
def _md_index(ip, recv, args, block, node):
    arity(args, 1)
    key = args[0]
    try:
        return recv.match.group(key.name if isinstance(key, Symbol) else key)
    except (IndexError, re.error):
        return None


@_m(MATCH, "captures")
def _md_captures(ip, recv, args, block, node):
    return list(recv.match.groups())


@_m(MATCH, "named_captures")
def _md_named(ip, recv, args, block, node):
    return dict(recv.match.groupdict())


@_m(MATCH, "to_a")
def _md_to_a(ip, recv, args, block, node):
    return [recv.match.group(0), *recv.match.groups()]


@_m(MATCH, "to_s")
def _md_to_s(ip, recv, args, block, node):
    return recv.match.group(0)


@_m(MATCH, "pre_match")
def _md_pre(ip, recv, args, block, node):
    return recv.match.string[: recv.match.start()]


@_m(MATCH, "post_match")
def _md_post(ip, recv, args, block, node):
    return recv.match.string[recv.match.end() :]


@_m(EXCEPTION, "message", "to_s", "full_message")
def _exc_message(ip, recv, args, block, node):
    return recv.message


@_m(EXCEPTION, "backtrace")
def _exc_backtrace(ip, recv, args, block, node):
    return []


@_m(EXCEPTION, "class")
def _exc_class(ip, recv, args, block, node):
    from vmctl.vagrantfile.host import class_object

    return class_object(recv.cls)


@_m(ENUM, "next")
def _enum_next(ip, recv, args, block, node):
    raise err("NotImplementedError", "external enumeration (Enumerator#next) is not supported")


ENUMERATOR = dict(ENUM)
for _table in (ARRAY, HASH, RANGE):
    for _name, _fn in ENUM.items():
        _table.setdefault(_name, _fn)

_TABLES: dict[type, dict[str, Fn]] = {
    str: STRING,
    Symbol: SYMBOL,
    bool: BOOL,
    int: {**NUMBER, **INTEGER},
    float: {**NUMBER, **FLOAT},
    list: ARRAY,
    dict: HASH,
    DefaultHash: HASH,
    RRange: RANGE,
    type(None): NIL,
    Proc: PROC,
    RRegexp: REGEXP,
    RMatch: MATCH,
    RException: EXCEPTION,
    Enumerator: ENUMERATOR,
}
