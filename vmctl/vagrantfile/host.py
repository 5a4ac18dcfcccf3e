"""What a Vagrantfile can reach outside its own values: Kernel functions, constants and
the modules File, Dir, ENV, YAML, JSON, Vagrant, Gem, ... and what is refused.

Reads are allowed (files, the environment, the command line); anything that writes,
runs a command, opens a connection or is not deterministic is refused with
UnsupportedConstruct before its arguments are even evaluated, where that can be decided
from the name alone. `ENV[...] =` writes go to an overlay, never to the real environment.
"""

from __future__ import annotations

import base64
import os
import posixpath
import shlex
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from vmctl.vagrantfile import builtins
from vmctl.vagrantfile.inputs import (  # noqa: F401 - re-exported
    _FILE_REFUSED,
    EnvObject,
    _dir_children,
    _dir_entries,
    _dir_glob,
    _file_absolute_path,
    _file_basename,
    _file_dirname,
    _file_expand_path,
    _file_extname,
    _file_foreach,
    _file_join,
    _file_open,
    _file_read,
    _file_readlines,
    _file_size,
    _file_split,
    _file_test,
    _json_parse,
    _yaml_dump,
    _yaml_load,
    _yaml_load_file,
    display_path,
    expand_path,
    file_test,
    home_dir,
    json_generate,
    read_bytes,
    resolve_local,
)
from vmctl.vagrantfile.objects import (  # noqa: F401 - re-exported
    _CLASS_TESTS,
    MAX_FILE_BYTES,
    GemVersion,
    Method,
    MethodRef,
    Module,
    Output,
    RClass,
    ReadFile,
    RObject,
    _gem_version_correct,
    _gem_version_new,
    class_object,
    requirement_satisfied,
)
from vmctl.vagrantfile.values import (
    EXCEPTION_CLASSES,
    Abort,
    Proc,
    RException,
    RubyError,
    Symbol,
    class_name,
    inspect,
    to_s,
)

if TYPE_CHECKING:
    from vmctl.vagrantfile.interpreter import Interpreter, Scope
    from vmctl.vagrantfile.syntax import Node

VAGRANT_VERSION = "2.3.4"

err = builtins.err


# -- Kernel -----------------------------------------------------------------------------


def _lines(ip: Interpreter, value: Any, out: list[str], depth: int = 0) -> None:
    if isinstance(value, list) and depth < 20:
        if not value and depth == 0:
            out.append("")
        for v in value:
            _lines(ip, v, out, depth + 1)
    else:
        out.append(ip.to_s(value))


def _puts(ip: Interpreter, args: list[Any], block: Proc | None, node: Node | None) -> Any:
    out: list[str] = []
    if not args:
        out.append("")
    for a in args:
        _lines(ip, a, out)
    for line in out:
        ip.message(line[:-1] if line.endswith("\n") else line)
    return None


def _print(ip: Interpreter, args: list[Any], block: Proc | None, node: Node | None) -> Any:
    ip.message("".join(ip.to_s(a) for a in args).rstrip("\n"))
    return None


def _p(ip: Interpreter, args: list[Any], block: Proc | None, node: Node | None) -> Any:
    for a in args:
        ip.message(ip.check_string(inspect(a), node))
    return args[0] if len(args) == 1 else (args or None)


def _printf(ip: Interpreter, args: list[Any], block: Proc | None, node: Node | None) -> Any:
    if args:
        ip.message(builtins.rb_format(ip, builtins.need_str(args[0]), args[1:], node).rstrip("\n"))
    return None


def _format(ip: Interpreter, args: list[Any], block: Proc | None, node: Node | None) -> Any:
    if not args:
        raise err("ArgumentError", "too few arguments")
    return builtins.rb_format(ip, builtins.need_str(args[0]), args[1:], node)


def _raise(ip: Interpreter, args: list[Any], block: Proc | None, node: Node | None) -> Any:
    if not args:
        error = RubyError("RuntimeError", "unhandled exception")
    elif isinstance(args[0], str):
        error = RubyError("RuntimeError", args[0])
    elif isinstance(args[0], RException):
        error = RubyError(args[0].cls, args[0].message)
    elif isinstance(args[0], RClass) and args[0].name in EXCEPTION_CLASSES:
        error = RubyError(args[0].name, to_s(args[1]) if len(args) > 1 else args[0].name)
    else:
        raise err("TypeError", "exception class/object expected")
    error.raised = True  # type: ignore[attr-defined]
    raise error


