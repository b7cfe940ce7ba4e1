"""A small accumulator block on the stack, for the register-blocked Numba kernels.

The direct kernels (direct_numba.py) and the Winograd weight products (winograd_numba.py) sum
into a block of at most ELEMENTS = ROWS × LANES numbers: ROWS pixels or input channels of 16
output channels (16 float32 lanes: one AVX-512 register, two AVX ones). ROWS follows the vector
width the kernels are compiled for (config.py, "Vector width"): 16 rows of one 512-bit register
each fit the 32 AVX-512 registers; with 256-bit vectors a row takes two of the 16 registers, and
8 rows fill them. Measured on WRN-20-1's and WRN-20-4's layers, calls alternated in one
process, same bits: at 512 bits, 16 rows over 8 make the direct weight gradient 1.14-1.21x and
the Winograd weight products 1.01-1.14x faster; at 256 bits 16 rows spill registers (0.65-0.77x).
The direct forward keeps 8 pixels at either width (16 was 0.81-0.87x at 512 bits).
`block(dtype)` places it on the stack (an LLVM alloca), not the heap: the compiler can prove
stack memory distinct from the arrays read, and keeps the block in registers (measured 10-15 %
faster than an np.empty block). View it as `carray(block(dtype), (ROWS, LANES))`.

Under NUMBA_DISABLE_JIT=1 there is no compiler to place it: an ordinary array stands in, and
`carray` a reshape of its first elements, so the kernels run as plain Python for a debugger.
"""
import numba
import numpy as np
from numba import carray, types
from numba.core import cgutils
from numba.extending import intrinsic

from .config import wide_vectors

ROWS, LANES = (16 if wide_vectors() else 8), 16
ELEMENTS = ROWS * LANES   # the largest block the kernels use: P*B and Q*B of direct_numba, Q*B of winograd_numba


@intrinsic
def block(typingctx, dtype):
    """A pointer to ELEMENTS elements of dtype on the stack."""
    def codegen(context, builder, signature, args):
        size = context.get_constant(types.intp, ELEMENTS)
        return cgutils.alloca_once(builder, context.get_value_type(dtype.dtype), size=size)
    return types.CPointer(dtype.dtype)(dtype), codegen


if numba.config.DISABLE_JIT:
    def block(dtype):  # noqa: F811 -- the plain-Python stand-in
        return np.zeros(ELEMENTS, dtype)

    def carray(block, shape):  # noqa: F811
        return block[:shape[0] * shape[1]].reshape(shape)

__all__ = ["ELEMENTS", "LANES", "ROWS", "block", "carray"]
