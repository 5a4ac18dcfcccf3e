"""vmctl/records.py: a Frozen class behaves as @dataclass(frozen=True) from its first use,
and a pickled instance is read back without making the class."""

from __future__ import annotations

import dataclasses
import pickle
import subprocess
import sys
from pathlib import Path

import pytest

from vmctl import records
from vmctl.vagrantfile import model


class Point(records.Frozen):
    x: int
    y: int = 0
    tags: tuple[str, ...] = ()
    extra: dict[str, int] = dataclasses.field(default_factory=dict)


@dataclasses.dataclass(frozen=True)
class EagerPoint:
    x: int
    y: int = 0
    tags: tuple[str, ...] = ()
    extra: dict[str, int] = dataclasses.field(default_factory=dict)


def test_a_frozen_record_is_a_frozen_dataclass() -> None:
    p = Point(1, tags=("a",))
    assert dataclasses.is_dataclass(p) and Point.__dataclass_params__.frozen
    assert [f.name for f in dataclasses.fields(Point)] == [f.name for f in dataclasses.fields(EagerPoint)]
    assert repr(p) == repr(EagerPoint(1, tags=("a",))).replace("EagerPoint", "Point")
    assert p == Point(1, 0, ("a",)) and p != Point(2) and p != EagerPoint(1, tags=("a",))
    assert dataclasses.asdict(p) == {"x": 1, "y": 0, "tags": ("a",), "extra": {}}
    assert dataclasses.replace(p, y=5).y == 5
    assert Point.__match_args__ == ("x", "y", "tags", "extra")
    with pytest.raises(dataclasses.FrozenInstanceError):
        p.x = 3  # type: ignore[misc]
    with pytest.raises(dataclasses.FrozenInstanceError):
        del p.x  # type: ignore[misc]
    with pytest.raises(TypeError):
        Point()  # type: ignore[call-arg]


def test_the_first_use_of_each_kind_makes_the_class() -> None:
    for use in (lambda c: c(1), lambda c: c.__dataclass_fields__, lambda c: dataclasses.fields(c)):
        class Fresh(records.Frozen):
            x: int

        assert "__init__" not in Fresh.__dict__
        use(Fresh)
        assert {"__init__", "__eq__", "__hash__", "__repr__", "__setattr__"} <= set(Fresh.__dict__)


def test_hash_equals_the_eager_dataclass_hash() -> None:
    class Plain(records.Frozen):
        x: int
        y: str = "a"

    assert hash(Plain(1)) == hash((1, "a"))
    assert len({Plain(1), Plain(1), Plain(2)}) == 2


def test_model_settings_pickle_round_trip() -> None:
    cfg = model.MachineConfig(name="web", forwarded_ports=(model.ForwardedPort(80, 8080),))
    back = pickle.loads(pickle.dumps(cfg))
    assert back == cfg and back.libvirt == model.LibvirtSettings()
    with pytest.raises(dataclasses.FrozenInstanceError):
        back.name = "db"  # type: ignore[misc]


def test_unpickling_makes_no_class_and_reads_every_field() -> None:
    """In a fresh process: an unpickled MachineConfig is read without any class being made."""
    cfg = model.MachineConfig(name="web", forwarded_ports=(model.ForwardedPort(80, 8080),))
    code = ("import pickle, sys\nfrom vmctl import records\n"
            "cfg = pickle.loads(sys.stdin.buffer.read())\n"
            "print(cfg.name, cfg.forwarded_ports[0].host, cfg.libvirt.memory, cfg.ssh.username, cfg.memory)\n"
            "print(sorted(c.__name__ for c in records._made))")
    proc = subprocess.run([sys.executable, "-c", code], input=pickle.dumps(cfg), capture_output=True, timeout=60,
                          cwd=Path(__file__).resolve().parents[2], check=False)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.decode().splitlines() == [
        f"web 8080 {cfg.libvirt.memory} {cfg.ssh.username} {cfg.memory}", "[]"]


def test_every_settings_class_makes_a_frozen_dataclass() -> None:
    """A Frozen class is checked by dataclass() on first use, not at import: make each one
    here, so a field without a default after one with a default fails a test."""
    classes = [c for c in vars(model).values() if isinstance(c, type) and issubclass(c, records.Frozen)
               and c is not records.Frozen]
    assert len(classes) >= 40
    for cls in classes:
        assert dataclasses.fields(cls) and cls.__dataclass_params__.frozen, cls
