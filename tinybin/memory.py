"""Freed memory kept in the process for the next step, not handed back to the system and faulted in again.

A training step allocates and frees the same large arrays every step: each op's output, each
gradient, each padded copy, a few MB each. glibc's malloc gives an allocation above its mmap
threshold (128 kB at first, rising up to 32 MB as such blocks are freed) pages of its own,
unmapped again when it is freed, and hands the top of its heap back to the system whenever
more than the trim threshold lies free there. Pages that come back from the system are
zero-filled by the kernel on first touch, one page fault per 4 kB: WRN-20-1 srelu at batch 125
took 10,000 minor faults and 37 ms of system time per step. With both thresholds raised, the
heap keeps what it was given and every step after the first reuses it: 2 faults and 13-17 ms of
system time per step (WRN-20-4 srelu: 6,000 faults and 113 ms against 3 and 47 ms), and the same
bits (no number is computed differently). Peak resident memory, without and with: WRN-20-1
srelu 302 and 308 MB, WRN-20-4 srelu 838 and 845, WRN-20-10 baseline2 2706 and 2659, srelu 1800
and 1784 (`bench train`; the heap's reuse also spares some overlap of new and freed blocks).

So `import tinybin` raises both thresholds (glibc only; elsewhere nothing changes), unless
TINYBIN_KEEP_MEMORY=0. The PyTorch processes of `bench train --vs-torch` import tinybin too, so
both engines run with the same allocator settings. The cost: memory a finished run freed stays with the process (up to 2 GiB
of it) until it exits, where a training process would take it back at its next step anyway.

This module must not import NumPy.
"""
import ctypes
import os
import platform

KEEP_MEMORY = os.environ.get("TINYBIN_KEEP_MEMORY", "1") != "0"
_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3      # glibc's mallopt parameters (malloc.h)
_MMAP_THRESHOLD = 1 << 30    # blocks below 1 GiB come from the heap and go back to it
_TRIM_THRESHOLD = 2**31 - 1  # the heap's free top is handed back only above 2 GiB (mallopt takes an int)


def keep_freed_memory() -> bool:
    """Raise glibc's mmap and trim thresholds; True if they were set."""
    if not KEEP_MEMORY or platform.libc_ver()[0] != "glibc":
        return False
    try:
        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError):
        return False
    mallopt.argtypes, mallopt.restype = (ctypes.c_int, ctypes.c_int), ctypes.c_int
    return bool(mallopt(_M_MMAP_THRESHOLD, _MMAP_THRESHOLD)) and bool(mallopt(_M_TRIM_THRESHOLD, _TRIM_THRESHOLD))
