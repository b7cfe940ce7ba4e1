"""Softmax cross-entropy with integer labels (P1, P2)."""
import numpy as np

from ..tensor import Function, Tensor


def cross_entropy_forward(logits, labels):
    """L = (1/N) Σ_n [ logsumexp(z_n) − z_n[y_n] ], computed stably by subtracting max(z_n).

    dL/dz = (softmax(z) − onehot(y)) / N.
    Shapes: logits (N, K) float, labels (N,) integer in [0, K).
    """
    if logits.ndim != 2:
        raise ValueError(f"cross_entropy expects logits of shape (N, K), got {logits.shape}")
    labels = np.asarray(labels)
    if labels.dtype.kind not in "iu":
        raise ValueError(f"cross_entropy labels must be integers, got dtype {labels.dtype} (shape {labels.shape})")
    N, K = logits.shape
    if labels.shape != (N,):
        raise ValueError(f"cross_entropy labels have shape {labels.shape}, expected ({N},) for logits {logits.shape}")
    if N and (labels.min() < 0 or labels.max() >= K):
        raise ValueError(f"cross_entropy labels must lie in [0, {K}), got range [{labels.min()}, {labels.max()}]")
    shifted = logits - logits.max(axis=1, keepdims=True)           # N, K
    log_z = np.log(np.exp(shifted).sum(axis=1))                     # N
    rows = np.arange(N)
    loss = (log_z - shifted[rows, labels]).mean()                   # scalar
    probs = np.exp(shifted - log_z[:, None])                        # N, K   softmax
    return np.asarray(loss, dtype=logits.dtype), (probs, labels)


def cross_entropy_backward(dout, cache):
    probs, labels = cache
    N = probs.shape[0]
    dlogits = probs.copy()                                          # N, K
    dlogits[np.arange(N), labels] -= 1
    dlogits *= dout / N
    return dlogits, None


CrossEntropy = Function.from_pair("CrossEntropy", cross_entropy_forward, cross_entropy_backward)



def cross_entropy(logits, labels):
    """Mean softmax cross-entropy over the batch; labels are integer class indices (N,)."""
    labels = labels.data if isinstance(labels, Tensor) else np.asarray(labels)
    return CrossEntropy.apply(logits, labels)
