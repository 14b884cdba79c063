"""Build the generated C on the host and require bit-exact golden outputs."""
from __future__ import annotations

import shutil
import subprocess
import tempfile
from pathlib import Path

import numpy as np

CFLAGS = ("-std=c99", "-Wall", "-Wextra", "-Werror", "-O2")


class HostCheckError(RuntimeError):
    """The generated C did not build or did not reproduce the int8 reference."""


def find_compiler() -> str | None:
    return shutil.which("cc") or shutil.which("gcc") or shutil.which("clang")


def host_check(artifacts: Path, expected: np.ndarray, timeout_s: float = 120.0) -> str:
    """Compile ``mod.c`` + ``test_main.c`` with ``CFLAGS``, run, compare every output
    with ``expected`` (int8 ``(N, K)``). Returns ``'bit-exact'`` or
    ``'skipped: no C compiler'``; raises ``HostCheckError`` otherwise."""
    cc = find_compiler()
    if cc is None:
        return "skipped: no C compiler"
    with tempfile.TemporaryDirectory(prefix="tinyml_host_") as tmp:
        exe = Path(tmp) / "test_model"
        cmd = [cc, *CFLAGS, "-o", str(exe), str(artifacts / "mod.c"), str(artifacts / "test_main.c")]
        build = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout_s)
        if build.returncode != 0:
            raise HostCheckError(f"generated C failed to build ({' '.join(cmd)}):\n{build.stderr[-2000:]}")
        run = subprocess.run([str(exe)], capture_output=True, text=True, timeout=timeout_s)
    outputs = [[int(v) for v in line.split(":", 1)[1].split()] for line in run.stdout.splitlines()
               if line.startswith("out ")]
    got = np.array(outputs, dtype=np.int64)
    if run.returncode != 0 or got.shape != expected.shape or not np.array_equal(got, expected.astype(np.int64)):
        bad = [] if got.shape != expected.shape else np.nonzero((got != expected).any(axis=1))[0].tolist()
        raise HostCheckError(f"C outputs differ from the int8 reference (vectors {bad or 'all'}):\n"
                             f"{run.stdout[-1500:]}")
    return "bit-exact"
