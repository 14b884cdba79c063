"""A function run in a forked process alongside this one: the training stage's candidate fits.

The time-shift candidates of the training stage are independent fits of the same
initial weights, each drawing from its own seeded generator, so a second core can
run one while this process runs another, with the results of fitting them one after
the other, bit for bit. Forking is used only where it is safe and cheap: Linux, no
CUDA device, torch single-threaded in this process (the default ``common.num_threads``;
a forked child of a multi-threaded OpenMP runtime can hang) and at least two cores
for this process. Anywhere else, or when the child fails, the caller runs the work
itself.
"""
from __future__ import annotations

import ctypes
import logging
import multiprocessing
import os
import signal
import sys
import traceback
from typing import Any, Callable

import torch

log = logging.getLogger("tinyml_modelzoo")
_PR_SET_PDEATHSIG = 1  # <linux/prctl.h>


def spare_cores() -> int:
    """Cores this process may fork work onto (0: run everything here)."""
    if not sys.platform.startswith("linux") or torch.get_num_threads() != 1 or torch.cuda.is_available():
        return 0
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    return max(0, cores - 1)


def start(name: str, fn: Callable[..., Any], *args: Any) -> "SideRun | None":
    """A :class:`SideRun`, or None (logged) when the fork itself fails (e.g. no memory for it)."""
    try:
        return SideRun(name, fn, *args)
    except OSError as err:
        log.warning("cannot fork a process for %s (%s); it runs here instead", name, err)
        return None


class SideRun:
    """``fn(*args)`` in a forked child. :meth:`result` waits for its return value (sent back pickled)
    and gives None when the child failed or did not answer in time (logged); :meth:`stop` ends it."""

    def __init__(self, name: str, fn: Callable[..., Any], *args: Any):
        self.name = name
        context = multiprocessing.get_context("fork")
        self._receive, send = context.Pipe(duplex=False)
        self._process = context.Process(target=_child, args=(send, fn, args, os.getpid()), name=name, daemon=True)
        try:
            self._process.start()
        except OSError:
            self._receive.close()
            raise
        finally:
            send.close()  # the child holds the other end: EOF here when it exits without an answer

    def result(self, timeout: float) -> Any | None:
        status, value = "late", f"no answer within {timeout:.0f} s"
        try:
            if self._receive.poll(timeout):
                status, value = self._receive.recv()
        except EOFError:
            status, value = "died", None
        self.stop()
        if status == "ok":
            return value
        log.warning("%s failed in its own process (%s); it runs here instead",
                    self.name, value or f"exit status {self._process.exitcode}")
        return None

    def stop(self) -> None:
        if self._process.is_alive():
            self._process.terminate()
        self._process.join()
        self._receive.close()


def _child(send, fn: Callable[..., Any], args: tuple, parent: int) -> None:
    _end_with(parent)
    try:
        answer = ("ok", fn(*args))
    except BaseException as err:  # noqa: BLE001 - reported to the parent, which runs the work itself
        answer = ("error", "".join(traceback.format_exception_only(type(err), err)).strip())
    send.send(answer)
    send.close()


def _end_with(parent: int) -> None:
    """Have the kernel stop this child when its parent dies, even by SIGKILL (an interrupted run
    must not leave a fit running on): Linux's PR_SET_PDEATHSIG."""
    try:
        ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)
    except (OSError, AttributeError):  # not Linux's C library: the child ends when its fit does
        return
    if os.getppid() != parent:  # the parent died before the request
        os._exit(1)
