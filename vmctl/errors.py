"""Every error vmctl reports on purpose.

    VmctlError                    one message, an optional hint, an exit status (1)
    ├── UsageError                bad flags or arguments (exit status 2)
    ├── ConfigError               the Vagrantfile: names the file and the line
    │   └── UnsupportedConstruct  Ruby outside the safe subset
    ├── BoxError                  box store, catalogs, archives, images
    │   ├── DownloadError         network, HTTP status, TLS
    │   └── ChecksumError         a download that does not match its checksum
    ├── BuildError                box recipes (mmdebstrap and friends)
    ├── MissingToolError          a program vmctl needs is not installed
    ├── HypervisorError           libvirt or QEMU refused or failed
    ├── MachineError              lifecycle: unknown machine, wrong state, busy
    │   ├── BootTimeoutError      the guest never answered SSH
    │   ├── ProvisionError        a provisioner failed
    │   └── SnapshotError         snapshots: unknown or taken name, a disk that is full
    ├── SSHError                  connecting, authenticating, host key pinning
    │   └── HostKeyMismatchError  the guest's host key changed
    └── StateError                a corrupt state file (names it)

Lower layers raise these; only the CLI prints them (``error: ...`` and ``hint: ...``).
Foreign exceptions (libvirt, paramiko, requests, OSError) are translated where they
enter, so the CLI never shows a traceback unless ``--debug`` is given.
"""

from __future__ import annotations


class VmctlError(Exception):
    """An error with a message for people, a hint of what to do, and an exit status."""

    exit_code = 1

    def __init__(self, message: str, *, hint: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint

    def __str__(self) -> str:
        return self.message


class UsageError(VmctlError):
    exit_code = 2


class ConfigError(VmctlError):
    """An error in a machine file, located at FILE:LINE when known."""

    def __init__(
        self,
        message: str,
        *,
        file: str | None = None,
        line: int | None = None,
        source_line: str | None = None,
        hint: str | None = None,
    ) -> None:
        super().__init__(message, hint=hint)
        self.file = file
        self.line = line
        self.source_line = source_line

    def __str__(self) -> str:
        where = ""
        if self.file is not None:
            where = f" at {self.file}:{self.line}" if self.line else f" in {self.file}"
        text = f"{self.message}{where}"
        if self.source_line:
            text += f"\n    {self.source_line.strip()}"
        return text


class UnsupportedConstruct(ConfigError):
    pass


class BoxError(VmctlError):
    pass


class DownloadError(BoxError):
    pass


class ChecksumError(BoxError):
    pass


class BuildError(VmctlError):
    pass


class MissingToolError(VmctlError):
    pass


class HypervisorError(VmctlError):
    pass


class MachineError(VmctlError):
    pass


class BootTimeoutError(MachineError):
    pass


class ProvisionError(MachineError):
    pass


class SnapshotError(MachineError):
    pass


class SSHError(VmctlError):
    pass


class HostKeyMismatchError(SSHError):
    pass


class StateError(VmctlError):
    pass