def _abort(ip: Interpreter, args: list[Any], block: Proc | None, node: Node | None) -> Any:
    message = ip.to_s(args[0]) if args else "abort"
    raise _located(Abort(message), node)


def _exit(ip: Interpreter, args: list[Any], block: Proc | None, node: Node | None) -> Any:
    status = args[0] if args else True
    raise _located(Abort(f"exit called (status {inspect(status)})"), node)


def _located(exc: Abort, node: Node | None) -> Abort:
    if node is not None:
        exc.location = (node.source.display, node.line, node.source.line(node.line))  # type: ignore[attr-defined]
    return exc


def _lambda(ip: Interpreter, args: list[Any], block: Proc | None, node: Node | None) -> Any:
    if block is None:
        raise err("ArgumentError", "tried to create Proc object without a block")
    return Proc(block.params, block.body, block.scope, block.frame, is_lambda=True, native=block.native)


def _proc(ip: Interpreter, args: list[Any], block: Proc | None, node: Node | None) -> Any:
    if block is None:
        raise err("ArgumentError", "tried to create Proc object without a block")
    return block


def _loop(ip: Interpreter, args: list[Any], block: Proc | None, node: Node | None) -> Any:
    if block is None:
        raise err("ArgumentError", "loop needs a block")
    while True:
        try:
            ip.call_block(block, [], node)
        except RubyError as error:
            if error.cls == "StopIteration":
                return None
            raise


def _integer(ip: Interpreter, args: list[Any], block: Proc | None, node: Node | None) -> Any:
    builtins.arity(args, 1, 3)
    value = args[0]
    if isinstance(value, str):
        if len(args) > 1 and isinstance(args[1], int) and not isinstance(args[1], bool):
            try:
                return int(value.replace("_", ""), args[1])
            except ValueError:
                raise err("ArgumentError", f"invalid value for Integer(): {inspect(value)}") from None
        return builtins._kernel_integer(value)
    return builtins._to_integer(value)


def _float(ip: Interpreter, args: list[Any], block: Proc | None, node: Node | None) -> Any:
    builtins.arity(args, 1, 2)
    return builtins._to_float(args[0])


def _string(ip: Interpreter, args: list[Any], block: Proc | None, node: Node | None) -> Any:
    builtins.arity(args, 1)
    return ip.to_s(args[0], node)


def _array(ip: Interpreter, args: list[Any], block: Proc | None, node: Node | None) -> Any:
    builtins.arity(args, 1)
    return builtins.splat(args[0])


def _hash(ip: Interpreter, args: list[Any], block: Proc | None, node: Node | None) -> Any:
    builtins.arity(args, 1)
    value = args[0]
    if value is None or value == []:
        return {}
    if isinstance(value, dict):
        return value
    raise err("TypeError", f"can't convert {class_name(value)} into Hash")


def _method(ip: Interpreter, args: list[Any], block: Proc | None, node: Node | None) -> Any:
    builtins.arity(args, 1)
    name = to_s(args[0])
    if name not in ip.methods and name not in KERNEL:
        raise err("NameError", f"undefined method `{name}' for main")
    return MethodRef(name)


def _caller(ip: Interpreter, args: list[Any], block: Proc | None, node: Node | None) -> Any:
    return []


def _noop(ip: Interpreter, args: list[Any], block: Proc | None, node: Node | None) -> Any:
    return None


def _require(ip: Interpreter, args: list[Any], block: Proc | None, node: Node | None) -> Any:
    return require(ip, builtins.need_str(args[0] if args else None), node, relative=False)


def _require_relative(ip: Interpreter, args: list[Any], block: Proc | None, node: Node | None) -> Any:
    return require(ip, builtins.need_str(args[0] if args else None), node, relative=True)


def _load(ip: Interpreter, args: list[Any], block: Proc | None, node: Node | None) -> Any:
    path = resolve_local(ip, builtins.need_str(args[0] if args else None), node)
    if not file_test(ip, "file?", path):
        raise err("LoadError", f"cannot load such file -- {args[0]}")
    ip.run_file(path, display_path(ip, path), node)
    return True


