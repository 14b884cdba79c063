"""Optional compiled kernels of the fast supernet: C loops built on first use, called through ctypes.

The supernet is complete without them (pure PyTorch in :mod:`..fused_ops` and
:mod:`..state_block`). On
the skinny tensors of a tiny-ML supernet the PyTorch path spends most of its
time on per-op overhead and repeated passes over memory; these kernels fuse the
element-wise parts of a cell-state block (batch norm, ReLU, mixing, pools,
im2col/col2im and their gradients) into a few loops. Matrix products stay in
PyTorch (its BLAS).

The library is compiled with the system C compiler (``cc``/``gcc``/``clang``,
``-O3 -march=native``) into a per-user cache, keyed by the source, the flags
and the CPU, so a shared home folder never runs a binary built for another CPU.
No compiler, or a failed build, logs one warning and keeps the PyTorch path.

Environment: ``TINYML_NAS_NATIVE=0`` disables the kernels;
``TINYML_NATIVE_CACHE`` sets the cache folder (default
``$XDG_CACHE_HOME/tinyml_modelzoo/native`` or ``~/.cache/...``).
"""
from __future__ import annotations

import ctypes
import hashlib
import logging
import os
import platform
import shutil
import subprocess
import tempfile
from pathlib import Path

import torch

log = logging.getLogger(__name__)

SOURCE_DIR = Path(__file__).resolve().parent
SOURCES = ('kernels.c', 'pools.h', 'kernels.h', 'gemm.h', 'state.h')
CFLAGS = ('-O3', '-fopenmp-simd', '-fPIC', '-fno-math-errno', '-fno-trapping-math')
PRECISIONS = ('32', '64')  # one object each (kernels.c's KERNELS_ONLY), compiled at once
# Tried in order until one builds: OpenMP + this CPU's vector units, then without OpenMP, then portable.
FLAG_SETS = (('-march=native', '-fopenmp'), ('-march=native',), ())
# With OpenMP the kernels run on PyTorch's threads: its Linux wheels ship libgomp.so.1, which the
# loader reuses for this library (same soname). Compilers without OpenMP build the serial kernels.
COMPILE_TIMEOUT_S = 180

_P, _I, _D = ctypes.c_void_p, ctypes.c_longlong, ctypes.c_double
SIGNATURES = {  # name: argument types (pointers _P, integers _I, floats _D)
    'im2col': (_P, _I, _I, _I, _I, _I, _I, _I, _I, _P),
    'col2im': (_P, _I, _I, _I, _I, _I, _I, _I, _P),
    'bn_forward': (_P, _I, _I, _I, _D, _P, _P),
    'bn_apply': (_P, _I, _I, _I, _P, _P),
    'mix_forward': (_P, _P, _P, _I, _I, _I, _I, _I, _I, _I, _I, _I, _P, _I, _I, _I, _P),
    'mix_backward': (_P, _P, _P, _P, _I, _I, _I, _I, _I, _I, _I, _I, _I, _P, _I, _I, _I, _I, _I, _P, _P, _P, _P),
    'bn_backward': (_P, _P, _I, _I, _I, _P, _P),
    'gemm': (_P, _I, _I, _I, _I, _P, _I, _I, _P, _I, _I),
    'gemm_nt': (_P, _I, _I, _P, _I, _I, _I, _P, _I, _I),
    'conv_blocks_forward': (_P, _I, _P, _I, _I, _I, _P, _I, _I, _P, _I),
    'conv_blocks_input_grad': (_P, _I, _P, _I, _I, _I, _P, _I, _I, _P, _I),
    'conv_blocks_weight_grad': (_P, _I, _P, _I, _I, _I, _P, _I, _I, _P, _I),
    'state_forward': (_P,) * 11 + (_I,) * 10 + (_D,) + (_I,) * 8,
    'state_backward': (_P,) * 17 + (_I,) * 19,
    'cell_forward': (_P, _P, _I, _D),
    'cell_backward': (_P, _P, _I),
}
_SUFFIX = {torch.float32: 'f32', torch.float64: 'f64'}


def cache_dir() -> Path:
    if os.environ.get('TINYML_NATIVE_CACHE'):
        return Path(os.environ['TINYML_NATIVE_CACHE'])
    base = os.environ.get('XDG_CACHE_HOME') or Path.home() / '.cache'
    return Path(base) / 'tinyml_modelzoo' / 'native'


def fallback_cache_dir() -> Path:
    """Where the kernels are built when :func:`cache_dir` cannot be written: a per-user temporary folder."""
    user = os.getuid() if hasattr(os, 'getuid') else os.environ.get('USERNAME', 'user')
    return Path(tempfile.gettempdir()) / f'tinyml_modelzoo-native-{user}'


def find_compiler() -> str | None:
    return os.environ.get('CC') or shutil.which('cc') or shutil.which('gcc') or shutil.which('clang')


def _cpu_identity() -> str:
    """The CPU's feature flags (what -march=native depends on), or the machine name."""
    try:
        for line in Path('/proc/cpuinfo').read_text().splitlines():
            if line.startswith(('flags', 'Features')):
                return line
    except OSError:
        pass
    return platform.machine() + platform.processor()


