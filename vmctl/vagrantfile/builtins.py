"""Methods of Ruby's core values: String, Symbol, Integer, Float, Array, Hash, Range, nil, ...

Every method is `fn(ip, recv, args, block, node)`, registered by name in the table of its
class. Anything that builds a string or a collection checks the size bounds first, so
`"x" * 10**12` is an error, not an out-of-memory.
"""

from __future__ import annotations

import functools
import math
import re
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


def need_list(value: Any) -> list[Any]:
    if isinstance(value, list):
        return value
    raise err("TypeError", f"no implicit conversion of {class_name(value)} into Array")


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
        from vmctl.vagrantfile.collections import _range_list

        return _range_list(None, value)
    return [value]


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
    from vmctl.vagrantfile.objects import class_object

    return class_object(class_name(recv))


@_m(OBJECT, "is_a?", "kind_of?", "instance_of?")
def _obj_is_a(ip, recv, args, block, node):
    from vmctl.vagrantfile.objects import RClass

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
    from vmctl.vagrantfile.inputs import json_generate

    return json_generate(ip, recv, pretty=False, node=node)


@_m(OBJECT, "to_yaml")
def _obj_to_yaml(ip, recv, args, block, node):
    from vmctl.vagrantfile.inputs import yaml_dump

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
    from vmctl.vagrantfile.objects import class_object

    return class_object(recv.cls)



# The method tables of the other classes live in their own modules; importing them
# registers their methods (they import the tables and helpers above).
from vmctl.vagrantfile.collections import DefaultHash, items, iterate  # noqa: E402,F401
from vmctl.vagrantfile.numbers import _kernel_integer, _to_float, _to_integer  # noqa: E402,F401
from vmctl.vagrantfile.text import (  # noqa: E402,F401
    _set_match,
    _subject,
    assemble_heredoc,
    make_regexp,
    rb_format,
    to_regexp,
    unescape,
    unescape_single,
)


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
