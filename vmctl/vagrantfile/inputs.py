"""What a Vagrantfile may read from the host: files and folders (relative paths resolve
against the project folder), the environment (writes go to an overlay), YAML and JSON."""

from __future__ import annotations

import json
import os
import posixpath
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

from vmctl.vagrantfile import builtins, recording
from vmctl.vagrantfile.objects import MAX_FILE_BYTES, Method, ReadFile, RObject
from vmctl.vagrantfile.values import (
    Proc,
    RubyError,
    Symbol,
    class_name,
    inspect,
    to_json_value,
    to_s,
    truthy,
)

if TYPE_CHECKING:
    from vmctl.vagrantfile.interpreter import Interpreter
    from vmctl.vagrantfile.syntax import Node

err = builtins.err


def display_path(ip: Interpreter, path: Path) -> str:
    try:
        return str(path.relative_to(ip.project_dir))
    except ValueError:
        return str(path)


def expand_path(ip: Interpreter, text: str, base: str | None = None) -> str:
    if text.startswith("~"):
        home = home_dir(ip)
        text = home + text[1:] if text == "~" or text.startswith("~/") else text
    if not text.startswith("/"):
        if base is not None:
            base = expand_path(ip, base)
        text = posixpath.join(base if base is not None else str(ip.cwd), text)
    return posixpath.normpath(text) if text not in ("", "/") else "/"


def home_dir(ip: Interpreter) -> str:
    home = env_get(ip, "HOME")
    return home if home else str(Path.home())


def resolve_local(ip: Interpreter, text: str, node: Node | None) -> Path:
    """A path as a Vagrantfile names it: relative paths against the project folder."""
    if "\0" in text:
        raise err("ArgumentError", "string contains null byte")
    if text.startswith("~"):
        return Path(expand_path(ip, text))
    path = Path(text)
    if not path.is_absolute():
        path = ip.project_dir / path
    return Path(posixpath.normpath(str(path)))


# -- the read policy ------------------------------------------------------------------------
# A Vagrantfile from a cloned repository is a stranger's program: what it reads can leave
# the computer (in a box_url fetched during `up`, a provisioner's text, a log). So it reads
# what real Vagrantfiles read: files in the project's folder (config.rb, YAML and JSON
# beside the Vagrantfile, scripts), a box's own folder while its Vagrantfile runs, and
# public keys (~/.ssh/*.pub). Anything else needs the user's word: VMCTL_READ_PATHS, a
# list of files or folders separated by ":". /proc, /sys and /dev are never files. The
# rule applies to where a path really leads (symbolic links resolved), so a link in the
# project to ~/.ssh/id_ed25519 is refused too.

READ_PATHS_VARIABLE = "VMCTL_READ_PATHS"
_NEVER = ("/proc", "/sys", "/dev")


def read_roots(ip: Interpreter) -> list[str]:
    """The real paths a Vagrantfile may read below (the project, boxes, the user's list)."""
    roots = [os.path.realpath(ip.project_dir)]
    roots += [os.path.realpath(folder) for folder in ip.box_dirs]
    extra = ip.env.get(READ_PATHS_VARIABLE, "")
    roots += [os.path.realpath(os.path.expanduser(p)) for p in extra.split(":") if p.strip()]
    return roots


def _inside(real: str, root: str) -> bool:
    return real == root or real.startswith(root.rstrip("/") + "/")


def _public_key(real: str) -> bool:
    ssh_dir = os.path.realpath(os.path.join(str(Path.home()), ".ssh"))
    return os.path.dirname(real) == ssh_dir and real.endswith(".pub")


def read_refusal(ip: Interpreter, path: Path, *, listing: bool = False) -> str | None:
    """Why the read policy refuses to read (or, with LISTING, list) PATH, or None."""
    real = os.path.realpath(path)
    if any(_inside(real, never) for never in _NEVER):
        return f"{real} is not a file a Vagrantfile may read"
    if any(_inside(real, root) for root in read_roots(ip)):
        return None
    ssh_dir = os.path.realpath(os.path.join(str(Path.home()), ".ssh"))
    if (listing and real == ssh_dir) or (not listing and _public_key(real)):
        return None
    return (f"{real} lies outside the project folder, and vmctl lets a Vagrantfile read only "
            f"its project's files (and ~/.ssh/*.pub); to allow more, set {READ_PATHS_VARIABLE}=PATH[:PATH...]")