KERNEL: dict[str, Method] = {
    "puts": _puts,
    "print": _print,
    "p": _p,
    "pp": _p,
    "warn": _puts,
    "printf": _printf,
    "format": _format,
    "sprintf": _format,
    "raise": _raise,
    "fail": _raise,
    "abort": _abort,
    "exit": _exit,
    "lambda": _lambda,
    "proc": _proc,
    "loop": _loop,
    "Integer": _integer,
    "Float": _float,
    "String": _string,
    "Array": _array,
    "Hash": _hash,
    "method": _method,
    "caller": _caller,
    "require": _require,
    "require_relative": _require_relative,
    "load": _load,
    "private": _noop,
    "public": _noop,
    "module_function": _noop,
    "frozen_string_literal": _noop,
}

# Names refused on sight, as functions (`system "x"`, `Kernel.system`) or on any receiver.
REFUSED_FUNCTIONS = {
    "system": "runs a host command",
    "exec": "runs a host command",
    "spawn": "runs a host command",
    "fork": "runs a host process",
    "syscall": "calls the kernel",
    "`": "runs a host command",
    "open": "can run commands or open URLs; use File.read",
    "rand": "random values would change between runs",
    "srand": "random values would change between runs",
    "sleep": "waits",
    "trap": "installs a signal handler",
    "at_exit": "runs code at exit",
    "gets": "reads standard input",
    "readline": "reads standard input",
    "readlines": "reads standard input",
    "select": "waits on I/O",
    "instance_eval": "evaluates code",
    "instance_exec": "evaluates code",
    "class_eval": "evaluates code",
    "module_eval": "evaluates code",
    "class_exec": "evaluates code",
    "send": "calls methods by name",
    "__send__": "calls methods by name",
    "public_send": "calls methods by name",
    "define_method": "defines methods",
    "define_singleton_method": "defines methods",
    "instance_variable_set": "reflection",
    "instance_variable_get": "reflection",
    "const_get": "reflection",
    "const_set": "reflection",
    "remove_const": "reflection",
    "method_missing": "reflection",
    "exit!": "exits",
    "autoload": "loads code",
    "set_trace_func": "tracing",
    "trace_var": "tracing",
    "binding": "reflection",
    "catch": "non-local control flow",
    "throw": "non-local control flow",
    "attr_accessor": "needs classes",
    "attr_reader": "needs classes",
    "attr_writer": "needs classes",
    "extend": "changes objects",
    "include": "changes classes",
    "using": "refinements",
    "test": "inspects files by command letter",
}
REFUSED_ON_ANY_RECEIVER = {
    name: why for name, why in REFUSED_FUNCTIONS.items()
    if name in {
        "system", "exec", "spawn", "send", "__send__", "public_send", "instance_eval", "instance_exec",
        "class_eval", "module_eval", "class_exec", "define_method", "define_singleton_method",
        "instance_variable_set", "instance_variable_get", "const_get", "const_set", "remove_const",
        "extend", "`",
    }
}


def check_refused_function(ip: Interpreter, name: str, node: Node) -> None:
    if name in REFUSED_FUNCTIONS and name not in ip.methods:
        raise ip.unsupported(node, name, REFUSED_FUNCTIONS[name])


def check_refused_method(ip: Interpreter, recv: Any, name: str, node: Node) -> None:
    if name in REFUSED_ON_ANY_RECEIVER:
        raise ip.unsupported(node, name, REFUSED_ON_ANY_RECEIVER[name])
    if isinstance(recv, Module):
        why = recv.refused.get(name) or recv.refused.get("*")
        if why and name not in recv.functions:
            raise ip.unsupported(node, f"{recv.name}.{name}", why)


def call_kernel(ip: Interpreter, name: str, args: list[Any], block: Proc | None, node: Node, scope: Scope) -> Any:
    fn = KERNEL.get(name)
    if fn is not None:
        try:
            return fn(ip, args, block, node)
        except RubyError as error:
            if error.location is None:
                error.location = (node.source.display, node.line, node.source.line(node.line))
            raise
        except (TypeError, ValueError, KeyError, IndexError, OverflowError) as exc:
            raise ip.error_at(node, "ArgumentError", f"{name}: {exc}") from None
    if name == "__method__":
        return Symbol(scope.frame.name) if scope.frame.name != "<main>" else None
    if name in ("__dir__",):
        return str(node.source.path.parent)
    hint = ""
    if not args and block is None:
        raise ip.error_at(node, "NameError", f"undefined local variable or method `{name}' for main{hint}")
    raise ip.error_at(node, "NoMethodError", f"undefined method `{name}' for main")


