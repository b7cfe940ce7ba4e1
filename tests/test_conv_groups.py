"""conv_algorithms.in_image_groups: a batch whose workspace would pass WORKSPACE_LIMIT runs in
groups of images, with the same results (the weight gradient to rounding) and the workspace
within the limit."""
import numpy as np
import pytest

from tinybin import kernels
from tinybin.kernels import columns
from tinybin.kernels import conv_algorithms as CA


def test_image_groups_cover_the_batch_within_the_limit(monkeypatch):
    monkeypatch.setattr(CA, "WORKSPACE_LIMIT", 1000)
    assert CA.image_groups(7, 100) == [(0, 7)]                       # 700 bytes: fits
    assert CA.image_groups(25, 100) == [(0, 9), (9, 18), (18, 25)]  # 2500 bytes: 3 even groups
    assert CA.image_groups(3, 5000) == [(0, 1), (1, 2), (2, 3)]      # one image over the limit: one each


def test_workspace_per_image_is_what_the_passes_take():
    """The estimate equals the workspace a pass over one image grows the shared buffer to."""
    rng = np.random.default_rng(0)
    x = rng.standard_normal((1, 12, 12, 8)).astype(np.float32)
    w = rng.standard_normal((3, 3, 8, 16)).astype(np.float32)
    for name, stride in (("im2col", (2, 2)), ("winograd4", (1, 1)), ("winograd2", (1, 1))):
        layer = CA.Layer(w.shape, stride, (1, 1, 1, 1), np.dtype(np.float32))
        columns.clear_workspaces()
        with kernels.settings(winograd_min_channels=1):
            CA.ALGORITHMS[name].forward(x, w, stride, (1, 1, 1, 1))
        assert columns._workspaces[np.dtype(np.float32)].nbytes == CA.workspace_per_image(name, layer, x.shape)
    assert CA.workspace_per_image("direct", layer, x.shape) == 0


@pytest.mark.parametrize("conv, stride, C", [("im2col", (2, 2), 16), ("winograd4", (1, 1), 16),
                                             ("direct", (1, 1), 3)])   # a stem: dx and dw by im2col
def test_a_pass_in_groups_gives_the_whole_batch_result(monkeypatch, conv, stride, C):
    rng = np.random.default_rng(1)
    x = rng.standard_normal((7, 12, 12, C)).astype(np.float32)
    w = rng.standard_normal((3, 3, C, 16)).astype(np.float32)
    padding = (1, 1, 1, 1)
    with kernels.settings(conv=conv, winograd_min_channels=1):
        plan = kernels.conv_plan(w.shape, stride, padding, w.dtype)
        out = plan.forward(x, w, stride, padding)
        dout = rng.standard_normal(out.shape).astype(np.float32)
        whole = (out, plan.input_gradient(dout, w, x.shape, stride, padding),
                 plan.weight_gradient(x, dout, w.shape, stride, padding))
        layer = CA.Layer(w.shape, stride, padding, np.dtype(np.float32))
        per_image = max(CA.workspace_per_image(name, layer, x.shape) for name in
                        (plan.forward.algorithm, plan.input_gradient.algorithm, plan.weight_gradient.algorithm))
        monkeypatch.setattr(CA, "WORKSPACE_LIMIT", 3 * per_image)    # groups of 3, 3 and 1 images
        columns.clear_workspaces()
        plan = kernels.conv_plan(w.shape, stride, padding, w.dtype)
        grouped = (plan.forward(x, w, stride, padding), plan.input_gradient(dout, w, x.shape, stride, padding),
                   plan.weight_gradient(x, dout, w.shape, stride, padding))
    buffer = columns._workspaces.get(np.dtype(np.float32))
    assert buffer is None or buffer.nbytes <= 3 * per_image
    assert np.array_equal(grouped[0], whole[0]) and np.array_equal(grouped[1], whole[1])
    # summed in another order: float32 rounding of the sum's size (F(4×4)'s is the largest)
    assert np.abs(grouped[2] - whole[2]).max() <= 2e-5 * np.abs(whole[2]).max()
    assert len(CA.image_groups(7, per_image)) == 3
