"""Evaluation in a child process under hard limits: the bounds hold for any input.

The evaluator counts steps, sizes and time between steps (interpreter.Limits), but one
builtin on a crafted value (`inspect` of a structure sharing itself, a regex that
backtracks, a parse of a pathological literal) can run long or grow large inside a single
step. So `run_bounded` forks, and the child evaluates under an address-space limit and a
CPU-time limit while the parent keeps the wall clock; what the child returns (settings or
an error) comes back pickled through a pipe. A child that is killed or runs out of time
or memory is a LimitError naming the bound, never a hang of the command.
"""

from __future__ import annotations

import os
import pickle
import resource
import select
import signal
import time
import traceback
from collections.abc import Callable
from typing import Any, TypeVar

from vmctl.vagrantfile.values import LimitError

T = TypeVar("T")

# Headroom above what the process already maps: real Vagrantfiles need a few MiB.
MEMORY_BYTES = 768 * 1024 * 1024


def _mapped_bytes() -> int:
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmSize:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return 0


def run_bounded(fn: Callable[[], T], *, seconds: float, memory_bytes: int = MEMORY_BYTES, what: str) -> T:
    """FN() evaluated in a child process, with at most SECONDS of CPU and wall-clock time
    and MEMORY_BYTES more address space; its exception is re-raised here. WHAT names the
    input in the LimitError (e.g. the Vagrantfile's name)."""
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: never returns
        status = 0
        try:
            os.close(read_end)
            signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent answers Ctrl-C
            cpu = int(seconds) + 1
            resource.setrlimit(resource.RLIMIT_CPU, (cpu, cpu + 1))
            limit = _mapped_bytes() + memory_bytes
            resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
            try:
                outcome: tuple[str, Any, str] = ("ok", fn(), "")
            except MemoryError:
                outcome = ("error", LimitError(_out_of_memory(memory_bytes), file=what), "")
            except BaseException as exc:  # noqa: BLE001 - handed to the parent
                outcome = ("error", exc, traceback.format_exc())
            try:
                data = pickle.dumps(outcome)
            except Exception as exc:  # noqa: BLE001 - an exception that cannot travel
                data = pickle.dumps(("error", RuntimeError(f"{type(outcome[1]).__name__}: {outcome[1]}"), str(exc)))
            view = memoryview(data)
            while view:
                view = view[os.write(write_end, view):]
        except BaseException:  # noqa: BLE001 - out of memory while pickling, a broken pipe
            status = 1
        finally:
            os._exit(status)
    os.close(write_end)
    chunks: list[bytes] = []
    deadline = time.monotonic() + seconds + 5  # the parse and the pickling on a busy machine
    finished = timed_out = False
    try:
        while not finished:
            left = deadline - time.monotonic()
            if left <= 0:
                timed_out = True
                break
            ready, _, _ = select.select([read_end], [], [], left)
            if ready:
                chunk = os.read(read_end, 1 << 20)
                finished = not chunk
                chunks.append(chunk)
    finally:
        os.close(read_end)
        if not finished:  # out of time, or Ctrl-C here: the child goes too
            os.kill(pid, signal.SIGKILL)
        _, wait_status = os.waitpid(pid, 0)
    if timed_out:
        raise LimitError(f"evaluation stopped: took longer than {seconds:g} s", file=what)
    data = b"".join(chunks)
    if not data:
        sig = os.WTERMSIG(wait_status) if os.WIFSIGNALED(wait_status) else None
        if sig in (signal.SIGXCPU, signal.SIGKILL):
            raise LimitError(f"evaluation stopped: used more than {seconds:g} s of CPU time", file=what)
        raise LimitError(
            _out_of_memory(memory_bytes) if sig in (None, signal.SIGSEGV, signal.SIGABRT)
            else f"evaluation stopped: killed by signal {sig}",
            file=what,
        )
    kind, value, trace = pickle.loads(data)  # noqa: S301 - our own child's bytes
    if kind == "ok":
        return value  # type: ignore[no-any-return]
    if trace:
        import logging

        logging.getLogger("vmctl.vagrantfile").debug("in the evaluating process:\n%s", trace)
    raise value



def _out_of_memory(memory_bytes: int) -> str:
    return f"evaluation stopped: ran out of memory (more than {memory_bytes // (1024 * 1024)} MiB)"
