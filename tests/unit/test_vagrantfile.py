"""The machine-file evaluator: the Ruby subset, the Vagrant settings, and what is refused."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

import vmctl.vagrantfile
from vmctl.errors import ConfigError, UnsupportedConstruct
from vmctl.vagrantfile import load_project
from vmctl.vagrantfile.interpreter import Limits
from vmctl.vagrantfile.loader import evaluate_project
from vmctl.vagrantfile.model import ProjectConfig


def write(folder: Path, code: str, name: str = "Vagrantfile") -> Path:
    path = folder / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(textwrap.dedent(code))
    return path


def load(folder: Path, code: str, **kwargs: object) -> ProjectConfig:
    kwargs.setdefault("env", {"HOME": "/home/tester"})
    # In this process (load_project forks): the box lookup callbacks are observed here.
    return evaluate_project(write(folder, code), **kwargs)  # type: ignore[arg-type]


def output(folder: Path, code: str, **kwargs: object) -> list[str]:
    """What `puts` printed."""
    return list(load(folder, code, **kwargs).messages)


def failure(folder: Path, code: str, **kwargs: object) -> ConfigError:
    with pytest.raises(ConfigError) as info:
        load(folder, code, **kwargs)
    return info.value


def test_public_api() -> None:
    assert sorted(vmctl.vagrantfile.__all__) == ["MachineConfig", "ProjectConfig", "load_project", "machine_json"]


def test_help_does_not_import_tree_sitter() -> None:
    code = "import sys, vmctl.cli; vmctl.cli._register(); assert 'tree_sitter' not in sys.modules"
    subprocess.run([sys.executable, "-c", code], check=True)


# -- the Ruby subset ----------------------------------------------------------------------

LANGUAGE = [
    ('puts "a#{1 + 2}b"', ["a3b"]),
    ("puts 'no #{interp}\\n'", ["no #{interp}\\n"]),
    ('puts "tab\\tnew\\\\"', ["tab\tnew\\"]),
    ("puts :sym.inspect, :'quoted sym'.inspect", [":sym", ':"quoted sym"']),
    ("puts 1_000 + 0x10 + 0b11 + 0o7 + 010", ["1034"]),
    ("puts 7 / 2, -7 / 2, 7 % 3, -7 % 3, 7.0 / 2, 2**10", ["3", "-4", "1", "2", "3.5", "1024"]),
    ("puts [1, nil, true, 2.5, 'x', :y, {a: 1}].inspect", ['[1, nil, true, 2.5, "x", :y, {:a=>1}]']),
    ("h = {a: 1, 'b' => 2, :c => 3}; puts h[:a], h['b'], h[:b].inspect", ["1", "2", "nil"]),
    ('h = {"k": 1}; puts h.keys.inspect', ["[:k]"]),
    ("puts %w[a b c].inspect, %i[x y].inspect", ['["a", "b", "c"]', "[:x, :y]"]),
    ("x = <<~EOS\n  one\n    two\n  #{1 + 1}\nEOS\nputs x.inspect", ['"one\\n  two\\n2\\n"']),
    ("x = <<-EOS\n  keep\n  EOS\nputs x.inspect", ['"  keep\\n"']),
    ("x = <<~'EOS'\n  raw #{no}\nEOS\nputs x.inspect", ['"raw \\#{no}\\n"'.replace("\\#", "#")]),
    ('puts "%s-%02d" % ["core", 3], "%-6s|" % "ab", "%5.1f" % 3.14159, "%x" % 255, "%05d" % -42',
     ["core-03", "ab    |", "  3.1", "ff", "-0042"]),
    ('puts format("%<a>s=%{b}", a: 1, b: 2), "%{a}-%<b>05.1f" % {a: "x", b: 2}, "%#x" % 255', ["1=2", "x-002.0", "0xff"]),
    ("a, b = 1, 2; a, b = b, a; puts a, b", ["2", "1"]),
    ("a, *b = [1, 2, 3]; puts b.inspect", ["[2, 3]"]),
    ("(a, b), c = [1, 2], 3; puts a + b + c", ["6"]),
    ("x = nil; x ||= 5; x ||= 6; puts x", ["5"]),
    ("$g ||= 'first'; $g ||= 'second'; puts $g, $undefined.inspect", ["first", "nil"]),
    ("X = 3; puts X * 2", ["6"]),
    ("x = 5; x += 1; x -= 2; x *= 3; puts x", ["12"]),
    ("puts(1 < 2 ? 'y' : 'n')", ["y"]),
    ("x = if false then 1 elsif nil then 2 else 3 end; puts x", ["3"]),
    ("puts 'yes' unless nil", ["yes"]),
    ("puts 'no' if false", []),
    ("puts((true and not false) && !nil || false)", ["true"]),
    ("case 'core-02'\nwhen /^core/ then puts 'core'\nelse puts 'other'\nend", ["core"]),
    ("case 5\nwhen 1..3 then puts 'low'\nwhen 4, 5 then puts 'mid'\nend", ["mid"]),
    ("case 2.5\nwhen Integer then puts 'int'\nwhen Float then puts 'float'\nend", ["float"]),
    ("x = case\n when false then 1\n else 2\n end\nputs x", ["2"]),
    ("3.times { |i| next if i == 1; puts i }", ["0", "2"]),
    ("r = [1, 2, 3].each { |x| break x * 10 if x == 2 }; puts r", ["20"]),
    ("for i in 1..3 do next if i == 2; puts i end", ["1", "3"]),
    ("for i in [1, 2, 3]; break if i == 2; puts i; end", ["1"]),
    ("def f(a, b = 2, *rest, k: 3, **opts, &blk)\n  [a, b, rest, k, opts].inspect\nend\nputs f(1), f(1, 5, 6, 7, k: 9, z: 0)",
     ["[1, 2, [], 3, {}]", "[1, 5, [6, 7], 9, {:z=>0}]"]),
    ("def greet(name) = \"hi #{name}\"\nputs greet 'you'", ["hi you"]),
    ("def f(n)\n  return 'small' if n < 3\n  'big'\nend\nputs f(1), f(5)", ["small", "big"]),
    ("def twice\n  yield 1\n  yield 2\nend\ntwice { |x| puts x }", ["1", "2"]),
    ("def run(&b) = b.call(4)\nputs run { |x| x * x }", ["16"]),
    ("def maybe = block_given?\nputs maybe, maybe {}", ["false", "true"]),
    ("sq = ->(x) { x * x }; add = lambda { |a, b| a + b }; puts sq.(3), sq[4], add.call(1, 2)", ["9", "16", "3"]),
    ("count = 0; [1, 2].each { |x| count += x }; puts count", ["3"]),
    ("def helper; 42; end\nhelper = 1\nputs helper", ["1"]),
    ("puts [[1, 2], [3, 4]].map { |a, b| a * b }.inspect", ["[2, 12]"]),
    ("[[1, [2, 3]]].each { |a, (b, c)| puts a + b + c }", ["6"]),
    ("{a: 1, b: 2}.each_with_index { |(k, v), i| puts \"#{k}#{v}#{i}\" }", ["a10", "b21"]),
    ("{a: 1}.each_pair { |k, v| puts k.inspect, v }", [":a", "1"]),
    ("puts (1..4).select(&:even?).inspect, (1...4).to_a.inspect, (1..3).sum", ["[2, 4]", "[1, 2, 3]", "6"]),
    ("puts 1.upto(3).to_a.inspect, 3.downto(1).map { |i| i }.inspect", ["[1, 2, 3]", "[3, 2, 1]"]),
    ("puts %w[a b].each_with_index.map { |x, i| x * (i + 1) }.inspect", ['["a", "bb"]']),
    ("puts %w[a b].map.with_index(1) { |x, i| \"#{x}#{i}\" }.join(',')", ["a1,b2"]),
    ("puts [3, 1, 2].sort.inspect, [3, 1, 2].max, %w[bb a].min_by(&:size), [1, 2, 3].inject(:+)",
     ["[1, 2, 3]", "3", "a", "6"]),
    ("puts [1, [2, [3, nil]]].flatten.compact.inspect, [1, 1, 2].uniq.size, [1, 2] + [3] - [1]",
     ["[1, 2, 3]", "2", "2", "3"]),
    ("a = [1]; a << 2; a.push(3); puts a.inspect, a.first, a.last, a.include?(2), a.size", ["[1, 2, 3]", "1", "3", "true", "3"]),
    ("puts [1, 2, 3, 4].each_slice(2).to_a.inspect, [1, 2].zip([3, 4]).inspect", ["[[1, 2], [3, 4]]", "[[1, 3], [2, 4]]"]),
    ("puts [1, 2, 3].group_by(&:odd?).inspect, [1, 2, 3].partition(&:odd?).inspect",
     ["{true=>[1, 3], false=>[2]}", "[[1, 3], [2]]"]),
    ("h = {a: 1}; puts h.merge(b: 2).inspect, h.fetch(:a), h.fetch(:x, 0), h.fetch(:y) { |k| k.to_s * 2 }",
     ["{:a=>1, :b=>2}", "1", "0", "yy"]),
    ("h = {a: {b: [10, 20]}}; puts h.dig(:a, :b, 1), h.key?(:a), h.keys.inspect, h.values.size", ["20", "true", "[:a]", "1"]),
    ("h = {b: 2, a: 1}; puts h.sort_by { |k, v| v }.to_h.inspect, h.map { |k, v| v }.sum, h.select { |k, v| v > 1 }.inspect",
     ["{:a=>1, :b=>2}", "3", "{:b=>2}"]),
    ("h = Hash.new(0); %w[a b a].each { |w| h[w] += 1 }; puts h.inspect", ['{"a"=>2, "b"=>1}']),
    ("puts 'Hello'.upcase, 'Hello'.downcase, ' x '.strip, 'a,b,,c'.split(',').inspect, 'abc'.start_with?('ab')",
     ["HELLO", "hello", "x", '["a", "b", "", "c"]', "true"]),
    ("puts 'a-b-c'.gsub('-', '_'), 'a1b2'.gsub(/\\d/) { |d| (d.to_i * 2).to_s }, 'x.y'.sub(/\\./, '::')",
     ["a_b_c", "a2b4", "x::y"]),
    ("puts '5'.rjust(3, '0'), 'ab'.ljust(4, '.') + '|', '12abc'.to_i, 'x'.to_i, '3.5'.to_f, 'abc'.to_sym.inspect",
     ["005", "ab..|", "12", "0", "3.5", ":abc"]),
    ("puts 'abc'.include?('b'), ''.empty?, nil.nil?, 'a'.nil?, 'abc'.end_with?('bc'), 'abc'.length, 'ab' * 2",
     ["true", "true", "true", "false", "true", "3", "abab"]),
    ("s = 'a'; s << 'b'; s += 'c'; puts s, s.frozen?", ["abc", "false"]),
    ("if 'ver 1.22' =~ /(\\d+)\\.(\\d+)/ then puts $1, $2 end", ["1", "22"]),
    ("m = 'core-07'.match(/(?<n>\\d+)/); puts m[:n].to_i, 'abc'.match?(/B/i)", ["7", "true"]),
    ("puts 'host-1' !~ /x/", ["true"]),
    ("puts [1, 'a', :b, nil, 2.0].map(&:class).inspect", ["[Integer, String, Symbol, NilClass, Float]"]),
    ("puts 1.is_a?(Integer), 'x'.is_a?(String), [].kind_of?(Array), nil.to_a.inspect, 5.between?(1, 10)",
     ["true", "true", "true", "[]", "true"]),
    ("puts defined?(zz).inspect, defined?(puts), defined?($nope).inspect, defined?(String)", ["nil", "method", "nil", "constant"]),
    ("x = 1\nputs defined?(x)", ["local-variable"]),
    ("begin\n  nil.boom\nrescue NoMethodError => e\n  puts e.class, e.message\nend", ["NoMethodError", "undefined method `boom' for nil"]),
    ("begin\n  raise ArgumentError, 'bad'\nrescue TypeError\n  puts 't'\nrescue => e\n  puts e.message\nelse\n  puts 'else'\nensure\n  puts 'ensure'\nend",
     ["bad", "ensure"]),
    ("x = Integer('zz') rescue 7; puts x", ["7"]),
    ("puts [1, 2].frozen?, 'x'.freeze, 3.clamp(1, 2), 10.fdiv(4), 2.5.round, 2.49.round(1), 7.0.floor, -3.abs",
     ["false", "x", "2", "2.5", "3", "2.5", "7", "3"]),
    ("puts Integer('42') + Float('0.5'), String(5), Array(nil).inspect, Array([1]).inspect", ["42.5", "5", "[]", "[1]"]),
    ("puts [1, 2].to_s, {a: 1}.to_s, nil.to_s.empty?, :upcase.to_proc.call('x')", ["[1, 2]", "{:a=>1}", "true", "X"]),
    ("puts :a.to_proc.call('x') rescue puts 'rescued'", ["rescued"]),
    ("puts Gem::Version.new('2.3.4') >= Gem::Version.new('2.2'), Gem::Version.new('1.10') > Gem::Version.new('1.9')",
     ["true", "true"]),
    ("require 'yaml'; puts YAML.load(\"a:\\n  - 1\\n  - two\\nb: {c: true}\").inspect", ['{"a"=>[1, "two"], "b"=>{"c"=>true}}']),
    ("puts YAML.load(\":sym: :val\").inspect", ["{:sym=>:val}"]),
    ("require 'json'; puts JSON.parse('{\"a\": [1, null]}').inspect, JSON.parse('{\"a\": 1}', symbolize_names: true).inspect",
     ['{"a"=>[1, nil]}', "{:a=>1}"]),
    ("puts({a: [1, :b]}.to_json, JSON.pretty_generate([1]).lines.size)", ['{"a":[1,"b"]}', "3"]),
    ("puts Shellwords.escape(\"it's\"), 'a b'.shellescape, Base64.strict_encode64('hi')", ["'it'\"'\"'s'", "'a b'", "aGk="]),
    ("puts File.join('a', 'b/', '/c'), File.basename('/x/y.rb', '.rb'), File.extname('a.tar.gz'), File.dirname('/a/b/c', 2)",
     ["a/b/c", "y", ".gz", "/a"]),
    ("puts File.expand_path('~/x'), File.expand_path('../y', '/a/b')", ["/home/tester/x", "/a/y"]),
    ("puts __method__.inspect\ndef m = __method__\nputs m.inspect", ["nil", ":m"]),
    ("x = [1, 2, 3]\nputs x.sum { |v| v * 2 }, x.count(&:odd?), x.each_with_object([]) { |v, acc| acc << v * v }.inspect",
     ["12", "2", "[1, 4, 9]"]),
    ("puts (1..10).step(3).to_a.inspect, 1.step(10, 4).to_a.inspect", ["[1, 4, 7, 10]", "[1, 5, 9]"]),
    ("x = loop do break 5 end; puts x", ["5"]),
    ("i = 0; loop do i += 1; raise StopIteration if i == 3; end; puts i", ["3"]),
    ("puts 'abc'[0], 'abc'[1..], 'abc'[-2, 2], [1, 2, 3][1..].inspect, [1, 2, 3][-1]", ["a", "bc", "bc", "[2, 3]", "3"]),
    ("puts 'a'.ord, 98.chr, 'az'.succ, 'a'.upto('c').to_a.join", ["97", "b", "ba", "abc"]),
    ("puts 'a,b'.split(',', -1).size, 'a  b'.split.inspect, 'abc'.chars.inspect, \"l1\\nl2\".lines.size",
     ["2", '["a", "b"]', '["a", "b", "c"]', "2"]),
    ("print 'no', 'newline'; p 1, 'two'; warn 'to stderr'", ["nonewline", "1", '"two"', "to stderr"]),
    ("puts ['a', ['b']], nil", ["a", "b", ""]),
]


@pytest.mark.parametrize(("code", "expected"), LANGUAGE)
def test_language(tmp_path: Path, code: str, expected: list[str]) -> None:
    assert output(tmp_path, code) == expected


def test_env_overlay_never_writes_the_real_environment(tmp_path: Path) -> None:
    code = """
    ENV['VMCTL_TEST_OVERLAY'] = 'set'
    ENV['HOME'] = '/elsewhere'
    puts ENV['VMCTL_TEST_OVERLAY'], ENV.fetch('HOME'), ENV.key?('NOPE'), ENV.fetch('NOPE', 'd')
    ENV.delete('HOME')
    puts ENV['HOME'].inspect
    """
    assert output(tmp_path, code, env={"HOME": "/home/me"}) == ["set", "/elsewhere", "false", "d", "nil"]
    assert "VMCTL_TEST_OVERLAY" not in os.environ


def test_env_defaults_to_os_environ(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("VMCTL_TEST_NODES", "4")
    assert list(load_project(write(tmp_path, "puts ENV['VMCTL_TEST_NODES']")).messages) == ["4"]


def test_argv(tmp_path: Path) -> None:
    code = "puts ARGV.inspect\nputs 'provisioning' if ARGV[0] == 'up'"
    assert output(tmp_path, code, argv=("up", "web")) == ['["up", "web"]', "provisioning"]


def test_file_and_dir_inputs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "data.txt").write_text("one\ntwo\n")
    (tmp_path / "scripts").mkdir()
    (tmp_path / "scripts" / "a.sh").write_text("")
    monkeypatch.chdir(tmp_path)
    code = """
    puts File.exist?('data.txt'), File.file?('scripts'), File.directory?('scripts'), File.exists?('nope')
    puts File.read('data.txt').lines.size, File.readlines('data.txt', chomp: true).inspect
    puts __FILE__ == File.join(__dir__, 'Vagrantfile'), Dir.pwd == __dir__, Dir.home
    puts Dir.glob('scripts/*.sh').inspect
    File.open('data.txt') { |f| puts f.read.size }
    """
    assert output(tmp_path, code) == [
        "true", "false", "true", "false", "2", '["one", "two"]', "true", "true", "/home/tester",
        '["scripts/a.sh"]', "8",
    ]


def test_require_and_load_share_globals_not_locals(tmp_path: Path) -> None:
    write(tmp_path, "$from_config = 'cfg'\nlocal_in_config = 1\ndef helper = 'helped'\n", "config.rb")
    write(tmp_path, "$count = ($count || 0) + 1\n", "lib/counter.rb")
    code = """
    require_relative 'config'
    require File.join(__dir__, 'config.rb')   # already loaded: a no-op
    load 'lib/counter.rb'
    load 'lib/counter.rb'
    require 'yaml'                            # a standard library: a no-op
    puts $from_config, helper, defined?(local_in_config).inspect, $count
    """
    assert output(tmp_path, code) == ["cfg", "helped", "nil", "2"]


def test_eval_of_a_local_file_sees_the_callers_locals(tmp_path: Path) -> None:
    write(tmp_path, "config.vm.hostname = 'from-local'\n", "Vagrantfile.local")
    project = load(tmp_path, """
    Vagrant.configure("2") do |config|
      config.vm.box = "b"
      local = File.join(__dir__, "Vagrantfile.local")
      eval(File.read(local), binding) if File.exist?(local)
    end
    """)
    assert project.machines[0].hostname == "from-local"


# -- refused constructs -------------------------------------------------------------------

REFUSED = [
    ("system('touch /tmp/x')", "system"),
    ("x = `id`", "backticks"),
    ("x = %x(id)", "backticks"),
    ("exec 'ls'", "exec"),
    ("spawn 'ls'", "spawn"),
    ("Kernel.system('ls')", "system"),
    ("Open3.capture2('ls')", "Open3"),
    ("Process.pid", "Process"),
    ("FileUtils.rm_rf('/')", "FileUtils"),
    ("File.write('x', 'y')", "File.write"),
    ("File.delete('x')", "File.delete"),
    ("File.open('x', 'w') { |f| f << 'y' }", "File.open for writing"),
    ("File.open('x', mode: 'a')", "File.open for writing"),
    ("IO.write('x', 'y')", "IO.write"),
    ("IO.popen('ls')", "IO.popen"),
    ("Net::HTTP.get(URI('http://x'))", "Net"),
    ("open('http://example.com').read", "open"),
    ("Time.now", "Time"),
    ("rand(10)", "rand"),
    ("[1, 2].sample", "Array#sample"),
    ("SecureRandom.hex", "SecureRandom"),
    ("Socket.gethostname", "Socket"),
    ("eval('1 + 1')", "eval"),
    ("instance_eval { 1 }", "instance_eval"),
    ("'x'.send(:upcase)", "send"),
    ("define_method(:x) { 1 }", "define_method"),
    ("class Foo; end", "class"),
    ("module Foo; end", "module"),
    ("while true; end", "while"),
    ("until false; end", "until"),
    ("x = 1 while false", "while"),
    ("Dir.mkdir('x')", "Dir.mkdir"),
    ("Dir.chdir('/')", "Dir.chdir"),
    ("gets", "gets"),
    ("$stdin.read", "$stdin"),
]


@pytest.mark.parametrize(("code", "construct"), REFUSED)
def test_refused_constructs(tmp_path: Path, code: str, construct: str) -> None:
    error = failure(tmp_path, f"puts 'before'\n{code}\n")
    assert isinstance(error, UnsupportedConstruct)
    assert f"unsupported construct `{construct}" in error.message
    assert error.file == "Vagrantfile" and error.line == 2
    assert error.source_line == code
    assert f"at Vagrantfile:2\n    {code}" in str(error)


def test_refused_constructs_in_untaken_branches_are_fine(tmp_path: Path) -> None:
    code = """
    if false
      system("vagrant plugin install x")
      `rm -rf /`
      FileUtils.rm_rf("/")
      class Foo; end
    end
    def never_called = exec("ls")
    x = true ? 1 : Time.now
    puts "ok #{x}"
    """
    assert output(tmp_path, code) == ["ok 1"]


def test_refused_construct_is_not_rescued(tmp_path: Path) -> None:
    error = failure(tmp_path, "begin\n  system('ls')\nrescue Exception\n  puts 'hidden'\nend\n")
    assert isinstance(error, UnsupportedConstruct)


def test_nothing_runs_when_refused(tmp_path: Path) -> None:
    marker = tmp_path / "marker"
    failure(tmp_path, f"system('touch {marker}')\nFile.write('{marker}', 'x')\n")
    assert not marker.exists()


# -- errors ----------------------------------------------------------------------------------


def test_raise_abort_exit(tmp_path: Path) -> None:
    assert failure(tmp_path, "x = 1\nraise 'no config.rb'\n").message == "Vagrantfile aborted: no config.rb"
    error = failure(tmp_path, "abort 'Please install vagrant-foo'\n")
    assert (error.message, error.line) == ("Vagrantfile aborted: Please install vagrant-foo", 1)
    assert failure(tmp_path, "\nexit 1\n").line == 2
    assert "rescued" not in failure(tmp_path, "begin\n  abort 'x'\nrescue => e\n  puts 'rescued'\nend\n").message


def test_ruby_errors_name_the_line(tmp_path: Path) -> None:
    error = failure(tmp_path, "Vagrant.configure('2') do |config|\n  config.vm.box = nil.upcase\nend\n")
    assert error.message == "undefined method `upcase' for nil (NoMethodError)"
    assert (error.file, error.line) == ("Vagrantfile", 2)
    assert "undefined local variable or method `nope'" in failure(tmp_path, "puts nope\n").message


def test_errors_in_loaded_files_name_that_file(tmp_path: Path) -> None:
    write(tmp_path, "$x = 1\n$y = nil + 1\n", "config.rb")
    error = failure(tmp_path, "require_relative 'config'\n")
    assert (error.file, error.line) == ("config.rb", 2)


def test_syntax_error(tmp_path: Path) -> None:
    error = failure(tmp_path, "Vagrant.configure('2') do |config|\n  config.vm.box = 'x'\n")
    assert error.message.startswith("syntax error")
    assert error.file == "Vagrantfile"


@pytest.mark.parametrize(
    ("code", "what"),
    [
        ("loop { }", "loop iterations"),
        ("def f(n) = f(n + 1)\nf(0)", "nested"),
        ("x = 'ab' * 100_000_000", "string"),
        ("x = [0] * 100_000_000", "collection"),
        ("x = (1..10**9).to_a", "range too large"),
        ("x = 2 ** (2 ** 40)", "too large"),
    ],
)
def test_bounds(tmp_path: Path, code: str, what: str) -> None:
    start = time.monotonic()
    small = Limits(max_iterations=20_000, max_string=1_000_000, max_items=200_000)
    with pytest.raises(ConfigError) as info:
        evaluate_project(write(tmp_path, code), env={}, limits=small)
    assert what in info.value.message
    assert time.monotonic() - start < 5


def test_time_bound(tmp_path: Path) -> None:
    path = write(tmp_path, "x = 0\nloop { x += 1 }\n")
    start = time.monotonic()
    with pytest.raises(ConfigError, match="took longer than"):
        evaluate_project(path, env={}, limits=Limits(max_iterations=10**9, max_steps=10**9, seconds=0.3))
    assert time.monotonic() - start < 3


def test_deeply_nested_code_is_an_error_not_a_crash(tmp_path: Path) -> None:
    assert "nested" in failure(tmp_path, "x = " + "[" * 5000 + "]" * 5000 + "\n").message


def test_nested_regex_repetition_is_refused(tmp_path: Path) -> None:
    assert "nested repetition" in failure(tmp_path, "puts 'aaa' =~ /(a+)+$/\n").message


# -- settings -------------------------------------------------------------------------------


def test_defaults(tmp_path: Path) -> None:
    project = load(tmp_path, "Vagrant.configure('2') do |config|\n  config.vm.box = 'debian/bookworm64'\nend\n")
    (m,) = project.machines
    assert (m.name, m.box, m.cpus, m.memory, m.boot_timeout, m.primary, m.autostart) == (
        "default", "debian/bookworm64", 1, 512, 300, False, True,
    )
    assert (m.ssh.username, m.ssh.insert_key) == ("vagrant", True)
    assert [(f.host, f.guest, f.type, f.disabled) for f in m.synced_folders] == [(str(tmp_path), "/vagrant", "rsync", False)]
    assert project.warnings == () and project.primary() is m and project.root == tmp_path


def test_defines_inherit_and_override(tmp_path: Path) -> None:
    project = load(tmp_path, """
    Vagrant.configure("2") do |config|
      config.vm.box = "base"
      config.vm.provision "shell", inline: "echo all"
      config.vm.define "web", primary: true do |web|
        web.vm.hostname = "web"
        web.vm.provision "shell", inline: "echo web"
      end
      config.vm.define :db, autostart: false do |db|
        db.vm.box = "db-box"
      end
      config.vm.define "web" do |again|   # a second block for the same machine adds up
        again.vm.boot_timeout = 60
      end
      config.vm.hostname = "late"          # outside a define: every machine, defines still win
    end
    """)
    web, db = project.machines
    assert (web.name, web.box, web.hostname, web.primary, web.boot_timeout) == ("web", "base", "web", True, 60)
    assert [p.inline for p in web.provisioners] == ["echo all", "echo web"]
    assert (db.name, db.box, db.hostname, db.autostart) == ("db", "db-box", "late", False)
    assert project.primary() is web and project.machine("db") is db


def test_define_blocks_close_over_loop_variables(tmp_path: Path) -> None:
    project = load(tmp_path, """
    Vagrant.configure("2") do |config|
      (1..3).each do |i|
        config.vm.define "n#{i}" do |n|
          n.vm.network :private_network, ip: "10.0.0.#{10 + i}"
        end
      end
    end
    """)
    assert [m.private_networks[0].ip for m in project.machines] == ["10.0.0.11", "10.0.0.12", "10.0.0.13"]


def test_configure_blocks_run_after_the_file(tmp_path: Path) -> None:
    project = load(tmp_path, "Vagrant.configure('2') { |c| c.vm.box = $box }\n$box = 'set-later'\n")
    assert project.machines[0].box == "set-later"


def test_networks(tmp_path: Path) -> None:
    (m,) = load(tmp_path, """
    Vagrant.configure("2") do |config|
      config.vm.network "forwarded_port", guest: 80
      config.vm.network :forwarded_port, guest: 53, host: "5353", protocol: "udp", host_ip: "0.0.0.0", auto_correct: true, id: "dns"
      config.vm.network "private_network", ip: "10.1.2.3", netmask: 16, libvirt__network_name: "lab", auto_config: false
      config.vm.network "private_network", ip: "10.9.9.9"
    end
    """).machines
    assert [(p.guest, p.host, p.host_ip, p.protocol, p.auto_correct, p.id) for p in m.forwarded_ports] == [
        (80, None, "127.0.0.1", "tcp", False, None),
        (53, 5353, "0.0.0.0", "udp", True, "dns"),
    ]
    assert [(n.ip, n.netmask, n.name, n.auto_config) for n in m.private_networks] == [
        ("10.1.2.3", "255.255.0.0", "lab", False),
        ("10.9.9.9", "255.255.255.0", None, True),
    ]


def test_private_network_libvirt_options(tmp_path: Path) -> None:
    (m,) = load(tmp_path, """
    Vagrant.configure("2") do |config|
      config.vm.network "private_network", type: "dhcp"
      config.vm.network "private_network", type: "dhcp", libvirt__network_address: "10.7.0.0", libvirt__netmask: "255.255.0.0",
        libvirt__dhcp_start: "10.7.1.10", libvirt__dhcp_stop: "10.7.1.20", libvirt__network_name: "lab"
      config.vm.network "private_network", ip: "192.168.60.10", libvirt__host_ip: "192.168.60.254", libvirt__mac: "52-54-00-AA-BB-CC",
        libvirt__iface_name: "lab-tap0", libvirt__forward_mode: "none", libvirt__dhcp_enabled: true
      config.vm.network "private_network", ip: "192.168.61.10", libvirt__tunnel_type: "mcast"
      config.vm.network "private_network", ip: "192.168.62.10", libvirt__tunnel_type: "udp", libvirt__tunnel_port: "40002",
        libvirt__tunnel_local_port: 40001, libvirt__tunnel_local_ip: "127.0.0.2"
    end
    """).machines
    a, b, c, d, e = m.private_networks
    assert (e.tunnel_type, e.tunnel_ip, e.tunnel_port, e.tunnel_local_ip, e.tunnel_local_port) == (
        "udp", None, 40002, "127.0.0.2", 40001)  # what is not written is filled in at up (tunnels.py)
    assert (a.type, a.ip, a.subnet, a.netmask) == ("dhcp", None, "172.28.128.0/24", "255.255.255.0")
    assert (b.subnet, b.dhcp_start, b.dhcp_stop, b.name) == ("10.7.0.0/16", "10.7.1.10", "10.7.1.20", "lab")
    assert (c.ip, c.host_ip, c.mac, c.iface_name, c.dhcp_enabled) == (
        "192.168.60.10", "192.168.60.254", "52:54:00:aa:bb:cc", "lab-tap0", True)
    assert (d.tunnel_type, d.subnet) == ("mcast", "192.168.61.0/24")


def test_private_network_options_vmctl_does_not_apply_are_warned(tmp_path: Path) -> None:
    project = load(tmp_path, """
    Vagrant.configure("2") do |config|
      config.vm.network "private_network", ip: "10.3.0.5", libvirt__forward_device: "eth0",
        libvirt__guest_ipv6: "yes", libvirt__bogus: 1
    end
    """)
    text = "\n".join(project.warnings)
    assert "libvirt__forward_device: is not used" in text and "forwards nowhere" in text
    assert "libvirt__guest_ipv6" in text and "libvirt__bogus" in text
    assert project.machines[0].private_networks[0].forward_device is None


def test_forward_modes(tmp_path: Path) -> None:
    (m,) = load(tmp_path, """
    Vagrant.configure("2") do |config|
      config.vm.network "private_network", ip: "10.3.0.5", libvirt__forward_mode: "NAT"
      config.vm.network "private_network", ip: "10.4.0.5", libvirt__forward_mode: "route", libvirt__forward_device: "eth0"
      config.vm.network "private_network", ip: "10.5.0.5"
    end
    """).machines
    nat, route, isolated = m.private_networks
    assert (nat.forward_mode, nat.forward_device) == ("nat", None)
    assert (route.forward_mode, route.forward_device) == ("route", "eth0")
    assert (isolated.forward_mode, isolated.forward_device) == ("none", None)


def test_public_networks(tmp_path: Path) -> None:
    project = load(tmp_path, """
    Vagrant.configure("2") do |config|
      config.vm.network "private_network", ip: "10.3.0.5"
      config.vm.network "public_network", dev: "br0", ip: "192.168.1.50", netmask: "16"
      config.vm.network "public_network", bridge: ["en0: Wi-Fi (AirPort)", "eth1"], mode: "vepa", type: "direct",
        mac: "52:54:00:00:00:07", auto_config: false, bogus: 1
      config.vm.network "public_network"
    end
    """)
    (m,) = project.machines
    _, br, direct, default = m.private_networks
    assert (br.public, br.devs, br.attach, br.ip, br.netmask, br.type, br.subnet) == (
        True, ("br0",), None, "192.168.1.50", "255.255.0.0", "static", "192.168.0.0/16")
    assert (direct.devs, direct.attach, direct.macvtap_mode, direct.type, direct.ip, direct.mac, direct.auto_config) == (
        ("en0", "eth1"), "direct", "vepa", "dhcp", None, "52:54:00:00:00:07", False)
    assert (default.devs, default.attach, default.macvtap_mode) == ((), None, "bridge")
    assert any("public_network option bogus: is not used" in w for w in project.warnings)


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ('config.vm.network "private_network"', "needs ip:"),
        ('config.vm.network "private_network", type: "dhcp", libvirt__dhcp_enabled: false', "needs its DHCP server"),
        ('config.vm.network "private_network", ip: "10.0.0.5", libvirt__tunnel_type: "gre"', '"mcast"'),
        ('config.vm.network "private_network", ip: "10.0.0.5", libvirt__tunnel_type: "udp", libvirt__tunnel_port: 0',
         "not a port number"),
        ('config.vm.network "private_network", ip: "10.0.0.5", libvirt__tunnel_type: "udp", libvirt__tunnel_port: 5000, '
         'libvirt__tunnel_local_ip: "127.0.0.1", libvirt__tunnel_ip: "192.0.2.7"', "one is a loopback address"),
        ('config.vm.network "private_network", ip: "10.0.0.5", libvirt__tunnel_type: "udp", libvirt__tunnel_port: 5000, '
         'libvirt__tunnel_local_port: 5001, libvirt__tunnel_local_ip: "127.0.0.1,udp=1.2.3.4:5"', "not an IPv4 address"),
        ('config.vm.network "private_network", ip: "10.0.0.5", libvirt__tunnel_type: "udp", '
         'libvirt__tunnel_ip: "kvm1.example"', "not an IPv4 address"),
        ('config.vm.network "private_network", ip: "10.0.0.5", libvirt__tunnel_type: "udp", '
         'libvirt__tunnel_ip: "239.1.2.3"', "unicast"),
        ('config.vm.network "private_network", ip: "10.0.0.5", libvirt__tunnel_type: "udp", '
         'libvirt__tunnel_local_ip: "0.0.0.0"', "unicast"),
        ('config.vm.network "private_network", ip: "10.0.0.5", libvirt__forward_mode: "open"', "none (isolated), nat or route"),
        ('config.vm.network "private_network", ip: "10.0.0.5", libvirt__forward_mode: "masq"', "modes are"),
        ('config.vm.network "private_network", ip: "10.0.0.5", libvirt__forward_mode: "nat", '
         'libvirt__forward_device: "eth0; reboot"', "host interface name"),
        ('config.vm.network "private_network", ip: "10.0.0.5", libvirt__host_ip: "10.1.0.1"', "not an address in"),
        ('config.vm.network "private_network", ip: "10.0.0.5", libvirt__dhcp_start: "10.0.0.0"', "network address"),
        ('config.vm.network "private_network", ip: "10.0.0.5", libvirt__mac: "01:00:5e:00:00:01"', "unicast MAC"),
        ('config.vm.network "private_network", ip: "10.0.0.5", libvirt__iface_name: "a,b;c"', "host interface name"),
        ('config.vm.network "private_network", ip: "10.0.0.5", libvirt__iface_name: "vnet7"', "libvirt's or vmctl's"),
        ('config.vm.network "private_network", ip: "10.0.0.5", libvirt__iface_name: "sixteen-chars-xx"',
         "host interface name"),
        ('config.vm.network "private_network", ip: "10.0.0.300"', "not an IP address"),
        ('config.vm.network "public_network", dev: "eth0 up"', "host interface name"),
        ('config.vm.network "public_network", dev: "virbr0"', "Docker's or vmctl's own"),
        ('config.vm.network "public_network", dev: "lo"', "loopback"),
        ('config.vm.network "public_network", bridge: ["eth0", "vmtap-1234"]', "vmctl's own"),
        ('config.vm.network "public_network", dev: ["eth0"]', "one host device"),
        ('config.vm.network "public_network", dev: "eth0", mode: "bridged"', "macvtap modes are"),
        ('config.vm.network "public_network", dev: "eth0", type: "network", network_name: "x"', "not supported"),
        ('config.vm.network "public_network", dev: "eth0", portgroup: "x"', "not supported"),
        ('config.vm.network "public_network", dev: "eth0", type: "nat"', "vagrant-libvirt's types"),
        ('config.vm.network "public_network", dev: "eth0", ip: "10.0.0.300"', "not an IP address"),
        ('config.vm.network "public_network", dev: "eth0", mac: "01:00:5e:00:00:01"', "unicast MAC"),
        ('config.vm.network "forwarded_port", host: 8080', "needs guest:"),
        ('config.vm.network "forwarded_port", guest: 70000', "not a port number"),
        ('config.vm.network "forwarded_port", guest: 1, protocol: "sctp"', '"tcp" or "udp"'),
        ('config.vm.network "private_netwrk", ip: "10.0.0.1"', "did you mean 'private_network'?"),
    ],
)
def test_network_errors(tmp_path: Path, line: str, message: str) -> None:
    error = failure(tmp_path, f"Vagrant.configure('2') do |config|\n  {line}\nend\n")
    assert message in f"{error.message} {error.hint}"
    assert error.line == 2


def test_synced_folders(tmp_path: Path) -> None:
    (tmp_path / "src").mkdir()
    (m,) = load(tmp_path, """
    Vagrant.configure("2") do |config|
      config.vm.synced_folder ".", "/vagrant", disabled: true
      config.vm.synced_folder "src", "/srv/src/", rsync__exclude: ".git/", owner: "www"
      config.vm.synced_folder "/nfs/share", "/share", type: "nfs", disabled: true
      config.vm.synced_folder "~/missing", "/m", create: true
    end
    """).machines
    assert [(f.host, f.guest, f.type, f.disabled) for f in m.synced_folders] == [
        (str(tmp_path), "/vagrant", "rsync", True),
        (str(tmp_path / "src"), "/srv/src", "rsync", False),
        ("/nfs/share", "/share", "nfs", True),
        ("/home/tester/missing", "/m", "rsync", False),
    ]
    assert m.synced_folders[1].rsync_exclude == (".git/",) and m.synced_folders[1].owner == "www"


@pytest.mark.parametrize("kind", ["virtualbox", "smb"])
def test_synced_folder_types_vmctl_cannot_share(tmp_path: Path, kind: str) -> None:
    error = failure(tmp_path, f"Vagrant.configure('2') do |c|\n  c.vm.synced_folder '.', '/data', type: '{kind}'\nend\n")
    assert f'type "{kind}" is not supported' in error.message and "rsync" in (error.hint or "") and error.line == 2


@pytest.mark.parametrize("kind", ["nfs", "9p", "virtiofs"])
def test_two_way_synced_folder_types(tmp_path: Path, kind: str) -> None:
    (m,) = load(tmp_path, f"Vagrant.configure('2') do |c|\n  c.vm.synced_folder '.', '/data', type: '{kind}'\nend\n").machines
    (data,) = [f for f in m.synced_folders if f.guest == "/data"]
    assert (data.type, data.two_way, data.host) == (kind, True, str(tmp_path))


def test_synced_folder_host_path_must_exist(tmp_path: Path) -> None:
    error = failure(tmp_path, "Vagrant.configure('2') { |c| c.vm.synced_folder 'nope', '/nope' }\n")
    assert "does not exist" in error.message


def test_provisioners(tmp_path: Path) -> None:
    write(tmp_path, "echo hi\n", "scripts/setup.sh")
    write(tmp_path, "motd\n", "files/motd")
    (m,) = load(tmp_path, """
    Vagrant.configure("2") do |config|
      config.vm.provision "shell", inline: "echo $1", args: "--a 'b c'"
      config.vm.provision :shell, path: "scripts/setup.sh", args: ["x y", 2], env: {"A" => 1, B: "b"}, privileged: false, run: "always"
      config.vm.provision "named", type: "shell", inline: "echo named", run: :never
      config.vm.provision "file", source: "files/motd", destination: "/etc/motd"
      config.vm.provision "shell" do |s|
        s.name = "block form"
        s.inline = "echo block"
      end
    end
    """).machines
    p0, p1, p2, p3, p4 = m.provisioners
    assert (p0.inline, p0.args, p0.args_verbatim, p0.privileged, p0.run) == ("echo $1", ("--a 'b c'",), True, True, "once")
    assert (p1.path, p1.args, p1.args_verbatim, p1.env, p1.privileged, p1.run) == (
        str(tmp_path / "scripts/setup.sh"), ("x y", "2"), False, {"A": "1", "B": "b"}, False, "always",
    )
    assert (p2.name, p2.run) == ("named", "never")
    assert (p3.type, p3.source, p3.destination) == ("file", str(tmp_path / "files/motd"), "/etc/motd")
    assert (p4.name, p4.inline) == ("block form", "echo block")


@pytest.mark.parametrize("kind", ["puppet", "chef_solo", "salt", "podman", "magic"])
def test_other_provisioners_are_errors(tmp_path: Path, kind: str) -> None:
    error = failure(tmp_path, f"Vagrant.configure('2') do |c|\n  c.vm.provision '{kind}' do |p|\n    p.playbook = 'x'\n  end\nend\n")
    assert kind in error.message and "shell, file, ansible" in error.message and error.line == 2


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ('config.vm.provision "shell"', "needs inline:"),
        ('config.vm.provision "shell", inline: "x", path: "y"', "not both"),
        ('config.vm.provision "shell", path: "missing.sh"', "does not exist"),
        ('config.vm.provision "shell", path: "https://x/y.sh"', "is a URL"),
        ('config.vm.provision "shell", inline: "x", run: "sometimes"', '"once", "always" or "never"'),
        ('config.vm.provision "file", source: "x"', "source: and destination:"),
    ],
)
def test_provisioner_errors(tmp_path: Path, line: str, message: str) -> None:
    assert message in failure(tmp_path, f"Vagrant.configure('2') do |config|\n  {line}\nend\n").message


def test_unknown_settings_suggest_a_name(tmp_path: Path) -> None:
    error = failure(tmp_path, "Vagrant.configure('2') do |config|\n  config.vm.hostnme = 'x'\nend\n")
    assert (error.message, error.hint, error.line) == (
        "unknown setting `config.vm.hostnme`", "did you mean `config.vm.hostname`?", 2,
    )
    error = failure(tmp_path, "Vagrant.configure('2') do |config|\n  config.ssh.usernam = 'x'\nend\n")
    assert error.hint == "did you mean `config.ssh.username`?"
    error = failure(tmp_path, "Vagrant.configure('2') do |c|\n  c.vm.provider :libvirt do |lv|\n    lv.memmory = 1\n  end\nend\n")
    assert (error.hint, error.line) == ("did you mean `libvirt.memory`?", 3)


def test_unused_settings_and_plugins_are_warnings(tmp_path: Path) -> None:
    project = load(tmp_path, """
    Vagrant.configure("2") do |config|
      config.vm.box_check_update = false
      config.vm.graceful_halt_timeout = 30
      config.vm.box_download_insecure = true
      config.ssh.forward_agent = true
      config.vbguest.auto_update = false
      config.hostmanager.enabled = true
      config.vm.provider :libvirt do |lv|
        lv.nested = true
        lv.storage :file, size: "10G"
      end
    end
    """)
    # graceful_halt_timeout, forward_agent, nested and storage take effect now (forwarding the
    # agent with a warning of what it gives the guest).
    assert project.warnings == (
        "Vagrantfile:7: config.vbguest.auto_update is a setting of a plugin (vbguest) that vmctl does not use (ignored)",
        "Vagrantfile:8: config.hostmanager.enabled is a setting of a plugin (hostmanager) that vmctl does not use (ignored)",
        "Vagrantfile:5: config.vm.box_download_insecure = true: the box's server is not verified "
        "(anyone on the network path can hand you another box)",
        "Vagrantfile:6: config.ssh.forward_agent: the guest can use the keys of your SSH agent while you are logged in",
    )
    (m,) = project.machines
    settings = [i.setting for i in m.ignored]
    assert "vm.box_check_update" in settings and "libvirt.storage" not in settings
    assert m.graceful_halt_timeout == 30 and m.ssh.forward_agent is True
    assert m.libvirt.nested is True and m.libvirt.disks[0].size == 10 * 1024**3


def test_libvirt_provider(tmp_path: Path) -> None:
    (m,) = load(tmp_path, """
    Vagrant.configure("2") do |config|
      config.vm.box = "generic"
      config.vm.provider :libvirt do |lv, override|
        lv.memory = 2048
        lv.cpus = 2
        lv.uri = "qemu:///system"
        lv.driver = "qemu"
        lv.kernel = "boot/vmlinuz"
        lv.initrd = "/abs/initrd"
        lv.cmd_line = "console=ttyS0"
        lv.machine_virtual_size = 20
        override.vm.box = "generic/libvirt"
        override.ssh.username = "core"
      end
    end
    """).machines
    assert (m.memory, m.cpus, m.box, m.ssh.username) == (2048, 2, "generic/libvirt", "core")
    assert m.libvirt.kernel == str(tmp_path / "boot/vmlinuz") and m.libvirt.initrd == "/abs/initrd"
    assert (m.libvirt.uri, m.libvirt.driver, m.libvirt.cmd_line, m.libvirt.machine_virtual_size) == (
        "qemu:///system", "qemu", "console=ttyS0", 20,
    )


def test_libvirt_driver_must_be_kvm_or_qemu(tmp_path: Path) -> None:
    error = failure(tmp_path, "Vagrant.configure('2') do |c|\n  c.vm.provider :libvirt do |lv|\n    lv.driver = 'xen'\n  end\nend\n")
    assert "libvirt.driver must be one of kvm, qemu, not 'xen'" in error.message and error.line == 3


def test_other_providers_are_recorded_never_applied(tmp_path: Path) -> None:
    project = load(tmp_path, """
    Vagrant.configure("2") do |config|
      config.vm.box = "b"
      config.vm.provider "virtualbox" do |vb, override|
        vb.memory = 4096
        vb.customize ["modifyvm", :id, "--ioapic", "on"]
        override.vm.box = "vb-only"
        config.vm.hostname = "not-applied"
      end
      config.vm.provider :docker do |d|
        d.image = Time.now.to_s
      end
    end
    """)
    (m,) = project.machines
    assert (m.memory, m.box, m.hostname) == (512, "b", None)
    settings = {i.setting: i.value for i in m.ignored}
    assert settings["virtualbox.memory"] == 4096
    assert settings["virtualbox.customize"] == [["modifyvm", "id", "--ioapic", "on"]]
    assert settings["vm.hostname"] == "not-applied"
    assert any("docker provider block could not be evaluated" in w for w in project.warnings)


def test_box_vagrantfile_is_the_lowest_layer(tmp_path: Path) -> None:
    box = write(tmp_path / "box", """
    Vagrant.configure("2") do |config|
      config.ssh.username = "core"
      config.vm.boot_timeout = 30
      config.vm.network "forwarded_port", guest: 1, host: 1001
      config.vm.provision "shell", inline: "from box"
      config.vm.provider :libvirt do |libvirt|
        libvirt.kernel = File.join(File.dirname(__FILE__), "vmlinuz")
        libvirt.initrd = "initrd"
        libvirt.cmd_line = "console=ttyS0"
        libvirt.memory = 256
      end
    end
    """)
    calls: list[tuple[str, str | None]] = []

    def lookup(name: str, constraint: str | None) -> Path | None:
        calls.append((name, constraint))
        return box if name == "tiny" else None

    project = load(tmp_path, """
    Vagrant.configure("2") do |config|
      config.vm.box = "tiny"
      config.vm.box_version = ">= 1"
      config.vm.boot_timeout = 90
      config.vm.network "forwarded_port", guest: 2, host: 1002
      config.vm.provision "shell", inline: "from project"
      config.vm.define "a"
      config.vm.define "b" do |b|
        b.vm.box = "other"
      end
    end
    """, box_vagrantfile=lookup)
    a, b = project.machines
    assert calls == [("tiny", ">= 1"), ("other", ">= 1")]
    assert (a.ssh.username, a.boot_timeout, a.memory) == ("core", 90, 256)
    assert [p.guest for p in a.forwarded_ports] == [1, 2]
    assert [p.inline for p in a.provisioners] == ["from box", "from project"]
    assert (a.libvirt.kernel, a.libvirt.initrd, a.libvirt.cmd_line) == (
        str(tmp_path / "box/vmlinuz"), str(tmp_path / "box/initrd"), "console=ttyS0",
    )
    assert (b.ssh.username, b.libvirt.kernel) == ("vagrant", None)


def test_box_lookup_failure_is_a_config_error(tmp_path: Path) -> None:
    def lookup(name: str, constraint: str | None) -> Path | None:
        raise RuntimeError("store is broken")

    error = failure(tmp_path, "Vagrant.configure('2') { |c| c.vm.box = 'x' }\n", box_vagrantfile=lookup)
    assert "store is broken" in error.message


def test_triggers(tmp_path: Path) -> None:
    project = load(tmp_path, """
    Vagrant.configure("2") do |config|
      config.trigger.before :up do |t|
        t.name = "hello"
        t.info = "coming up"
        t.run = {inline: "echo host"}
      end
      config.trigger.after [:up, :provision], run_remote: {inline: "echo guest"}, on_error: :continue
      config.trigger.before :destroy do |t|
        t.ruby do |env, machine|
          puts "never run"
        end
      end
      config.vm.define "one"
      config.vm.define "two" do |two|
        two.trigger.after :halt, info: "only two", only_on: "two"
      end
    end
    """)
    one, two = project.machines
    t0, t1, t2 = one.triggers
    assert (t0.when, t0.commands, t0.name, t0.info, t0.run_inline) == ("before", ("up",), "hello", "coming up", "echo host")
    assert (t1.when, t1.commands, t1.run_remote_inline, t1.on_error) == ("after", ("up", "provision"), "echo guest", "continue")
    assert (t2.commands, t2.run_inline) == (("destroy",), None)
    assert [t.info for t in two.triggers][-1] == "only two"
    assert any("trigger.ruby is not supported" in w for w in project.warnings)
    assert "never run" not in project.messages


def test_require_version_and_has_plugin(tmp_path: Path) -> None:
    code = "Vagrant.require_version '>= 1.6', '< 3'\nputs Vagrant.has_plugin?('vagrant-libvirt')\n"
    assert output(tmp_path, code) == ["true"]
    assert output(tmp_path, code, has_plugin=False) == ["false"]
    error = failure(tmp_path, "Vagrant.require_version '~> 2.4'\n")
    assert "requires Vagrant ~> 2.4" in error.message and "2.3.4" in error.message


def test_config_values_read_back(tmp_path: Path) -> None:
    project = load(tmp_path, """
    Vagrant.configure("2") do |config|
      config.vm.box = "debian/bookworm64"
      config.vm.hostname = config.vm.box.split("/").last
      config.vm.provider :virtualbox do |vb|
        vb.name = config.vm.hostname
      end
    end
    """)
    (m,) = project.machines
    assert m.hostname == "bookworm64"
    assert {i.setting: i.value for i in m.ignored}["virtualbox.name"] == "bookworm64"


def test_version_1_configuration_is_refused(tmp_path: Path) -> None:
    assert 'version "2"' in failure(tmp_path, "Vagrant.configure('1') { |c| }\n").message


def test_typical_vagrantfile_is_fast(tmp_path: Path) -> None:
    corpus = Path(__file__).resolve().parent.parent / "vagrantfiles" / "kubernetes-cluster"
    evaluate_project(corpus / "Vagrantfile", env={})  # warm up (imports); the evaluator alone, no fork
    start = time.perf_counter()
    for _ in range(10):
        evaluate_project(corpus / "Vagrantfile", env={})
    per_file = (time.perf_counter() - start) / 10
    assert per_file < 0.05, f"{per_file * 1000:.1f} ms per evaluation"


def test_evaluations_do_not_leak_into_each_other(tmp_path: Path) -> None:
    assert output(tmp_path, "RbConfig::CONFIG['host_os'] = 'mutated'\n$leak = 1\nputs RbConfig::CONFIG['host_os']") == ["mutated"]
    assert output(tmp_path, "puts RbConfig::CONFIG['host_os'] == 'mutated', $leak.inspect") == ["false", "nil"]


def test_windows_line_endings(tmp_path: Path) -> None:
    (tmp_path / "Vagrantfile").write_bytes(
        b'Vagrant.configure("2") do |config|\r\n  config.vm.provision "shell", inline: <<~EOS\r\n'
        b"    echo hi\r\n  EOS\r\nend\r\n"
    )
    (m,) = load_project(tmp_path / "Vagrantfile", env={}).machines
    assert m.provisioners[0].inline == "echo hi\n"