def kernel_eval(ip: Interpreter, node: Node, scope: Scope, arg_kids: list[Node]) -> Any:
    """`eval(File.read(path))` of a local file is a `load` into the current scope; any
    other eval is refused."""
    code = [k for k in arg_kids if k.type != "heredoc_body"]
    if code and code[0].type == "call":
        call_node = code[0]
        receiver = call_node.field("receiver")
        method = call_node.field("method")
        args_node = call_node.field("arguments")
        if (
            receiver is not None and receiver.type == "constant" and receiver.text in ("File", "IO")
            and method is not None and method.text == "read" and args_node is not None and args_node.kids
            and receiver.text not in ip.constants
        ):
            path_value = ip.eval(args_node.kids[0], scope)
            path = resolve_local(ip, builtins.need_str(path_value), node)
            if not file_test(ip, "file?", path):
                raise ip.error_at(node, "Errno::ENOENT", f"No such file or directory @ rb_sysopen - {path_value}")
            from vmctl.vagrantfile.syntax import Source, parse

            text = read_bytes(ip, path, to_s(path_value))
            ip.files_loaded += 1
            if ip.files_loaded > ip.limits.max_files:
                raise ip.limit(node, "too many files loaded")
            program = parse(Source(path, text, display_path(ip, path)))
            ip.enter(node)
            try:
                return ip.eval_body(program, scope)
            finally:
                ip.depth -= 1
    raise ip.unsupported(node, "eval", "only eval(File.read(path)) of a local file is evaluated")


# -- files ------------------------------------------------------------------------------

STDLIB = frozenset(
    ["yaml", "psych", "json", "fileutils", "securerandom", "open3", "net/http", "net/https", "socket", "etc", "erb", "ipaddr", "pathname", "ostruct", "set", "uri", "digest", "digest/md5", "digest/sha1", "digest/sha2", "base64", "time", "date", "timeout", "tempfile", "tmpdir", "English", "rbconfig", "getoptlong", "optparse", "io/console", "open-uri", "shellwords", "resolv", "logger", "pp", "forwardable", "vagrant", "rubygems", "json/pure", "json/ext", "openssl", "zlib", "stringio", "benchmark", "find", "singleton", "observer", "delegate", "csv", "rexml/document", "io/wait", "fiddle", "win32ole"]
)


def require(ip: Interpreter, name: str, node: Node | None, *, relative: bool) -> Any:
    if not relative and name in STDLIB:
        return False
    base = node.source.path.parent if (relative and node is not None) else ip.project_dir
    candidates = []
    text = name
    if text.startswith("~") or text.startswith("/"):
        candidates.append(Path(expand_path(ip, text)))
    elif relative or text.startswith(("./", "../")) or "/" in text or text.endswith(".rb"):
        candidates.append(Path(posixpath.normpath(str(base / text))))
    else:
        candidates.append(ip.project_dir / text)
    path = None
    for c in candidates:
        for option in (c, Path(str(c) + ".rb")):
            if file_test(ip, "file?", option):
                path = option
                break
        if path is not None:
            break
    if path is None:
        raise err(
            "LoadError",
            f"cannot load such file -- {name} (vmctl loads local files and ignores standard libraries only)",
        )
    path = path.resolve()
    if path in ip.loaded:
        return False
    ip.loaded.add(path)
    ip.run_file(path, display_path(ip, path), node)
    return True


# -- special globals, constants, defined? -----------------------------------------------

READONLY_GLOBALS = frozenset(
    {"$stdin", "$stdout", "$stderr", "$0", "$PROGRAM_NAME", "$LOAD_PATH", "$:", "$~", "$?", "$$"}
)


def special_global(ip: Interpreter, name: str, node: Node) -> Any:
    if name in ("$stdout", "$>"):
        return Output("$stdout")
    if name == "$stderr":
        return Output("$stderr")
    if name == "$stdin":
        raise ip.unsupported(node, "$stdin", "reads standard input")
    if name in ("$0", "$PROGRAM_NAME"):
        return "/usr/bin/vagrant"
    if name in ("$LOAD_PATH", "$:", '$"', "$LOADED_FEATURES"):
        return []
    if name in ("$DEBUG", "$VERBOSE"):
        return False
    if name == "$$":
        raise ip.unsupported(node, "$$", "the process id changes between runs")
    if len(name) == 2 and name[1].isdigit():
        match = ip.globals.get("$~")
        if match is not None:
            try:
                return match.match.group(int(name[1]))
            except IndexError:
                return None
        return None
    return None