def _build_key(compiler: str) -> str:
    h = hashlib.sha256()
    for name in SOURCES:
        h.update((SOURCE_DIR / name).read_bytes())
    h.update(' '.join((compiler, *CFLAGS, *sum(FLAG_SETS, ()), _cpu_identity(), platform.platform())).encode())
    return h.hexdigest()[:16]


def _compile(compiler: str, target: Path) -> None:
    """Build the library to ``target`` atomically (parallel processes may race: last rename wins).

    The float32 and float64 kernels are compiled at once as two objects (``-DKERNELS_ONLY``), then
    linked: the first use of the kernels waits about half as long on two cores.
    """
    target.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=target.parent) as work:
        library = Path(work) / 'kernels.so'
        for extra in FLAG_SETS:
            objects = [str(Path(work) / f'kernels{bits}.o') for bits in PRECISIONS]
            compiles = [[compiler, *CFLAGS, *extra, f'-DKERNELS_ONLY={bits}', '-c', '-o', obj,
                         str(SOURCE_DIR / 'kernels.c')] for bits, obj in zip(PRECISIONS, objects)]
            failure = _run_at_once(compiles) or _run_at_once([[compiler, '-shared', *extra, '-o', str(library),
                                                               *objects, '-lm']])
            if failure is None:
                break
        else:
            cmd, stderr = failure
            raise RuntimeError(f"{' '.join(cmd)} failed:\n{stderr[-2000:]}")
        os.replace(library, target)


def _run_at_once(commands: list[list[str]]) -> tuple[list[str], str] | None:
    """Run the commands concurrently; the first failed one and its stderr, or None when all succeed."""
    try:
        running = [subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
                   for cmd in commands]
    except FileNotFoundError:
        raise RuntimeError(f"C compiler {commands[0][0]!r} not found (install gcc or set CC)") from None
    failure = None
    try:
        for cmd, proc in zip(commands, running):
            _, stderr = proc.communicate(timeout=COMPILE_TIMEOUT_S)
            if proc.returncode != 0 and failure is None:
                failure = cmd, stderr
    finally:
        for proc in running:  # after a timeout: stop the others too
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    return failure


class Kernels:
    """The loaded library; ``call(name, dtype, *args)`` with tensors passed as pointers (None = NULL)."""

    def __init__(self, lib: ctypes.CDLL, path: Path):
        self.path = path
        self._fns = {}
        for name, argtypes in SIGNATURES.items():
            for dtype, suffix in _SUFFIX.items():
                fn = getattr(lib, f'{name}_{suffix}')
                fn.argtypes, fn.restype = argtypes, None
                self._fns[name, dtype] = fn

    @staticmethod
    def supports(*tensors: torch.Tensor) -> bool:
        """True when all tensors are CPU float32 or float64 of one dtype."""
        dtype = tensors[0].dtype
        if dtype not in _SUFFIX:
            return False
        for t in tensors:  # a plain loop: this runs thousands of times per search step
            if not t.is_cpu or t.dtype != dtype:
                return False
        return True

    def call(self, name: str, dtype: torch.dtype, *args) -> None:
        self._fns[name, dtype](*[a.data_ptr() if isinstance(a, torch.Tensor) else a for a in args])


_loaded: Kernels | None = None
_tried = False


def enabled() -> bool:
    return os.environ.get('TINYML_NAS_NATIVE', '1').strip().lower() not in ('0', 'false', 'no', 'off')


def kernels() -> Kernels | None:
    """The compiled kernels, building them on first call; None when disabled or unavailable.

    ``TINYML_NAS_NATIVE`` is read on the first call only (see :func:`reset`).
    """
    global _loaded, _tried
    if not _tried:
        _tried = True
        _loaded = _load() if enabled() else None
    return _loaded


def reset() -> None:
    """Forget the loaded kernels: the next :func:`kernels` call re-reads the environment."""
    global _loaded, _tried
    _loaded, _tried = None, False


def _load() -> Kernels | None:
    compiler = find_compiler()
    if compiler is None:
        log.warning("no C compiler found (cc/gcc/clang): the DARTS supernet uses its slower PyTorch kernels")
        return None
    name = f'kernels-{_build_key(compiler)}.so'
    error: Exception | None = None
    for folder in (cache_dir(), fallback_cache_dir()):  # e.g. a read-only home: the temporary folder next
        try:
            return _build_and_load(compiler, folder / name)
        except OSError as err:
            log.info("cannot use %s for the DARTS supernet kernels: %s", folder, err)
            error = err
        except (RuntimeError, subprocess.SubprocessError, AttributeError) as err:  # the build itself failed
            error = err
            break
    log.warning("DARTS supernet kernels unavailable, using the slower PyTorch kernels: %s", error)
    return None


def _build_and_load(compiler: str, target: Path) -> Kernels:
    if not target.exists():
        log.info("compiling DARTS supernet kernels to %s", target)
        _compile(compiler, target)
    return Kernels(ctypes.CDLL(str(target)), target)