def check_read(ip: Interpreter, path: Path, shown: str, *, listing: bool = False) -> None:
    refusal = read_refusal(ip, path, listing=listing)
    if refusal is not None:
        raise err("Errno::EACCES", f"Permission denied by vmctl's read policy @ rb_sysopen - {shown}: {refusal}")


def read_bytes(ip: Interpreter, path: Path, shown: str) -> bytes:
    """A regular file's content, at most MAX_FILE_BYTES (devices and FIFOs would block),
    if the read policy allows it. The read is a probe of the recorder (what was read)."""
    try:
        check_read(ip, path, shown)
    except RubyError:
        ip.recorder.note("file", str(path), (os.path.realpath(path), "refused"))
        raise
    ip.recorder.note("file", str(path), recording.file_answer(path))
    try:
        if path.is_dir():
            raise err("Errno::EISDIR", f"Is a directory @ io_fread - {shown}")
        if not path.exists():
            raise err("Errno::ENOENT", f"No such file or directory @ rb_sysopen - {shown}")
        if not path.is_file():
            raise err("IOError", f"not a regular file - {shown}")
        with path.open("rb") as handle:
            data = handle.read(MAX_FILE_BYTES + 1)
    except OSError as exc:
        raise err("Errno::EACCES", f"{exc.strerror or exc} @ rb_sysopen - {shown}") from None
    if len(data) > MAX_FILE_BYTES:
        raise err("IOError", f"{shown} is larger than {MAX_FILE_BYTES} bytes")
    # What was evaluated is what was read: the probe holds the hash of these very bytes.
    ip.recorder.probes[("file", str(path))] = (os.path.realpath(path), recording.digest(data))
    return data


def read_text(ip: Interpreter, text: str, node: Node | None) -> str:
    return read_bytes(ip, resolve_local(ip, text, node), text).decode("utf-8", "replace")


def _file_join(ip: Interpreter, args: list[Any], block: Proc | None, node: Node | None) -> Any:
    parts: list[str] = []
    for a in args:
        for p in (builtins.ENUM["flatten"](ip, a, [], None, node) if isinstance(a, list) else [a]):
            parts.append(builtins.need_str(p) if not isinstance(p, Symbol) else p.name)
    if not parts:
        return ""
    out = parts[0]
    for p in parts[1:]:
        if out.endswith("/") and p.startswith("/"):
            out += p[1:]
        elif out.endswith("/") or p.startswith("/"):
            out += p
        else:
            out += "/" + p
    return ip.check_string(out, node)


def _file_dirname(ip: Interpreter, args: list[Any], block: Proc | None, node: Node | None) -> Any:
    builtins.arity(args, 1, 2)
    text = builtins.need_str(args[0])
    for _ in range(builtins.need_int(args[1]) if len(args) > 1 else 1):
        stripped = text.rstrip("/") or "/"
        head = posixpath.dirname(stripped)
        text = head.rstrip("/") or ("/" if stripped.startswith("/") else ".")
    return text


def _file_basename(ip: Interpreter, args: list[Any], block: Proc | None, node: Node | None) -> Any:
    builtins.arity(args, 1, 2)
    text = builtins.need_str(args[0])
    base = posixpath.basename(text.rstrip("/")) or ("/" if text.startswith("/") else "")
    if len(args) > 1:
        suffix = builtins.need_str(args[1])
        if suffix == ".*":
            stem, ext = posixpath.splitext(base)
            base = stem if ext else base
        elif suffix and base.endswith(suffix) and base != suffix:
            base = base[: -len(suffix)]
    return base


def _file_extname(ip: Interpreter, args: list[Any], block: Proc | None, node: Node | None) -> Any:
    builtins.arity(args, 1)
    base = posixpath.basename(builtins.need_str(args[0]))
    ext = posixpath.splitext(base)[1]
    return ext if ext != "." else ""


def _file_split(ip: Interpreter, args: list[Any], block: Proc | None, node: Node | None) -> Any:
    return [_file_dirname(ip, args, block, node), _file_basename(ip, args, block, node)]