REFUSED_CONSTANTS = {
    "FileUtils": "changes files",
    "Open3": "runs host commands",
    "Process": "runs or inspects host processes",
    "PTY": "runs host commands",
    "Net": "opens network connections",
    "Socket": "opens network connections",
    "TCPSocket": "opens network connections",
    "UDPSocket": "opens network connections",
    "UNIXSocket": "opens network connections",
    "TCPServer": "opens network connections",
    "BasicSocket": "opens network connections",
    "Addrinfo": "resolves names",
    "Resolv": "resolves names",
    "URI": "opens URLs",
    "OpenURI": "opens URLs",
    "SecureRandom": "random values would change between runs",
    "Random": "random values would change between runs",
    "Time": "the time changes between runs",
    "Date": "the date changes between runs",
    "DateTime": "the date changes between runs",
    "ObjectSpace": "reflection",
    "Thread": "threads",
    "Fiber": "fibers",
    "Ractor": "ractors",
    "Mutex": "threads",
    "Queue": "threads",
    "Signal": "signals",
    "Marshal": "deserializes objects",
    "ERB": "templates evaluate Ruby",
    "Binding": "reflection",
    "Module": "defines modules",
    "Class": "defines classes",
    "Struct": "defines classes",
    "OpenStruct": "defines objects",
    "Method": "reflection",
    "UnboundMethod": "reflection",
    "TracePoint": "tracing",
    "GC": "the garbage collector",
    "RubyVM": "the virtual machine",
    "DRb": "remote objects",
    "Tempfile": "creates files",
    "STDIN": "reads standard input",
    "ARGF": "reads files and standard input",
    "DATA": "reads the file itself",
    "Pathname": "not supported; use File",
    "IPAddr": "not supported",
    "Digest": "not supported",
    "OpenSSL": "cryptography",
    "Zlib": "not supported",
    "Logger": "writes logs",
    "Set": "not supported; use an Array",
    "VagrantPlugins": "plugin internals",
}


def _platform(test: str) -> Method:
    def fn(ip: Interpreter, args: list[Any], block: Proc | None, node: Node | None) -> Any:
        platform = sys.platform
        return {
            "windows?": platform.startswith("win"),
            "linux?": platform.startswith("linux"),
            "darwin?": platform == "darwin",
            "wsl?": False,
            "cygwin?": platform == "cygwin",
            "bsd?": "bsd" in platform,
            "solaris?": platform.startswith("sunos"),
        }[test]

    return fn


def _vagrant_configure(ip: Interpreter, args: list[Any], block: Proc | None, node: Node | None) -> Any:
    builtins.arity(args, 1)
    version = to_s(args[0])
    if version != "2":
        raise err(
            "ArgumentError",
            f'Vagrant.configure("{version}") is not supported: vmctl reads version "2" configuration only',
        )
    if block is None:
        raise err("ArgumentError", "Vagrant.configure needs a block")
    if len(ip.configure_blocks) > 1000:
        raise ip.limit(node, "too many Vagrant.configure blocks")
    ip.configure_blocks.append((block, node))
    return None


def _vagrant_require_version(ip: Interpreter, args: list[Any], block: Proc | None, node: Node | None) -> Any:
    requirements = [to_s(a) for a in builtins.splat(args)]
    for req in requirements:
        if not requirement_satisfied(req, VAGRANT_VERSION):
            from vmctl.errors import ConfigError

            raise ConfigError(
                f"this Vagrantfile requires Vagrant {', '.join(requirements)}; "
                f"vmctl is compatible with Vagrant {VAGRANT_VERSION}",
                **ip.location(node),
            )
    return None


def _vagrant_has_plugin(ip: Interpreter, args: list[Any], block: Proc | None, node: Node | None) -> Any:
    builtins.arity(args, 1, 2)
    return ip.has_plugin


def _vagrant_plugin(ip: Interpreter, args: list[Any], block: Proc | None, node: Node | None) -> Any:
    raise err("NotImplementedError", "Vagrant.plugin: vmctl does not load Vagrant plugins")


