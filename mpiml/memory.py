"""Returning freed memory to the operating system.

glibc's allocator keeps freed blocks of its heap for later use and gives memory back
only from the top of the heap, past a threshold. After a phase that frees many
temporaries (the bin-edge sample, the binning), that memory stays resident, is counted
in the process's RSS and PSS, and is the same on every rank of a node.
:func:`release_free_memory` hands it back (glibc's ``malloc_trim``); elsewhere it does
nothing.
"""

__all__ = ["release_free_memory"]

import ctypes
import ctypes.util


def _malloc_trim():
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        trim = libc.malloc_trim
    except (OSError, AttributeError, TypeError):
        return None
    trim.argtypes = [ctypes.c_size_t]
    trim.restype = ctypes.c_int
    return trim


_TRIM = _malloc_trim()


def release_free_memory():
    """Give the allocator's free memory back to the operating system (glibc); local.
    Returns whether anything could be asked (False where glibc is absent)."""
    if _TRIM is None:
        return False
    _TRIM(0)
    return True
