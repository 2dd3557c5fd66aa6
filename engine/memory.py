"""Let CPU training reuse freed memory instead of asking the kernel for it every step.

glibc's malloc gives every block above its mmap threshold (at most 32 MB) a mapping of
its own and unmaps it on free. One batch-32 training step of DMIN allocates dozens of
such blocks (each MFB activation is 80 MB), so every step the kernel faults in and zeroes
gigabytes of fresh pages: about a quarter of the step's time on 2 cores. With mmap off and
trimming off, freed blocks stay in the heap and the next step reuses them. The price is
that the process keeps its peak heap size until it exits, which a training run reaches in
its first step anyway.
"""
import ctypes
import ctypes.util
import sys

# mallopt parameters, from glibc's malloc.h.
M_TRIM_THRESHOLD = -1
M_MMAP_MAX = -4


def glibc_mallopt():
    """glibc's mallopt, or None (not Linux, or another C library: musl's does nothing)."""
    if not sys.platform.startswith('linux'):
        return None
    try:
        libc = ctypes.CDLL(ctypes.util.find_library('c') or 'libc.so.6')
        mallopt = libc.mallopt
        libc.gnu_get_libc_version     # only glibc has it
    except (OSError, AttributeError):
        return None
    mallopt.argtypes = (ctypes.c_int, ctypes.c_int)
    return mallopt


def reuse_freed_memory():
    """Make glibc malloc keep freed memory for reuse. True where applied (Linux with glibc)."""
    mallopt = glibc_mallopt()
    # -1 as the trim threshold disables trimming (mallopt(3)); 0 mmaps: every block from the heap.
    return mallopt is not None and bool(mallopt(M_MMAP_MAX, 0)) and bool(mallopt(M_TRIM_THRESHOLD, -1))


# glibc's defaults (mallopt(3)): mmap for large blocks, return freed heap tops to the kernel.
DEFAULT_MMAP_MAX = 65536
DEFAULT_TRIM_THRESHOLD = 128 * 1024


def release_freed_memory(worker_id=None):
    """Undo reuse_freed_memory in this process (glibc's defaults again). For the DataLoader
    workers that a training process forks (`worker_id`: their index): they inherit its malloc
    settings, but only pass batches on, and should give back what they free."""
    mallopt = glibc_mallopt()
    return (mallopt is not None and bool(mallopt(M_MMAP_MAX, DEFAULT_MMAP_MAX))
            and bool(mallopt(M_TRIM_THRESHOLD, DEFAULT_TRIM_THRESHOLD)))