def _refused_module(name: str, why: str) -> Module:
    return Module(name, refused={"*": why})


def _make_constants() -> dict[str, Any]:
    platform = Module("Vagrant::Util::Platform", {
        name: _platform(name) for name in ("windows?", "linux?", "darwin?", "wsl?", "cygwin?", "bsd?", "solaris?")
    })
    vagrant = Module(
        "Vagrant",
        {
            "configure": _vagrant_configure,
            "require_version": _vagrant_require_version,
            "has_plugin?": _vagrant_has_plugin,
            "plugin": _vagrant_plugin,
            "version": lambda ip, a, b, n: VAGRANT_VERSION,
        },
        {
            "VERSION": VAGRANT_VERSION,
            "Util": Module("Vagrant::Util", constants={"Platform": platform}),
            "DEFAULT_SERVER_URL": "https://vagrantcloud.com",
        },
    )
    gem_version = RClass(
        "Gem::Version", lambda v: isinstance(v, GemVersion),
        {"new": _gem_version_new, "create": _gem_version_new, "correct?": _gem_version_correct},
    )

    def gem_requirement_new(ip: Interpreter, args: list[Any], block: Proc | None, node: Node | None) -> Any:
        return GemRequirement(", ".join(to_s(a) for a in builtins.splat(args)))

    gem = Module(
        "Gem",
        {"win_platform?": lambda ip, a, b, n: sys.platform.startswith("win"),
         "ruby_version": lambda ip, a, b, n: GemVersion("3.1.2")},
        {"Version": gem_version,
         "Requirement": RClass("Gem::Requirement", lambda v: isinstance(v, GemRequirement),
                               {"new": gem_requirement_new, "create": gem_requirement_new})},
    )
    file_functions: dict[str, Method] = {
        "join": _file_join,
        "dirname": _file_dirname,
        "basename": _file_basename,
        "extname": _file_extname,
        "split": _file_split,
        "expand_path": _file_expand_path,
        "absolute_path": _file_absolute_path,
        "realpath": _file_expand_path,
        "exist?": _file_test("exist?"),
        "exists?": _file_test("exist?"),
        "file?": _file_test("file?"),
        "directory?": _file_test("directory?"),
        "readable?": _file_test("readable?"),
        "executable?": _file_test("executable?"),
        "symlink?": _file_test("symlink?"),
        "zero?": _file_test("zero?"),
        "empty?": _file_test("zero?"),
        "size?": _file_test("size?"),
        "size": _file_size,
        "read": _file_read,
        "readlines": _file_readlines,
        "foreach": _file_foreach,
        "open": _file_open,
    }
    file_cls = RClass("File", lambda v: isinstance(v, ReadFile), file_functions,
                      {"SEPARATOR": "/", "ALT_SEPARATOR": None, "PATH_SEPARATOR": ":"})
    file_cls.refused = dict(_FILE_REFUSED)
    io_cls = RClass("IO", lambda v: isinstance(v, ReadFile | Output), {
        "read": _file_read, "readlines": _file_readlines, "foreach": _file_foreach,
    })
    io_cls.refused = {"*": "only IO.read, IO.readlines and IO.foreach are supported"}
    dir_mod = RClass("Dir", lambda v: False, {
        "pwd": lambda ip, a, b, n: str(ip.cwd),
        "getwd": lambda ip, a, b, n: str(ip.cwd),
        "home": lambda ip, a, b, n: home_dir(ip) if not a else expand_path(ip, "~" + to_s(a[0])),
        "exist?": _file_test("directory?"),
        "exists?": _file_test("directory?"),
        "glob": _dir_glob,
        "[]": _dir_glob,
        "entries": _dir_entries,
        "children": _dir_children,
        "each_child": _dir_children,
        "empty?": _file_test("dir_empty?"),
    })
    dir_mod.refused = {"*": "a Vagrantfile may not change folders or the working folder"}
    yaml = Module("YAML", {
        "load_file": _yaml_load_file, "safe_load_file": _yaml_load_file, "unsafe_load_file": _yaml_load_file,
        "load": _yaml_load, "safe_load": _yaml_load, "unsafe_load": _yaml_load, "dump": _yaml_dump,
        "parse": _yaml_load,
    }, {"SyntaxError": class_object("Psych::SyntaxError")})
    json_mod = Module("JSON", {
        "parse": _json_parse,
        "load": _json_parse,
        "generate": lambda ip, a, b, n: json_generate(ip, a[0] if a else None, pretty=False, node=n),
        "dump": lambda ip, a, b, n: json_generate(ip, a[0] if a else None, pretty=False, node=n),
        "pretty_generate": lambda ip, a, b, n: json_generate(ip, a[0] if a else None, pretty=True, node=n),
    }, {"ParserError": class_object("JSON::ParserError")})
    import math

    math_mod = Module("Math", {
        "sqrt": lambda ip, a, b, n: math.sqrt(builtins._to_float(a[0])),
        "log": lambda ip, a, b, n: math.log(builtins._to_float(a[0]), *(builtins._to_float(x) for x in a[1:2])),
        "log2": lambda ip, a, b, n: math.log2(builtins._to_float(a[0])),
        "log10": lambda ip, a, b, n: math.log10(builtins._to_float(a[0])),
        "floor": lambda ip, a, b, n: math.floor(builtins._to_float(a[0])),
    }, {"PI": math.pi, "E": math.e})
    float_cls = class_object("Float")
    float_cls.constants.update({"INFINITY": math.inf, "NAN": math.nan, "EPSILON": sys.float_info.epsilon,
                                "MAX": sys.float_info.max, "MIN": sys.float_info.min})
    integer_cls = class_object("Integer")
    integer_cls.functions["sqrt"] = lambda ip, a, b, n: math.isqrt(builtins.need_int(a[0]))
    errno = Module("Errno", constants={name.split("::")[1]: class_object(name)
                                       for name in EXCEPTION_CLASSES if name.startswith("Errno::")})
    kernel = Module("Kernel", dict(KERNEL), refused=dict(REFUSED_FUNCTIONS))
    etc = Module("Etc", {"nprocessors": lambda ip, a, b, n: ip.recorder.note("cpus", None, os.cpu_count() or 1)},
                 refused={"*": "only Etc.nprocessors is supported"})
    shellwords = Module("Shellwords", {
        "escape": lambda ip, a, b, n: shlex.quote(builtins.need_str(a[0])),
        "shellescape": lambda ip, a, b, n: shlex.quote(builtins.need_str(a[0])),
        "split": lambda ip, a, b, n: builtins.STRING["shellsplit"](ip, builtins.need_str(a[0]), [], None, n),
        "shellsplit": lambda ip, a, b, n: builtins.STRING["shellsplit"](ip, builtins.need_str(a[0]), [], None, n),
        "join": lambda ip, a, b, n: " ".join(shlex.quote(to_s(x)) for x in builtins.need_list(a[0])),
    })
    b64 = Module("Base64", {
        "encode64": lambda ip, a, b, n: _b64_lines(base64.b64encode(builtins.need_str(a[0]).encode()).decode()),
        "strict_encode64": lambda ip, a, b, n: base64.b64encode(builtins.need_str(a[0]).encode()).decode(),
        "urlsafe_encode64": lambda ip, a, b, n: base64.urlsafe_b64encode(builtins.need_str(a[0]).encode()).decode(),
        "decode64": lambda ip, a, b, n: base64.b64decode(builtins.need_str(a[0]) + "==").decode("utf-8", "replace"),
        "strict_decode64": lambda ip, a, b, n: base64.b64decode(builtins.need_str(a[0]), validate=True).decode("utf-8", "replace"),
    })
    rbconfig = Module("RbConfig", constants={"CONFIG": {
        "host_os": "linux-gnu" if sys.platform.startswith("linux") else sys.platform,
        "host_cpu": os.uname().machine if hasattr(os, "uname") else "x86_64",
        "ruby_version": "3.1.0",
    }})
    constants: dict[str, Any] = {
        "Vagrant": vagrant,
        "Gem": gem,
        "File": file_cls,
        "IO": io_cls,
        "Dir": dir_mod,
        "YAML": yaml,
        "Psych": yaml,
        "JSON": json_mod,
        "Math": math_mod,
        "Errno": errno,
        "Kernel": kernel,
        "Etc": etc,
        "Shellwords": shellwords,
        "Base64": b64,
        "RbConfig": rbconfig,
        "ENV": EnvObject(),
        "STDOUT": Output("STDOUT"),
        "STDERR": Output("STDERR"),
        "RUBY_PLATFORM": "x86_64-linux",
        "RUBY_VERSION": "3.1.2",
        "RUBY_ENGINE": "ruby",
        "RUBY_PATCHLEVEL": 0,
    }
    for name in (*_CLASS_TESTS, *EXCEPTION_CLASSES):
        if "::" not in name:
            constants.setdefault(name, class_object(name))
    return constants


