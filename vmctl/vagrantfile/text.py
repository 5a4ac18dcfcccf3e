"""Methods of String and Symbol; string literals, regular expressions and `format`."""

from __future__ import annotations

import re
import shlex
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from vmctl.vagrantfile.builtins import (
    MAX_REGEX_SUBJECT,
    STRING,
    SYMBOL,
    Fn,
    _m,
    arity,
    call,
    err,
    need_int,
    need_str,
    rb_cmp,
)
from vmctl.vagrantfile.values import (
    Enumerator,
    Proc,
    RMatch,
    RRange,
    RRegexp,
    Symbol,
    inspect,
    rb_eq,
)

if TYPE_CHECKING:
    from vmctl.vagrantfile.interpreter import Interpreter
    from vmctl.vagrantfile.syntax import Node

from vmctl.vagrantfile.numbers import _to_float, _to_integer

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
    r"%(?P<flags>[-+ 0#]*)(?:<(?P<name>\w+)>|\{(?P<brace>\w+)\}(?P<end>))?(?(end)|(?P<flags2>[-+ 0#]*)"
    r"(?P<width>\*|\d+)?(?:\.(?P<prec>\d+))?(?P<conv>[sdifgeExXobBcpu%])?)"
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
        result = format(number, f"{py_flags}{width if width else ''}{spec}")
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
    from vmctl.vagrantfile.collections import _range_list

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