def _file_expand_path(ip: Interpreter, args: list[Any], block: Proc | None, node: Node | None) -> Any:
    builtins.arity(args, 1, 2)
    base = builtins.need_str(args[1]) if len(args) > 1 and args[1] is not None else None
    return expand_path(ip, builtins.need_str(args[0]), base)


def _file_absolute_path(ip: Interpreter, args: list[Any], block: Proc | None, node: Node | None) -> Any:
    builtins.arity(args, 1, 2)
    text = builtins.need_str(args[0])
    base = builtins.need_str(args[1]) if len(args) > 1 and args[1] is not None else str(ip.cwd)
    return posixpath.normpath(posixpath.join(base, text))


def file_test(ip: Interpreter, name: str, path: Path) -> bool:
    """The file test NAME (recording.FILE_TESTS) of PATH, as a probe."""
    return bool(ip.recorder.note("test", (name, str(path)), recording.file_test(name, path)))


def _file_test(name: str) -> Method:
    def fn(ip: Interpreter, args: list[Any], block: Proc | None, node: Node | None) -> Any:
        builtins.arity(args, 1)
        if args[0] is None:
            raise err("TypeError", "no implicit conversion of nil into String")
        return file_test(ip, name, resolve_local(ip, ip.to_s(args[0]), node))

    return fn


def _file_size(ip: Interpreter, args: list[Any], block: Proc | None, node: Node | None) -> Any:
    builtins.arity(args, 1)
    path = resolve_local(ip, builtins.need_str(args[0]), node)
    size = ip.recorder.note("size", str(path), recording.file_size(path))
    if size is None:
        raise err("Errno::ENOENT", f"No such file or directory - {args[0]}")
    return size


def _file_read(ip: Interpreter, args: list[Any], block: Proc | None, node: Node | None) -> Any:
    builtins.arity(args, 1, 3)
    return read_text(ip, builtins.need_str(args[0]), node)


def _file_readlines(ip: Interpreter, args: list[Any], block: Proc | None, node: Node | None) -> Any:
    text = read_text(ip, builtins.need_str(args[0]), node)
    chomp = any(isinstance(a, dict) and truthy(a.get(Symbol("chomp"))) for a in args[1:])
    lines = text.splitlines(keepends=not chomp)
    ip.check_size(len(lines), node)
    return lines


def _file_foreach(ip: Interpreter, args: list[Any], block: Proc | None, node: Node | None) -> Any:
    lines = _file_readlines(ip, args[:1], None, node)
    if block is None:
        from vmctl.vagrantfile.values import Enumerator

        return Enumerator(lines, "each")
    for line in lines:
        builtins.call(ip, block, line, node=node)
    return None


def _file_open(ip: Interpreter, args: list[Any], block: Proc | None, node: Node | None) -> Any:
    if not args:
        raise err("ArgumentError", "wrong number of arguments (given 0, expected 1..3)")
    mode = args[1] if len(args) > 1 and isinstance(args[1], str) else "r"
    if isinstance(args[-1], dict) and Symbol("mode") in args[-1]:
        mode = to_s(args[-1][Symbol("mode")])
    if any(c in mode for c in "wa+") and node is not None:
        raise ip.unsupported(node, "File.open for writing", "a Vagrantfile may not write files")
    text = read_text(ip, builtins.need_str(args[0]), node)
    handle = ReadFile(resolve_local(ip, args[0], node), text)
    if block is not None:
        return builtins.call(ip, block, handle, node=node)
    return handle


_FILE_REFUSED = {
    name: "a Vagrantfile may not change files"
    for name in ["write", "binwrite", "delete", "unlink", "rename", "chmod", "chown", "lchmod", "lchown", "symlink", "link", "truncate", "mkfifo", "utime", "new", "popen", "sysopen"]
}


MAX_GLOB_VISITS = 100_000
MAX_BRACE_PATTERNS = 1_000


