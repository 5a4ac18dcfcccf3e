"""vmctl: Vagrant-compatible virtual machines on libvirt/QEMU.

Nothing is imported here on purpose: `vmctl --version` must start fast.
"""

__version__ = "0.1.0"
