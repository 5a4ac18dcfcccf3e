"""Ruby objects implemented in Python: modules and classes, `main`, $stdout, files opened for
reading, Gem::Version; and the class objects of the core types."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from vmctl.vagrantfile import builtins
from vmctl.vagrantfile.values import (
    EXCEPTION_CLASSES,
    Proc,
    RException,
    RRange,
    RubyError,
    Symbol,
    class_name,
    exception_is_a,
    inspect,
    to_s,
    truthy,
)

if TYPE_CHECKING:
    from vmctl.vagrantfile.interpreter import Interpreter
    from vmctl.vagrantfile.syntax import Node

err = builtins.err

MAX_FILE_BYTES = 1024 * 1024

# -- objects with their own methods ------------------------------------------------------


class RObject:
    """Base of values implemented in Python that answer Ruby method calls themselves."""

    ruby_class = "Object"

    def rb_send(self, ip: Interpreter, name: str, args: list[Any], block: Proc | None, node: Node | None) -> Any:
        fn = builtins.OBJECT.get(name)
        if fn is None:
            raise err("NoMethodError", f"undefined method `{name}' for {self.ruby_describe}")
        return fn(ip, self, args, block, node)

    @property
    def ruby_describe(self) -> str:
        return f"an instance of {self.ruby_class}"

    def ruby_to_s(self) -> str:
        return f"#<{self.ruby_class}>"


Method = Callable[["Interpreter", list[Any], "Proc | None", "Node | None"], Any]


class Module(RObject):
    """A Ruby module or class: functions, constants and names refused outright."""

    ruby_class = "Module"

    def __init__(
        self,
        name: str,
        functions: dict[str, Method] | None = None,
        constants: dict[str, Any] | None = None,
        refused: dict[str, str] | None = None,
    ) -> None:
        self.name = name
        self.functions = functions or {}
        self.constants = constants or {}
        self.refused = refused or {}  # method name -> why

    def rb_send(self, ip: Interpreter, name: str, args: list[Any], block: Proc | None, node: Node | None) -> Any:
        fn = self.functions.get(name)
        if fn is not None:
            return fn(ip, args, block, node)
        if name in ("name", "to_s", "inspect"):
            return self.name
        if name in ("==", "equal?", "eql?"):
            return args[0] is self if args else False
        if name == "respond_to?":
            return bool(args) and to_s(args[0]) in self.functions
        if name == "const_defined?":
            return bool(args) and to_s(args[0]) in self.constants
        return super().rb_send(ip, name, args, block, node)

    @property
    def ruby_describe(self) -> str:
        return self.name

    def ruby_to_s(self) -> str:
        return self.name


class RClass(Module):
    """A class: `x.is_a?(C)`, `C === x`, `C.new(...)`."""

    ruby_class = "Class"

    def __init__(
        self,
        name: str,
        test: Callable[[Any], bool],
        functions: dict[str, Method] | None = None,
        constants: dict[str, Any] | None = None,
    ) -> None:
        super().__init__(name, functions, constants)
        self.test = test

    def includes(self, value: Any) -> bool:
        return self.test(value)

    def rb_send(self, ip: Interpreter, name: str, args: list[Any], block: Proc | None, node: Node | None) -> Any:
        if name == "===":
            return bool(args) and self.includes(args[0])
        if name == "new" and name not in self.functions and self.name in EXCEPTION_CLASSES:
            return RException(self.name, to_s(args[0]) if args else self.name)
        if name == "exception" and self.name in EXCEPTION_CLASSES:
            return RException(self.name, to_s(args[0]) if args else self.name)
        return super().rb_send(ip, name, args, block, node)


class Main(RObject):
    """`self` at the top level."""

    ruby_class = "Object"

    def ruby_to_s(self) -> str:
        return "main"

    def rb_send(self, ip: Interpreter, name: str, args: list[Any], block: Proc | None, node: Node | None) -> Any:
        from vmctl.vagrantfile.host import KERNEL

        user = ip.methods.get(name)
        if user is not None:
            return ip.invoke(user, args, block, node)
        if name in KERNEL:
            return KERNEL[name](ip, args, block, node)
        return super().rb_send(ip, name, args, block, node)


class MethodRef(RObject):
    ruby_class = "Method"

    def __init__(self, name: str) -> None:
        self.name = name

    def to_proc(self, ip: Interpreter) -> Proc:
        def call_method(args: list[Any], block: Proc | None, where: Node | None) -> Any:
            return ip.main.rb_send(ip, self.name, list(args), block, where)

        return Proc(None, None, None, None, native=call_method)

    def rb_send(self, ip: Interpreter, name: str, args: list[Any], block: Proc | None, node: Node | None) -> Any:
        if name in ("call", "()", "[]", "==="):
            return ip.main.rb_send(ip, self.name, args, block, node)
        if name == "to_proc":
            return self.to_proc(ip)
        return super().rb_send(ip, name, args, block, node)


class Output(RObject):
    """$stdout / $stderr: what is written becomes a message."""

    ruby_class = "IO"

    def __init__(self, name: str) -> None:
        self.name = name

    def rb_send(self, ip: Interpreter, name: str, args: list[Any], block: Proc | None, node: Node | None) -> Any:
        from vmctl.vagrantfile.host import KERNEL

        if name in ("puts", "print", "write", "printf", "p", "<<"):
            fn = KERNEL["puts" if name in ("puts", "<<") else "print" if name == "write" else name]
            fn(ip, args, block, node)
            return self if name == "<<" else None
        if name in ("flush", "fsync", "sync=", "sync"):
            return True if name == "sync" else None
        if name in ("tty?", "isatty"):
            return False
        return super().rb_send(ip, name, args, block, node)


class ReadFile(RObject):
    """What `File.open(path)` (read-only) yields."""

    ruby_class = "File"

    def __init__(self, path: Path, text: str) -> None:
        self.path = path
        self.text = text

    def rb_send(self, ip: Interpreter, name: str, args: list[Any], block: Proc | None, node: Node | None) -> Any:
        if name == "read":
            return self.text
        if name in ("readlines", "each_line", "each"):
            lines = self.text.splitlines(keepends=True)
            if name == "readlines":
                return lines
            for line in lines:
                builtins.call(ip, block, line, node=node)
            return self
        if name in ("close", "flush"):
            return None
        if name == "path":
            return str(self.path)
        return super().rb_send(ip, name, args, block, node)


class GemVersion(RObject):
    ruby_class = "Gem::Version"

    def __init__(self, text: str) -> None:
        self.text = text.strip()
        self.segments = parse_version(self.text)

    def rb_cmp(self, other: Any) -> int | None:
        if isinstance(other, str):
            other = GemVersion(other)
        if not isinstance(other, GemVersion):
            return None
        return compare_versions(self.segments, other.segments)

    def rb_send(self, ip: Interpreter, name: str, args: list[Any], block: Proc | None, node: Node | None) -> Any:
        if name in ("<", ">", "<=", ">=", "==", "<=>", "!=", "eql?"):
            builtins.arity(args, 1)
            c = self.rb_cmp(args[0])
            if name == "<=>":
                return c
            if c is None:
                if name in ("==", "!=", "eql?"):
                    return name == "!="
                raise err("ArgumentError", f"comparison of Gem::Version with {builtins.describe(args[0])} failed")
            return {"<": c < 0, ">": c > 0, "<=": c <= 0, ">=": c >= 0, "==": c == 0, "eql?": c == 0, "!=": c != 0}[name]
        if name in ("to_s", "version"):
            return self.text
        if name == "segments":
            return list(self.segments)
        if name == "prerelease?":
            return any(isinstance(s, str) for s in self.segments)
        if name == "release":
            return GemVersion(".".join(str(s) for s in self.segments if isinstance(s, int)))
        if name == "bump":
            nums = [s for s in self.segments if isinstance(s, int)]
            nums = nums[:-1] if len(nums) > 1 else nums
            nums[-1] += 1
            return GemVersion(".".join(map(str, nums)))
        return super().rb_send(ip, name, args, block, node)

    def ruby_to_s(self) -> str:
        return self.text


def parse_version(text: str) -> list[int | str]:
    segments: list[int | str] = []
    import re

    if not re.fullmatch(r"[0-9]+(\.[0-9a-zA-Z]+)*(-[0-9A-Za-z.-]+)?", text.strip()):
        raise err("ArgumentError", f"Malformed version number string {text}")
    for part in re.findall(r"[0-9]+|[a-zA-Z]+", text.replace("-", ".pre.")):
        segments.append(int(part) if part.isdigit() else part)
    return segments


def compare_versions(a: list[int | str], b: list[int | str]) -> int:
    def trim(v: list[int | str]) -> list[int | str]:
        v = list(v)
        while v and v[-1] == 0:
            v.pop()
        return v

    a, b = trim(a), trim(b)
    for x, y in zip(a, b, strict=False):
        if x == y:
            continue
        if isinstance(x, str) and isinstance(y, int):
            return -1
        if isinstance(x, int) and isinstance(y, str):
            return 1
        return -1 if x < y else 1  # type: ignore[operator]
    if len(a) == len(b):
        return 0
    longer, sign = (a, 1) if len(a) > len(b) else (b, -1)
    extra = longer[min(len(a), len(b))]
    return -sign if isinstance(extra, str) else sign


def requirement_satisfied(requirement: str, version: str) -> bool:
    """Gem::Requirement semantics: `>= 1.6`, `~> 2.2`, `< 3, >= 2`, `2.3.4`."""
    import re

    have = parse_version(version)
    for part in requirement.split(","):
        part = part.strip()
        if not part:
            continue
        m = re.fullmatch(r"(~>|>=|<=|!=|=|>|<)?\s*(\S+)", part)
        if m is None:
            raise err("ArgumentError", f"Illformed requirement {inspect(part)}")
        op, text = m.group(1) or "=", m.group(2)
        want = parse_version(text)
        c = compare_versions(have, want)
        if op == "~>":
            nums = [s for s in want if isinstance(s, int)]
            upper = nums[:-1] if len(nums) > 1 else nums
            upper = [*upper[:-1], upper[-1] + 1]
            ok = c >= 0 and compare_versions(have, list(upper)) < 0
        else:
            ok = {"=": c == 0, "!=": c != 0, ">": c > 0, "<": c < 0, ">=": c >= 0, "<=": c <= 0}[op]
        if not ok:
            return False
    return True


# -- classes ----------------------------------------------------------------------------


def _is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


_CLASS_TESTS: dict[str, Callable[[Any], bool]] = {
    "Object": lambda v: True,
    "BasicObject": lambda v: True,
    "Kernel": lambda v: True,
    "Comparable": lambda v: isinstance(v, int | float | str) and not isinstance(v, bool),
    "Enumerable": lambda v: isinstance(v, list | dict | RRange),
    "Integer": _is_int,
    "Fixnum": _is_int,
    "Bignum": _is_int,
    "Float": lambda v: isinstance(v, float),
    "Numeric": lambda v: isinstance(v, int | float) and not isinstance(v, bool),
    "String": lambda v: isinstance(v, str),
    "Symbol": lambda v: isinstance(v, Symbol),
    "Array": lambda v: isinstance(v, list),
    "Hash": lambda v: isinstance(v, dict),
    "Range": lambda v: isinstance(v, RRange),
    "Proc": lambda v: isinstance(v, Proc),
    "NilClass": lambda v: v is None,
    "TrueClass": lambda v: v is True,
    "FalseClass": lambda v: v is False,
    "Regexp": lambda v: class_name(v) == "Regexp",
    "MatchData": lambda v: class_name(v) == "MatchData",
    "Enumerator": lambda v: class_name(v) == "Enumerator",
}

_classes: dict[str, RClass] = {}


def class_object(name: str) -> RClass:
    cls = _classes.get(name)
    if cls is None:
        if name in EXCEPTION_CLASSES:
            def test(v: Any, _name: str = name) -> bool:
                return isinstance(v, RException) and exception_is_a(v.cls, _name)
        else:
            test = _CLASS_TESTS.get(name, lambda v, _name=name: class_name(v) == _name)
        cls = RClass(name, test, _CLASS_FUNCTIONS.get(name))
        _classes[name] = cls
    return cls


def _hash_new(ip: Interpreter, args: list[Any], block: Proc | None, node: Node | None) -> Any:
    h = builtins.DefaultHash()
    h.default = args[0] if args else None
    h.default_proc = block
    return h


def _array_new(ip: Interpreter, args: list[Any], block: Proc | None, node: Node | None) -> Any:
    if not args:
        return []
    if isinstance(args[0], list):
        return list(args[0])
    n = builtins.need_int(args[0])
    if n < 0:
        raise err("ArgumentError", "negative array size")
    ip.check_size(n, node)
    if block is not None:
        return [ip.call_block(block, [i], node) for i in range(n)]
    return [args[1] if len(args) > 1 else None] * n


def _gem_version_new(ip: Interpreter, args: list[Any], block: Proc | None, node: Node | None) -> Any:
    builtins.arity(args, 1)
    return GemVersion(to_s(args[0]))


def _gem_version_correct(ip: Interpreter, args: list[Any], block: Proc | None, node: Node | None) -> Any:
    try:
        parse_version(to_s(args[0]))
        return True
    except RubyError:
        return False


_CLASS_FUNCTIONS: dict[str, dict[str, Method]] = {
    "Hash": {"new": _hash_new, "[]": lambda ip, a, b, n: dict(builtins.items(ip, a[0], n) and
                                                            builtins.ENUM["to_h"](ip, a[0], [], None, n))},
    "Array": {"new": _array_new, "[]": lambda ip, a, b, n: list(a)},
    "String": {"new": lambda ip, a, b, n: builtins.need_str(a[0]) if a else ""},
    "Proc": {"new": lambda ip, a, b, n: b},
    "Regexp": {
        "new": lambda ip, a, b, n: builtins.make_regexp(ip, to_s(a[0]), "i" if a[1:] and truthy(a[1]) else "", n),
        "escape": lambda ip, a, b, n: __import__("re").escape(to_s(a[0])),
        "union": lambda ip, a, b, n: builtins.make_regexp(
            ip, "|".join(__import__("re").escape(to_s(x)) for x in builtins.splat(a[0] if len(a) == 1 else a)), "", n),
    },
}