def _b64_lines(text: str) -> str:
    return "".join(text[i : i + 60] + "\n" for i in range(0, len(text), 60))


class GemRequirement(RObject):
    ruby_class = "Gem::Requirement"

    def __init__(self, text: str) -> None:
        self.text = text

    def rb_send(self, ip: Interpreter, name: str, args: list[Any], block: Proc | None, node: Node | None) -> Any:
        if name in ("satisfied_by?", "===", "=~"):
            builtins.arity(args, 1)
            version = args[0].text if isinstance(args[0], GemVersion) else to_s(args[0])
            return requirement_satisfied(self.text, version)
        if name == "to_s":
            return self.text
        return super().rb_send(ip, name, args, block, node)


def builtin_constants(ip: Interpreter) -> dict[str, Any]:
    """Made once per evaluation: a Vagrantfile that changes one (RbConfig::CONFIG is a
    Hash) must not change what the next evaluation in this process sees."""
    table = ip.builtin_constants
    if table is None:
        table = ip.builtin_constants = _make_constants()
    return table


def constant(ip: Interpreter, name: str, node: Node) -> Any:
    if name == "ARGV":
        return list(ip.argv)
    if name in REFUSED_CONSTANTS:
        raise ip.unsupported(node, name, REFUSED_CONSTANTS[name])
    table = builtin_constants(ip)
    if name in table:
        return table[name]
    raise ip.error_at(node, "NameError", f"uninitialized constant {name}")


