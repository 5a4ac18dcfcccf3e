"""CPU and memory: <vcpu>, <cputune>, <cpu> (mode, model, features, topology, NUMA cells),
<memory>, <memoryBacking>, <memtune>, <numatune>.

The machine layer decides what a mode means on this host (under TCG, host-passthrough
becomes libvirt's "maximum": QEMU's `-cpu max`); this only writes what it is given.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from dataclasses import dataclass, field

from vmctl.domain.xml import sub

CPU_MODES = ("host-model", "host-passthrough", "maximum", "custom")
MEMORY_BACKING = {  # element -> the attributes it may carry
    "hugepages": (), "nosharepages": (), "locked": (), "discard": (),
    "source": ("type",), "access": ("mode",), "allocation": ("mode", "threads"),
}
MEMTUNE = ("hard_limit", "soft_limit", "swap_hard_limit", "min_guarantee")


@dataclass(frozen=True)
class NumaCell:
    cpus: str  # "0-1"
    memory_kib: int
    mem_access: str | None = None  # shared | private


@dataclass(frozen=True)
class Memtune:
    name: str  # hard_limit | soft_limit | swap_hard_limit
    value: int
    unit: str = "KiB"


@dataclass(frozen=True)
class MemoryBacking:
    name: str  # hugepages | access | source | allocation | ...
    attrs: tuple[tuple[str, str], ...] = ()


@dataclass(frozen=True)
class CpuSpec:
    vcpus: int
    memory_mib: int
    cpuset: str | None = None
    mode: str | None = None  # None: no <cpu> mode (QEMU's default model)
    model: str | None = None  # custom mode only
    fallback: str | None = None  # allow | forbid
    features: tuple[tuple[str, str], ...] = ()  # (name, policy)
    topology: tuple[int, int, int] | None = None  # sockets, cores, threads
    numa: tuple[NumaCell, ...] = ()
    affinity: tuple[tuple[int, str], ...] = ()  # (vcpu, host cpuset)
    shares: int | None = None
    nodeset: str | None = None
    memory_backing: tuple[MemoryBacking, ...] = ()
    memtune: tuple[Memtune, ...] = field(default=())

    def __post_init__(self) -> None:
        if self.mode is not None and self.mode not in CPU_MODES:
            raise ValueError(f"cpu mode {self.mode!r}")
        for backing in self.memory_backing:
            allowed = MEMORY_BACKING.get(backing.name)
            if allowed is None or any(k not in allowed for k, _ in backing.attrs):
                raise ValueError(f"memory backing {backing!r}")
        for tune in self.memtune:
            if tune.name not in MEMTUNE:
                raise ValueError(f"memtune {tune.name!r}")


def build_memory(dom: ET.Element, spec: CpuSpec) -> None:
    """<memory>, <memoryBacking>, <memtune>, <numatune> (they precede <vcpu>)."""
    sub(dom, "memory", spec.memory_mib, unit="MiB")
    if spec.memory_backing:
        backing = sub(dom, "memoryBacking")
        for item in spec.memory_backing:
            sub(backing, item.name, **dict(item.attrs))
    if spec.memtune:
        tune = sub(dom, "memtune")
        for item in spec.memtune:
            sub(tune, item.name, item.value, unit=item.unit)
    if spec.nodeset is not None:
        sub(sub(dom, "numatune"), "memory", nodeset=spec.nodeset)


def build_vcpus(dom: ET.Element, spec: CpuSpec) -> None:
    """<vcpu> and <cputune>."""
    sub(dom, "vcpu", spec.vcpus, cpuset=spec.cpuset)
    if spec.affinity or spec.shares is not None:
        tune = sub(dom, "cputune")
        if spec.shares is not None:
            sub(tune, "shares", spec.shares)
        for vcpu, cpuset in spec.affinity:
            sub(tune, "vcpupin", vcpu=vcpu, cpuset=cpuset)


def build_cpu(dom: ET.Element, spec: CpuSpec) -> None:
    """<cpu>, when there is anything to say: a mode, features, a topology or NUMA cells."""
    if spec.mode is None and not (spec.features or spec.topology or spec.numa):
        return
    cpu = sub(dom, "cpu", mode=spec.mode, match="exact" if spec.mode == "custom" else None)
    if spec.mode == "custom":
        sub(cpu, "model", spec.model or "qemu64", fallback=spec.fallback or "allow")
    elif spec.mode == "host-model" and spec.fallback is not None:
        sub(cpu, "model", fallback=spec.fallback)
    if spec.topology is not None:
        sockets, cores, threads = spec.topology
        sub(cpu, "topology", sockets=sockets, cores=cores, threads=threads)
    for name, policy in spec.features:
        sub(cpu, "feature", policy=policy, name=name)
    if spec.numa:
        numa = sub(cpu, "numa")
        for index, cell in enumerate(spec.numa):
            sub(numa, "cell", id=index, cpus=cell.cpus, memory=cell.memory_kib, unit="KiB",
                memAccess=cell.mem_access)
