"""Property tests: whatever the input, the evaluator returns a ProjectConfig or raises a
ConfigError, within a time bound; never another exception, a hang or a crash."""

from __future__ import annotations

import os
import tempfile
import time
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from vmctl.errors import ConfigError
from vmctl.vagrantfile.interpreter import Limits
from vmctl.vagrantfile.loader import evaluate_project
from vmctl.vagrantfile.model import ProjectConfig

CORPUS = Path(__file__).resolve().parent.parent / "vagrantfiles"
SOURCES = sorted(
    (p.read_text(), p.parent.name)
    for p in CORPUS.glob("*/*")
    if p.is_file() and (p.name == "Vagrantfile" or p.suffix == ".rb")
)
# Small bounds so that a runaway example ends quickly; the wall-time bound is checked too.
LIMITS = Limits(max_steps=200_000, max_iterations=20_000, max_string=100_000, max_items=20_000, seconds=2.0)
WALL_BOUND = 5.0

TOKENS = [
    "Vagrant.configure(\"2\") do |config|", "config.vm.box = ", "config.vm.define", "config.vm.network",
    "config.vm.provision", "config.vm.provider :libvirt do |lv|", "lv.memory = ", "config.ssh.username",
    "config.trigger.before :up do |t|", "t.run = {inline: 'x'}", "config.vm.synced_folder", "end", "do",
    "|x|", "|a, b|", "{", "}", "[", "]", "(", ")", ",", ".", "::", "=", "==", "+", "-", "*", "/", "%",
    "**", "<<", "||=", "&&", "||", "!", "?", ":", "=>", "..", "...", "if", "elsif", "else", "unless",
    "case", "when", "then", "while", "until", "for", "in", "begin", "rescue", "ensure", "def", "return",
    "next", "break", "yield", "lambda", "->", "proc", "nil", "true", "false", "self", "1", "0", "-1",
    "10**9", "2**64", "3.5", "\"s\"", "'q'", "\"#{x}\"", ":sym", "x", "y", "$g", "@i", "CONST", "ENV",
    "ARGV", "__FILE__", "File.join", "File.read", "File.exist?", "Dir.pwd", "YAML.load", "JSON.parse",
    "puts", "raise", "abort", "exit", "system", "`ls`", "%x(ls)", "eval", "send", "instance_eval",
    "class", "module", "Open3", "FileUtils", "Time.now", "rand", "each", "map", "times", "upto",
    "each_with_index", "select", "inject", "loop", "%w[a b]", "<<~EOS\n  text\nEOS\n", "/re+/", "=~",
    "\n", "\n", "\n", " ", ";", "require", "load", "'config.rb'", "x.freeze", "[1,2]*1000",
    "\"a\"*100000", "Hash.new", "Array.new(5)", "(1..)", "Float::INFINITY", ".to_s", ".to_i", ".size",
]


def evaluate(text: str) -> None:
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "Vagrantfile"
        path.write_text(text, encoding="utf-8", errors="surrogatepass")
        start = time.monotonic()
        try:
            result = evaluate_project(path, env={"HOME": folder}, argv=("validate",), limits=LIMITS)
            assert isinstance(result, ProjectConfig)
        except ConfigError as exc:
            assert isinstance(exc.message, str) and exc.message
            # the safety net for vmctl's own bugs must never be what answers
            assert "internal error" not in exc.message, exc.message
            str(exc)  # renders
        elapsed = time.monotonic() - start
        assert elapsed < WALL_BOUND, f"took {elapsed:.1f} s"


@st.composite
def mutated_corpus_file(draw: st.DrawFn) -> str:
    text, _ = draw(st.sampled_from(SOURCES))
    lines = text.splitlines(keepends=True)
    for _ in range(draw(st.integers(1, 4))):
        if not lines:
            break
        kind = draw(st.sampled_from(["delete", "duplicate", "swap", "insert", "truncate", "number"]))
        i = draw(st.integers(0, len(lines) - 1))
        if kind == "delete":
            del lines[i]
        elif kind == "duplicate":
            lines.insert(i, lines[i])
        elif kind == "swap":
            j = draw(st.integers(0, len(lines) - 1))
            lines[i], lines[j] = lines[j], lines[i]
        elif kind == "insert":
            lines.insert(i, " ".join(draw(st.lists(st.sampled_from(TOKENS), min_size=1, max_size=6))) + "\n")
        elif kind == "truncate":
            cut = draw(st.integers(0, len(lines[i])))
            lines[i] = lines[i][:cut]
        else:
            lines[i] = lines[i].replace("1", draw(st.sampled_from(["0", "-1", "99999999", "1.5", "nil"])))
    return "".join(lines)


FUZZ = settings(max_examples=int(os.environ.get("VMCTL_FUZZ_EXAMPLES", "60")), deadline=None, suppress_health_check=[HealthCheck.too_slow])


@FUZZ
@given(mutated_corpus_file())
def test_mutated_corpus_files(text: str) -> None:
    evaluate(text)


@FUZZ
@given(st.lists(st.sampled_from(TOKENS), max_size=40).map(" ".join))
def test_random_token_sequences(text: str) -> None:
    evaluate(text)


@FUZZ
@given(st.text(max_size=300))
def test_random_text(text: str) -> None:
    evaluate(text)


@settings(max_examples=40, deadline=None)
@given(st.lists(st.sampled_from(TOKENS), min_size=1, max_size=12).map(" ".join))
def test_tokens_inside_a_configure_block(body: str) -> None:
    evaluate(f'Vagrant.configure("2") do |config|\n  config.vm.box = "b"\n  {body}\nend\n')


@pytest.mark.parametrize(
    "code",
    [
        "loop { }",
        "x = []; loop { x << x.size }",
        "def f(n) = f(n) + 1\nf(1)",
        "a = 'x'; 40.times { a = a + a }",
        "a = [1]; 40.times { a = a + a }",
        "(1..).each { }",
        "x = 1; 100.times { x = x * 123456789 }",
        "h = {}; 1_000_000.times { |i| h[i] = i }",
        "[" * 2000 + "]" * 2000,
        "a = []; a << a; puts a.inspect; puts a.flatten",
        "'a' * 10_000_000",
        "x = 'a' * 90_000; x.gsub(/a/) { 'bb' }",
        "YAML.load(\"a: &a [1,2]\\nb: &b [*a,*a,*a,*a,*a,*a,*a,*a,*a]\\nc: &c [*b,*b,*b,*b,*b,*b,*b,*b,*b]\\n"
        "d: &d [*c,*c,*c,*c,*c,*c,*c,*c,*c]\\ne: &e [*d,*d,*d,*d,*d,*d,*d,*d,*d]\\nf: [*e,*e,*e,*e,*e,*e,*e,*e]\").to_s",
        "'%99999999999d' % 1",
        "/(a+)+$/.match('a' * 30 + 'b')",
    ],
)
def test_bounds(code: str) -> None:
    evaluate(code)
