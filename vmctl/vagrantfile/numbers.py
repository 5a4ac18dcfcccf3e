"""Methods of Integer and Float, and the conversions Kernel#Integer/Float use."""

from __future__ import annotations

import math
import re
from typing import TYPE_CHECKING, Any

from vmctl.vagrantfile.builtins import (
    FLOAT,
    INTEGER,
    MAX_INT_BITS,
    NUMBER,
    Fn,
    _m,
    arity,
    call,
    check_int,
    describe,
    err,
    need_int,
)
from vmctl.vagrantfile.values import (
    Enumerator,
    class_name,
    format_float,
    inspect,
    rb_eq,
    to_s,
)

if TYPE_CHECKING:
    pass


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

