"""Placement on the hosts of VMCTL_HOSTS (vmctl/placement.py): the choice by free memory."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from vmctl import placement
from vmctl.errors import HypervisorError, MachineError

A, B, C = "qemu+ssh://root@kvm-a/system", "qemu+ssh://kvm-b/system", "qemu+tcp://kvm-c/system"
GIB = 1024**3


def test_hosts_are_uris_separated_by_spaces_or_commas() -> None:
    assert placement.hosts(f" {A}, {B}\n{C} {A}") == [A, B, C]
    assert placement.hosts("") == []
    with pytest.raises(MachineError, match="'kvm-a' is not a libvirt URI"):
        placement.hosts("kvm-a")


def test_the_host_with_the_most_free_memory() -> None:
    assert placement.choose({A: 2 * GIB, B: 8 * GIB, C: 4 * GIB}) == B
    assert placement.choose({A: 4 * GIB, B: 4 * GIB}) == A  # a tie: the first listed
    assert placement.choose({A: None, B: GIB}) == B  # not reached: left out
    assert placement.choose({A: None}) is None


def machine(name: str, memory: int = 1024, uri: str | None = None, created: bool = False) -> SimpleNamespace:
    return SimpleNamespace(name=name, state=object() if created else None,
                           config=SimpleNamespace(memory=memory, libvirt=SimpleNamespace(uri=uri)))


def test_place_counts_what_it_placed_and_skips_hosts_it_cannot_reach(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("VMCTL_HOSTS", f"{A} {B} {C}")
    monkeypatch.delenv("VMCTL_LIBVIRT_URI", raising=False)
    free = {A: 3 * GIB, B: 4 * GIB}

    def ask(uri: str) -> int:
        if uri not in free:
            raise HypervisorError("could not connect")
        return free[uri]

    said: list[str] = []
    machines = [machine("web", 2048), machine("db", 2048), machine("named", uri=C), machine("old", created=True),
                machine("cache", 1024)]
    placed = placement.place(machines, said.append, ask)  # type: ignore[arg-type]
    # web -> B (4 GiB, 2 left), db -> A (3 GiB, 1 left), cache -> B (2 GiB); named and old are not placed
    assert placed == {"web": B, "db": A, "cache": B}
    assert any("kvm-c is left out: could not connect" in line for line in said)
    assert "==> web: placed on kvm-b (4096 MiB free, of VMCTL_HOSTS)" in said
    monkeypatch.setenv("VMCTL_LIBVIRT_URI", A)  # it wins over placement
    assert placement.place(machines, said.append, ask) == {}  # type: ignore[arg-type]
    monkeypatch.delenv("VMCTL_LIBVIRT_URI")
    free.clear()
    with pytest.raises(MachineError, match="none of the hosts of VMCTL_HOSTS can be reached"):
        placement.place(machines, said.append, ask)  # type: ignore[arg-type]