def scoped_constant(ip: Interpreter, owner: Any, name: str, node: Node) -> Any:
    if isinstance(owner, Module):
        if name in owner.constants:
            return owner.constants[name]
        if owner.refused.get("*"):
            raise ip.unsupported(node, f"{owner.name}::{name}", owner.refused["*"])
        if name in ("Config", "Errors", "Plugin", "Action") and owner.name == "Vagrant":
            raise ip.unsupported(node, f"Vagrant::{name}", "Vagrant internals are not available")
        raise ip.error_at(node, "NameError", f"uninitialized constant {owner.name}::{name}")
    if isinstance(owner, dict):
        raise ip.error_at(node, "TypeError", f"{inspect(owner)[:40]} is not a class/module")
    raise ip.error_at(node, "TypeError", f"{to_s(owner)[:40]} is not a class/module")


def defined(ip: Interpreter, operand: Node, scope: Scope) -> Any:
    from vmctl.errors import UnsupportedConstruct

    node = operand
    while node.type == "parenthesized_statements" and len(node.kids) == 1:
        node = node.kids[0]
    kind = node.type
    if kind == "identifier":
        if scope.find(node.text) is not None:
            return "local-variable"
        if node.text in ip.methods or node.text in KERNEL:
            return "method"
        return None
    if kind == "global_variable":
        if node.text in ip.globals or node.text in ("$stdout", "$stderr", "$0", "$PROGRAM_NAME", "$LOAD_PATH"):
            return "global-variable"
        return None
    if kind == "instance_variable":
        return "instance-variable" if node.text in ip.ivars else None
    if kind in ("constant", "scope_resolution"):
        try:
            ip.eval(node, scope)
            return "constant"
        except RubyError:
            return None
        except UnsupportedConstruct:
            return "constant" if node.text.split("::")[0] not in ("VagrantPlugins",) else None
    if kind == "yield":
        return "yield" if scope.frame.block is not None else None
    if kind == "call":
        receiver = node.field("receiver")
        method = node.field("method")
        if receiver is None:
            name = method.text if method is not None else ""
            return "method" if name in ip.methods or name in KERNEL else None
        try:
            ip.eval(receiver, scope)
        except RubyError:
            return None
        return "method"
    if kind in ("nil", "true", "false", "self"):
        return "expression" if kind != "self" else "self"
    if kind == "assignment" or kind == "operator_assignment":
        return "assignment"
    return "expression"
