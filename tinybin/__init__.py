"""tinybin: a small NumPy + Numba deep-learning engine for 1-bit-per-weight, batch-norm-free
wide ResNets (McDonnell, Mostafa, Wang & van Schaik, 2019)."""
from . import threads  # noqa: F401 -- first: sets the BLAS/OpenMP thread environment before NumPy loads
from .gradcheck import GradcheckError, gradcheck
from .memory import keep_freed_memory
from .ops import arith as _arith  # noqa: F401 -- binds Tensor's operators (+, *, @, sum, ...)
from .tensor import Function, Tensor, is_grad_enabled, no_grad

keep_freed_memory()  # freed arrays stay in the heap for the next step (memory.py)
__version__ = "0.1.0"
__all__ = ["Tensor", "Function", "no_grad", "is_grad_enabled", "gradcheck", "GradcheckError"]