def _dir_glob(ip: Interpreter, args: list[Any], block: Proc | None, node: Node | None) -> Any:
    if not args:
        raise err("ArgumentError", "wrong number of arguments (given 0, expected 1..2)")
    patterns = args[0] if isinstance(args[0], list) else [args[0]]
    base = ip.project_dir
    opts = args[-1] if isinstance(args[-1], dict) else {}
    if Symbol("base") in opts:
        base = resolve_local(ip, builtins.need_str(opts[Symbol("base")]), node)
    results: list[str] = []
    budget = [MAX_GLOB_VISITS]
    for pattern in patterns:
        text = builtins.need_str(pattern)
        if "\0" in text:
            raise err("ArgumentError", "string contains null byte")
        absolute = text.startswith(("/", "~"))
        full = expand_path(ip, text) if absolute else posixpath.join(str(base), text)
        for variant in _expand_braces(full):
            for match in _glob(ip, variant, budget, node):
                results.append(match if absolute else os.path.relpath(match, base))
                ip.check_size(len(results), node)
    results = sorted(set(results))
    if block is not None:
        for r in results:
            builtins.call(ip, block, r, node=node)
        return None
    return results


def _expand_braces(pattern: str) -> list[str]:
    """Ruby's {a,b} alternatives, expanded (at most MAX_BRACE_PATTERNS patterns)."""
    out = [pattern]
    done: list[str] = []
    while out:
        item = out.pop()
        start = item.find("{")
        depth, end = 0, -1
        for i in range(start, len(item)) if start >= 0 else ():
            depth += {"{": 1, "}": -1}.get(item[i], 0)
            if depth == 0:
                end = i
                break
        if start < 0 or end < 0:
            done.append(item)
            continue
        inner, parts, depth, last = item[start + 1:end], [], 0, 0
        for i, c in enumerate(inner):
            depth += {"{": 1, "}": -1}.get(c, 0)
            if c == "," and depth == 0:
                parts.append(inner[last:i])
                last = i + 1
        parts.append(inner[last:])
        out.extend(item[:start] + part + item[end + 1:] for part in parts)
        if len(out) + len(done) > MAX_BRACE_PATTERNS:
            raise err("ArgumentError", f"a glob pattern with more than {MAX_BRACE_PATTERNS} {{...}} alternatives")
    return done


def _glob(ip: Interpreter, pattern: str, budget: list[int], node: Node | None) -> Iterator[str]:
    """The paths matching the absolute PATTERN, walked by hand: `**` descends without
    following symbolic links (as Ruby's does), every folder listed must pass the read
    policy, and at most MAX_GLOB_VISITS entries are looked at."""
    import fnmatch
    import re as _re

    parts = [p for p in pattern.split("/") if p]
    magic = _re.compile(r"[*?\[]")

    def visit(folder: str, rest: list[str]) -> Iterator[str]:
        if not rest:
            yield folder
            return
        head, tail = rest[0], rest[1:]
        if head == "**":
            yield from visit(folder, tail)  # zero folders
            for name, is_dir in listing(folder):
                if is_dir and not name.startswith("."):
                    yield from visit(posixpath.join(folder, name), rest)
            return
        if not magic.search(head):
            child = posixpath.join(folder, head)
            if tail or ip.recorder.note("lexists", child, os.path.lexists(child)):
                yield from visit(child, tail)
            return
        rule = _re.compile(fnmatch.translate(head))
        for name, _is_dir in listing(folder):
            if name.startswith(".") and not head.startswith("."):
                continue
            if rule.match(name):
                yield from visit(posixpath.join(folder, name), tail)

    def listing(folder: str) -> tuple[tuple[str, bool], ...]:
        if read_refusal(ip, Path(folder), listing=True) is not None:
            ip.recorder.note("file", folder, (os.path.realpath(folder), "refused"))
            return ()
        entries = ip.recorder.note("listdir", folder, recording.listing(folder)) or ()
        budget[0] -= len(entries)
        if budget[0] < 0:
            raise ip.limit(node, f"a glob that looks at more than {MAX_GLOB_VISITS} files")
        return entries

    yield from visit("/", parts)


def _dir_entries(ip: Interpreter, args: list[Any], block: Proc | None, node: Node | None) -> Any:
    builtins.arity(args, 1, 2)
    path = resolve_local(ip, builtins.need_str(args[0]), node)
    try:
        check_read(ip, path, to_s(args[0]), listing=True)
    except RubyError:
        ip.recorder.note("file", str(path), (os.path.realpath(path), "refused"))
        raise
    entries = ip.recorder.note("listdir", str(path), recording.listing(str(path)))
    if entries is None:
        raise err("Errno::ENOENT", f"No such file or directory @ dir_initialize - {args[0]}")
    names = [".", "..", *(name for name, _ in entries)]
    ip.check_size(len(names), node)
    return sorted(names)


