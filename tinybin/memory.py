"""Freed memory kept in the process for the next step, not handed back to the system and faulted in again.

A training step allocates and frees the same large arrays every step: each op's output, each
gradient, each padded copy, a few MB each. glibc's malloc gives an allocation above its mmap
threshold (128 kB at first, rising up to 32 MB as such blocks are freed) pages of its own,
unmapped again when it is freed, and hands the top of its heap back to the system whenever
more than the trim threshold lies free there. Pages that come back from the system are
zero-filled by the kernel on first touch, one page fault per page (4 kB, or 2 MB where NumPy's
huge-page request is granted): WRN-20-1 srelu at batch 125 took 10,000 minor faults and 37 ms
of system time per step. With the thresholds raised, the heap keeps what it was given and every
step after the first reuses it: 2 faults and 13-17 ms of system time per step (WRN-20-4 srelu:
6,000 faults and 113 ms against 3 and 47 ms), and the same bits (no number is computed
differently). Peak resident memory, without and with: WRN-20-1 srelu 302 and 308 MB, WRN-20-4
srelu 838 and 845, WRN-20-10 baseline2 2706 and 2659, srelu 1800 and 1784 (`bench train`).

So `import tinybin` calls `keep_freed_memory()` (glibc only; elsewhere nothing changes), unless
TINYBIN_KEEP_MEMORY is 0, false, no or off. It affects the whole process and the allocations
made after it: memory freed below a live block, and up to 2 GiB free at the heap's top, stays
with the process until it exits (a training process would take it back at its next step; a
notebook keeps its peak). The PyTorch processes of `bench train --vs-torch` import tinybin too,
so both engines run with the same allocator settings.
"""
import ctypes
import os
import platform

KEEP_MEMORY = os.environ.get("TINYBIN_KEEP_MEMORY", "1").strip().lower() not in ("0", "false", "no", "off")
_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD, _M_MMAP_MAX = -1, -3, -4   # glibc's mallopt parameters (malloc.h)
_MMAP_THRESHOLD = 1 << 30    # blocks below 1 GiB come from the heap and go back to it
_TRIM_THRESHOLD = 2**31 - 1  # the heap's free top is handed back only above 2 GiB (mallopt takes an int)


KEPT = False   # whether freed memory is kept in this process (set by keep_freed_memory)


def keep_freed_memory() -> bool:
    """Raise glibc's mmap and trim thresholds; True (and KEPT) if both took.

    A glibc that refuses an mmap threshold this high (older ones cap it at 32 MiB) is told to map
    no block at all (M_MMAP_MAX = 0), which every glibc accepts: every block comes from the heap."""
    if not KEEP_MEMORY or platform.libc_ver()[0] != "glibc":
        return False
    try:
        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError):
        return False
    mallopt.argtypes, mallopt.restype = (ctypes.c_int, ctypes.c_int), ctypes.c_int
    global KEPT
    heap = mallopt(_M_MMAP_THRESHOLD, _MMAP_THRESHOLD) or mallopt(_M_MMAP_MAX, 0)
    KEPT = bool(heap) and bool(mallopt(_M_TRIM_THRESHOLD, _TRIM_THRESHOLD))
    return KEPT
