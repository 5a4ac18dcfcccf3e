"""Methods of Array, Hash and Range, and the Enumerable methods they share."""

from __future__ import annotations

import functools
import math
from typing import TYPE_CHECKING, Any

from vmctl.vagrantfile.builtins import (
    ARRAY,
    ENUM,
    HASH,
    RANGE,
    Fn,
    _cmp_key,
    _m,
    arity,
    call,
    describe,
    dispatch,
    err,
    must_cmp,
    need_int,
    need_list,
    need_str,
    rb_cmp,
)
from vmctl.vagrantfile.values import (
    Enumerator,
    Proc,
    RRange,
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

from vmctl.vagrantfile.numbers import _num
from vmctl.vagrantfile.text import _slice, _str_succ

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