def _dir_children(ip: Interpreter, args: list[Any], block: Proc | None, node: Node | None) -> Any:
    names = _dir_entries(ip, args, None, node)
    if block is not None:
        for n in names:
            builtins.call(ip, block, n, node=node)
        return None
    return names


# -- ENV --------------------------------------------------------------------------------


def env_get(ip: Interpreter, key: str) -> str | None:
    if key in ip.env_overlay:
        return ip.env_overlay[key]
    return ip.env.get(key)


def env_items(ip: Interpreter) -> dict[str, str]:
    merged = dict(ip.env)
    for k, v in ip.env_overlay.items():
        if v is None:
            merged.pop(k, None)
        else:
            merged[k] = v
    return merged


class EnvObject(RObject):
    ruby_class = "Object"
    ruby_describe = "ENV"

    def ruby_to_s(self) -> str:
        return "ENV"

    def rb_send(self, ip: Interpreter, name: str, args: list[Any], block: Proc | None, node: Node | None) -> Any:
        if name in ("[]", "fetch", "key?", "has_key?", "include?", "member?", "delete"):
            if not args:
                raise err("ArgumentError", "wrong number of arguments (given 0, expected 1)")
            key = args[0]
            if not isinstance(key, str):
                raise err("TypeError", f"no implicit conversion of {class_name(key)} into String")
            value = env_get(ip, key)
            if name == "[]":
                return value
            if name == "fetch":
                if value is not None:
                    return value
                if block is not None:
                    return builtins.call(ip, block, key, node=node)
                if len(args) > 1:
                    return args[1]
                raise err("KeyError", f"key not found: {inspect(key)}")
            if name == "delete":
                ip.env_overlay[key] = None
                return value
            return value is not None
        if name in ("[]=", "store"):
            builtins.arity(args, 2)
            key, value = args
            if not isinstance(key, str):
                raise err("TypeError", f"no implicit conversion of {class_name(key)} into String")
            if value is not None and not isinstance(value, str):
                raise err("TypeError", f"no implicit conversion of {class_name(value)} into String")
            if len(ip.env_overlay) > 10_000:
                raise ip.limit(node, "too many environment variables set")
            ip.env_overlay[key] = value
            return value
        if name in ("to_h", "to_hash"):
            return env_items(ip)
        if name == "keys":
            return list(env_items(ip))
        if name == "values":
            return list(env_items(ip).values())
        if name in ("empty?",):
            return not env_items(ip)
        if name in ("each", "each_pair", "select", "filter", "reject", "map", "any?", "find", "to_a",
                    "each_with_object", "filter_map", "count", "size", "length", "slice", "values_at",
                    "dig", "key", "has_value?", "value?"):
            return builtins.dispatch(ip, env_items(ip), name, args, block, node)
        return super().rb_send(ip, name, args, block, node)


# -- YAML and JSON ----------------------------------------------------------------------

MAX_DOCUMENT_NODES = 1_000_000


def from_data(ip: Interpreter, data: Any, *, symbolize: bool, node: Node | None) -> Any:
    """Parsed YAML/JSON as Ruby values: shared (aliased) parts stay shared, and a document
    whose aliases expand to too many nodes is refused (a "billion laughs" bomb)."""
    memo: dict[int, Any] = {}
    sizes: dict[int, int] = {}

    def size(value: Any, depth: int) -> int:
        if depth > 200:
            raise err("Psych::SyntaxError", "document nested too deeply")
        key = id(value)
        if key in sizes:
            return sizes[key]
        if isinstance(value, dict):
            n = 1 + sum(size(k, depth + 1) + size(v, depth + 1) for k, v in value.items())
        elif isinstance(value, list):
            n = 1 + sum(size(v, depth + 1) for v in value)
        else:
            n = 1
        sizes[key] = n
        if n > MAX_DOCUMENT_NODES:
            raise ip.limit(node, f"a YAML/JSON document that expands to more than {MAX_DOCUMENT_NODES} nodes")
        return n

    def convert(value: Any, is_key: bool = False) -> Any:
        key = id(value)
        if key in memo:
            return memo[key]
        if isinstance(value, dict):
            out: dict[Any, Any] = {}
            memo[key] = out
            for k, v in value.items():
                ck = convert(k, True)
                try:
                    out[ck] = convert(v)
                except TypeError:
                    raise err("TypeError", "unhashable key in document") from None
            return out
        if isinstance(value, list):
            lst: list[Any] = []
            memo[key] = lst
            lst.extend(convert(v) for v in value)
            return lst
        if isinstance(value, str):
            if value.startswith(":") and len(value) > 1 and " " not in value:
                return Symbol(value[1:])
            if symbolize and is_key:
                return Symbol(value)
            return value
        if value is None or isinstance(value, bool | int | float):
            return value
        if isinstance(value, bytes):
            return value.decode("latin-1")
        return str(value)

    size(data, 0)
    return convert(data)


