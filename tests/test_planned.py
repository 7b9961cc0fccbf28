"""Planned inference: ops runners and the layers' plan_forward fast paths."""
import numpy as np
import pytest

import cconv
from cconv import nn, ops, plugins


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_runners_equal_the_ops(rng, dtype):
    x = rng.standard_normal((2, 3, 9, 8)).astype(dtype)
    w = rng.standard_normal((4, 3, 3, 3)).astype(dtype)
    b = rng.standard_normal(4).astype(dtype)
    run = ops.conv2d_runner(x.shape, w.shape, True, dtype, stride=2, padding="same")
    np.testing.assert_array_equal(run(x, w, b), ops.conv2d(x, w, b, stride=2, padding="same"))
    pool = ops.max_pool2d_runner(x.shape, dtype, 3, stride=2, padding=1, ceil_mode=True)
    np.testing.assert_array_equal(pool(x), ops.max_pool2d(x, 3, 2, 1, ceil_mode=True))
    a = rng.standard_normal((5, 7)).astype(dtype)
    m = rng.standard_normal((6, 7)).astype(dtype)
    mm = ops.gemm_runner(5, 6, 7, dtype, trans_b=True)
    np.testing.assert_array_equal(mm(a, m), ops.gemm(a, m, trans_b=True))


def test_runner_refuses_arrays_it_was_not_planned_for(rng):
    x = rng.standard_normal((1, 2, 6, 6)).astype(np.float32)
    w = rng.standard_normal((3, 2, 3, 3)).astype(np.float32)
    run = ops.conv2d_runner(x.shape, w.shape, False, np.float32)
    with pytest.raises(TypeError, match="x"):
        run(x.astype(np.float64), w)
    with pytest.raises(ValueError, match="x"):
        run(rng.standard_normal((1, 2, 7, 6)).astype(np.float32), w)
    with pytest.raises(ValueError, match="C-contiguous"):
        run(np.asfortranarray(x), w)
    mm = ops.gemm_runner(2, 3, 4, np.float32)
    with pytest.raises(ValueError, match="a"):
        mm(np.zeros((2, 5), np.float32), np.zeros((4, 3), np.float32))


def _lenet():
    return nn.Sequential(
        nn.Conv2d(1, 4, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(4, 6, 3), nn.ReLU(), nn.MaxPool2d(2, ceil_mode=True),
        nn.Flatten(), nn.Linear(6 * 2 * 2, 5),
    ).build((1, 10, 10), seed=0)


def _unplanned(net, x):
    for node in net.nodes.values():
        x = node.layer.forward(x)
    return x


def test_planned_inference_equals_layer_by_layer(rng):
    net = _lenet()
    for batch in (1, 3):
        x = rng.standard_normal((batch, 1, 10, 10)).astype(np.float32)
        np.testing.assert_array_equal(net(x), _unplanned(net, x))
    # another dtype or a strided input takes the general path, same answer
    x = rng.standard_normal((2, 1, 10, 10))
    np.testing.assert_allclose(net(x), _unplanned(net, x), rtol=1e-6, atol=1e-6)
    xs = rng.standard_normal((2, 1, 20, 10)).astype(np.float32)[:, :, ::2]
    np.testing.assert_array_equal(net(xs), _unplanned(net, np.ascontiguousarray(xs)))


def test_planned_inference_sees_weight_updates(rng):
    net = _lenet()
    x = rng.standard_normal((2, 1, 10, 10)).astype(np.float32)
    before = net(x)
    for _, p in net.named_parameters():
        p *= 0.5  # in place, as optimizers and load_weights do
    after = net(x)
    assert not np.allclose(before, after)
    np.testing.assert_array_equal(after, _unplanned(net, x))


def test_forced_kernel_replaces_the_planned_fast_path(rng):
    net = _lenet()
    x = rng.standard_normal((2, 1, 10, 10)).astype(np.float32)
    net(x)  # plan built while the built-in kernel is in use
    calls = []
    reference = plugins.registry().kernels.get("conv2d", "numpy_reference").function

    def spy(*args, **kwargs):
        calls.append(1)
        return reference(*args, **kwargs)

    class SpyPlugin:
        @cconv.hookimpl
        def register_kernels(self, register):
            register("conv2d", "spy", spy, priority=100)

    plugins.register_plugin(SpyPlugin(), name="spy-plugin")
    try:
        y = net(x)
    finally:
        plugins.unregister_plugin("spy-plugin")
    assert len(calls) == 2  # both convolutions went through the plugin's kernel
    np.testing.assert_allclose(y, _unplanned(net, x), rtol=1e-5, atol=1e-5)
