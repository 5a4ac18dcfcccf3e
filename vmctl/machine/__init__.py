"""Machines: the lifecycle (up, halt, reload, suspend, resume, provision, destroy) of one
machine of a project, on libvirt, with its state on disk.

    state.py      what lives where; the state file, the lock, what libvirt says
    disks.py      every disk of the machine: one list, one place that creates and removes them
    boot.py       the box, the domain, host ports, SSH and the key swap
    configure.py  the running guest: hostname, networks, folders, provisioners, triggers
    lifecycle.py  up, halt, reload, suspend, resume, destroy: what ties them together
"""

from vmctl.machine.lifecycle import Emit, Machine
from vmctl.machine.state import ForwardState, MachineState, stopped_on_purpose

__all__ = ["Emit", "ForwardState", "Machine", "MachineState", "stopped_on_purpose"]