def to_data(value: Any, depth: int = 0) -> Any:
    if depth > 100:
        raise err("ArgumentError", "nesting of 100 is too deep")
    if isinstance(value, dict):
        return {to_data(k, depth + 1) if not isinstance(k, Symbol) else k.name: to_data(v, depth + 1) for k, v in value.items()}
    if isinstance(value, list):
        return [to_data(v, depth + 1) for v in value]
    if isinstance(value, Symbol):
        return value.name
    if value is None or isinstance(value, bool | int | float | str):
        return value
    return to_s(value)


def _yaml_options(args: list[Any]) -> bool:
    opts = args[-1] if len(args) > 1 and isinstance(args[-1], dict) else {}
    return truthy(opts.get(Symbol("symbolize_names")))


def _yaml_parse(ip: Interpreter, text: str, symbolize: bool, node: Node | None) -> Any:
    import yaml

    loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
    try:
        data = yaml.load(text, Loader=loader)  # noqa: S506 - a safe loader
    except yaml.YAMLError as exc:
        raise err("Psych::SyntaxError", str(exc).replace("\n", " ")) from None
    except RecursionError:
        raise err("Psych::SyntaxError", "document nested too deeply") from None
    if data is None and text.strip() == "":
        return False
    return from_data(ip, data, symbolize=symbolize, node=node)


def _yaml_load_file(ip: Interpreter, args: list[Any], block: Proc | None, node: Node | None) -> Any:
    if not args:
        raise err("ArgumentError", "wrong number of arguments (given 0, expected 1)")
    text = read_text(ip, builtins.need_str(args[0]), node)
    return _yaml_parse(ip, text, _yaml_options(args), node)


def _yaml_load(ip: Interpreter, args: list[Any], block: Proc | None, node: Node | None) -> Any:
    if not args:
        raise err("ArgumentError", "wrong number of arguments (given 0, expected 1)")
    text = args[0] if isinstance(args[0], str) else getattr(args[0], "text", None)
    if not isinstance(text, str):
        raise err("TypeError", f"no implicit conversion of {class_name(args[0])} into String")
    return _yaml_parse(ip, text, _yaml_options(args), node)


def yaml_dump(ip: Interpreter, value: Any, node: Node | None) -> str:
    import yaml

    try:
        text = "---\n" + yaml.safe_dump(to_data(value), sort_keys=False, default_flow_style=False)
    except yaml.YAMLError as exc:
        raise err("TypeError", str(exc)) from None
    return ip.check_string(text, node)


def _yaml_dump(ip: Interpreter, args: list[Any], block: Proc | None, node: Node | None) -> Any:
    builtins.arity(args, 1, 2)
    return yaml_dump(ip, args[0], node)


def _json_parse(ip: Interpreter, args: list[Any], block: Proc | None, node: Node | None) -> Any:
    if not args:
        raise err("ArgumentError", "wrong number of arguments (given 0, expected 1)")
    text = builtins.need_str(args[0])
    try:
        data = json.loads(text)
    except (ValueError, RecursionError) as exc:
        raise err("JSON::ParserError", str(exc)) from None
    return from_data(ip, data, symbolize=_yaml_options(args), node=node)


def json_generate(ip: Interpreter, value: Any, *, pretty: bool, node: Node | None) -> str:
    try:
        text = json.dumps(to_json_value(value), indent=2 if pretty else None,
                          separators=None if pretty else (",", ":"), ensure_ascii=False)
    except (TypeError, ValueError, RecursionError) as exc:
        raise err("JSON::GeneratorError", str(exc)) from None
    return ip.check_string(text, node)

