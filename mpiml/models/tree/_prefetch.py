"""A software prefetch for numba kernels that read rows in a known, scattered order.

A node's rows are an increasing but gapped list of row indices, so each row's bins and
channels are a cache miss that the hardware prefetcher does not foresee. The kernels
know the rows to come: ``prefetch(a, rows[j + PREFETCH_DISTANCE])`` asks for the cache
line of ``a[rows[j + PREFETCH_DISTANCE]]`` (its first element along the other axes)
while row ``j`` is being summed. A prefetch is a hint: it never faults and changes no
result, only when the memory arrives.
"""

__all__ = ["prefetch", "PREFETCH_DISTANCE"]

from llvmlite import binding as _llvm
from llvmlite import ir
from numba import types
from numba.core import cgutils
from numba.extending import intrinsic

# rows ahead of the one being read (about 16 cache misses in flight)
PREFETCH_DISTANCE = 16
# LLVM 15 made pointers opaque, which renamed the intrinsic
_NAME = "llvm.prefetch.p0" if _llvm.llvm_version_info[0] >= 15 else "llvm.prefetch.p0i8"


@intrinsic
def prefetch(typingctx, array, index):
    """Prefetch ``array[index, 0, ...]`` for reading (into every cache level)."""
    if not isinstance(array, types.Array) or not isinstance(index, types.Integer):
        return None
    sig = types.void(array, index)

    def codegen(context, builder, signature, args):
        array_type = signature.args[0]
        ary = context.make_array(array_type)(context, builder, args[0])
        idx = context.cast(builder, args[1], signature.args[1], types.intp)
        zero = context.get_constant(types.intp, 0)
        ptr = cgutils.get_item_pointer2(
            context, builder, data=ary.data, shape=cgutils.unpack_tuple(builder, ary.shape),
            strides=cgutils.unpack_tuple(builder, ary.strides), layout=array_type.layout,
            inds=[idx] + [zero] * (array_type.ndim - 1), wraparound=False, boundscheck=False)
        byte_ptr = ir.IntType(8).as_pointer()
        i32 = ir.IntType(32)
        fnty = ir.FunctionType(ir.VoidType(), [byte_ptr, i32, i32, i32])
        fn = cgutils.get_or_insert_function(builder.module, fnty, _NAME)
        # read (0), high locality (3), data cache (1)
        builder.call(fn, [builder.bitcast(ptr, byte_ptr), i32(0), i32(3), i32(1)])
        return context.get_dummy_value()

    return sig, codegen
