"""The local multiply: ``C = A @ B`` or ``C += A @ B`` through BLAS GEMM.

numpy's ``matmul`` cannot accumulate into its output, so a rank-``w`` update
``C += A @ B`` costs a scratch product and a pass over ``C``. When SciPy is
installed, this module calls the BLAS ``?gemm`` that SciPy exports for Cython
(``scipy.linalg.cython_blas``) through ``ctypes``, which accumulates in place
(``beta = 1``), accepts strided operands and output, and releases the GIL, so
thread ranks multiply in parallel. Without SciPy it falls back to ``numpy.matmul``.

SciPy's BLAS is loaded when :mod:`mpiml.linalg` is imported: import it at the top of
a program, before ``mpiml.run`` limits the BLAS threads of the libraries loaded by then
(one per rank when ranks share a node).
"""

__all__ = ["gemm", "blas_available"]

import ctypes

import numpy as np

_TYPES = {np.dtype(np.float32): "s", np.dtype(np.float64): "d",
          np.dtype(np.complex64): "c", np.dtype(np.complex128): "z"}


def _capsule_address(capsule):
    """Address stored in a PyCapsule (how Cython exports C functions)."""
    get_name = ctypes.PYFUNCTYPE(ctypes.c_char_p, ctypes.py_object)(
        ("PyCapsule_GetName", ctypes.pythonapi))
    get_pointer = ctypes.PYFUNCTYPE(ctypes.c_void_p, ctypes.py_object, ctypes.c_char_p)(
        ("PyCapsule_GetPointer", ctypes.pythonapi))
    return get_pointer(capsule, get_name(capsule))


def _load_kernels():
    """``{dtype: ctypes function}`` for the BLAS ?gemm routines, or ``{}``."""
    try:
        from scipy.linalg import cython_blas
    except ImportError:
        return {}
    voidp = ctypes.c_void_p
    proto = ctypes.CFUNCTYPE(None, *([voidp] * 13))  # Fortran ABI: every argument by address
    kernels = {}
    for dtype, prefix in _TYPES.items():
        capsule = cython_blas.__pyx_capi__.get(prefix + "gemm")
        if capsule is not None:
            kernels[dtype] = proto(_capsule_address(capsule))
    return kernels


_KERNELS = _load_kernels()
_N = ctypes.c_char_p(b"N")
_T = ctypes.c_char_p(b"T")


def _layout(x):
    """How BLAS reads the 2-D array ``x`` as the transposed (column-major) operand:
    ``(trans, ld)``, or ``None`` if ``x`` must be copied first."""
    rows, cols = x.shape
    size = x.itemsize
    s0, s1 = x.strides
    if s0 % size or s1 % size:
        return None
    s0, s1 = s0 // size, s1 // size
    if cols <= 1 or s1 == 1:          # rows are contiguous: x^T is column-major
        ld = s0 if rows > 1 else max(cols, 1)
        return (_N, ld) if ld >= max(cols, 1) else None
    if rows <= 1 or s0 == 1:          # columns are contiguous: x is column-major
        ld = s1 if cols > 1 else max(rows, 1)
        return (_T, ld) if ld >= max(rows, 1) else None
    return None


def _blas_gemm(kernel, a, b, c, beta):
    """``c = a @ b + beta * c`` with BLAS, computed as ``c^T = b^T a^T`` so that the
    row-major arrays are read as column-major ones without copies."""
    la = _layout(a)
    if la is None:
        a = np.ascontiguousarray(a)
        la = _layout(a)
    lb = _layout(b)
    if lb is None:
        b = np.ascontiguousarray(b)
        lb = _layout(b)
    m, k = a.shape
    n = b.shape[1]
    ldc = c.strides[0] // c.itemsize if m > 1 else max(n, 1)
    ints = np.array([n, m, k, lb[1], la[1], ldc], dtype=np.intc)
    scalars = np.array([1, beta], dtype=c.dtype)
    addr = ints.ctypes.data
    step = ints.itemsize
    sc = scalars.ctypes.data
    kernel(lb[0], la[0], addr, addr + step, addr + 2 * step,
           sc, b.ctypes.data, addr + 3 * step, a.ctypes.data, addr + 4 * step,
           sc + scalars.itemsize, c.ctypes.data, addr + 5 * step)


def _c_writable_by_blas(c):
    if c.ndim != 2 or not c.flags.writeable:
        return False
    size = c.itemsize
    s0, s1 = c.strides
    if c.shape[1] > 1 and s1 != size:
        return False
    return c.shape[0] <= 1 or (s0 % size == 0 and s0 // size >= max(c.shape[1], 1))


def gemm(a, b, c, accumulate=False, scratch=None):
    """Local multiply into ``c``: ``c = a @ b``, or ``c += a @ b`` with ``accumulate``.

    Parameters
    ----------
    a : ndarray of shape (m, k)
    b : ndarray of shape (k, n)
    c : ndarray of shape (m, n)
        Output, written in place; may be a strided view (e.g. a block of a larger
        array). Same dtype as ``a`` and ``b``.
    accumulate : bool
        Add the product to ``c`` instead of overwriting it.
    scratch : ndarray, optional
        Flat buffer of at least ``m * n`` elements for the fallback path (no BLAS
        from SciPy), which computes the product there and then adds it.

    Returns
    -------
    ndarray
        ``c``.

    Notes
    -----
    Not collective: a rank-local operation.
    """
    m, k = a.shape
    n = b.shape[1]
    if m == 0 or n == 0:
        return c
    if k == 0:
        if not accumulate:
            c[...] = 0
        return c
    kernel = _KERNELS.get(c.dtype)
    if kernel is not None and a.dtype == c.dtype and b.dtype == c.dtype \
            and _c_writable_by_blas(c):
        _blas_gemm(kernel, a, b, c, 1 if accumulate else 0)
        return c
    if not accumulate:
        np.matmul(a, b, out=c)
        return c
    if scratch is not None and scratch.size >= m * n and scratch.dtype == c.dtype:
        tmp = scratch[:m * n].reshape(m, n)
        np.matmul(a, b, out=tmp)
    else:
        tmp = a @ b
    c += tmp
    return c


def _self_check():
    """Drop the BLAS path if it disagrees with numpy (an unexpected BLAS ABI)."""
    rng = np.random.default_rng(0)
    for dtype in list(_KERNELS):
        a = rng.standard_normal((5, 3)).astype(dtype)
        b = rng.standard_normal((4, 7)).astype(dtype)
        c = rng.standard_normal((5, 8)).astype(dtype)
        want = c.copy()
        want[:, 1:8] += a @ b[:3]
        try:
            gemm(a, np.asfortranarray(b[:3]), c[:, 1:8], accumulate=True)
            ok = np.allclose(c, want, rtol=1e-4, atol=1e-4)
        except Exception:  # noqa: BLE001 - any failure means: do not use this kernel
            ok = False
        if not ok:
            del _KERNELS[dtype]


_self_check()


def blas_available(dtype):
    """True if :func:`gemm` accumulates with BLAS (no scratch product) for ``dtype``."""
    return np.dtype(dtype) in _KERNELS
