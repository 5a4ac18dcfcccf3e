"""Forking a worker process that outlives vmctl's command if it must: the libvirt worker
(vmctl/libvirt_worker.py, started by hypervisor.py) and the QEMU monitor worker
(vmstate.QemuWorker) are both made here.

The child runs in a session of its own (Ctrl-C goes to vmctl, which then stops it), with
stdin and stdout on /dev/null, stderr appended to a log file, and no file descriptor but
its two pipes and the lock it is to hold (an inherited machine lock or the caller's stdout
would otherwise stay held for as long as the worker lives, after vmctl itself has gone).
It serves one JSON request per line and exits without atexit handlers or a second flush
of the parent's buffers.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TextIO


def fork(serve: Callable[[TextIO, TextIO], int], *, keep_fd: int, log_file: Path) -> tuple[int, TextIO, TextIO]:
    """Fork a worker that runs SERVE(requests, replies) and exits with its status, keeping
    KEEP_FD (a lock it holds until it exits). Returns its pid, the pipe to write requests
    to and the pipe to read replies from. Fork only from a single-threaded process (the
    caller checks): a lock another thread held would stay locked forever in the child."""
    to_child_r, to_child_w = os.pipe()
    to_parent_r, to_parent_w = os.pipe()
    sys.stdout.flush()
    sys.stderr.flush()
    pid = os.fork()
    if pid == 0:  # the worker
        code = 1
        try:
            os.setsid()
            null = os.open(os.devnull, os.O_RDWR)
            err = os.open(log_file, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
            os.dup2(null, 0)
            os.dup2(null, 1)
            os.dup2(err, 2)
            start = 3
            for fd in sorted({to_child_r, to_parent_w, keep_fd}):
                os.closerange(start, fd)
                start = fd + 1
            os.closerange(start, os.sysconf("SC_OPEN_MAX"))
            with os.fdopen(to_child_r, "r") as requests, os.fdopen(to_parent_w, "w") as out:
                code = serve(requests, out)
        finally:
            os._exit(code)
    os.close(to_child_r)
    os.close(to_parent_w)
    return pid, os.fdopen(to_child_w, "w"), os.fdopen(to_parent_r, "r")
