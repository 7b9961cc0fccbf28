"""Inference chains (cconv._kernels.Chain, cconv_chain_forward in the C core): a
compiled plan whose steps all have C kernels runs as one C call, the batch
split over threads where that pays. Checked against the numpy references and
against the plan's step-by-step path."""
import numpy as np
import pytest
import reference as R
from conftest import assert_close

import cconv
from cconv import Sequential, nn
from cconv import _kernels as K

DTYPES = [np.float32, np.float64]


def _lenet():
    return Sequential(nn.Conv2d(1, 6, 5), nn.ReLU(), nn.MaxPool2d(2), nn.Conv2d(6, 16, 5),
                      nn.ReLU(), nn.MaxPool2d(2), nn.Flatten(), nn.Linear(256, 120), nn.ReLU(),
                      nn.Linear(120, 84), nn.ReLU(), nn.Linear(84, 10)), (1, 28, 28)


def _strided():
    # a pool that is not the fused 2x2 window, a ReLU after it (a ReLU step of
    # its own), a grouped dilated conv without ReLU, a Linear without bias
    return Sequential(nn.Conv2d(3, 8, 3, stride=2, padding=1), nn.ReLU(),
                      nn.MaxPool2d(3, stride=2, padding=1), nn.ReLU(),
                      nn.Conv2d(8, 4, 3, dilation=2, groups=2, padding=2), nn.Flatten(),
                      nn.Linear(4 * 5 * 5, 7, bias=False)), (3, 19, 18)


def _winograd():
    # 16-channel 3x3 layers on 16-wide maps: Winograd on the whole batch
    return Sequential(nn.Conv2d(4, 16, 3, padding=1), nn.ReLU(),
                      nn.Conv2d(16, 16, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
                      nn.Flatten(), nn.Linear(16 * 8 * 8, 5)), (4, 16, 16)


def _stem():
    # a 7x7 stride-2 stem on 35-wide output rows: Winograd along rows
    return Sequential(nn.Conv2d(3, 8, 7, stride=2, padding=3), nn.ReLU(),
                      nn.MaxPool2d(3, stride=2, padding=1), nn.Flatten(),
                      nn.Linear(8 * 5 * 18, 6)), (3, 20, 70)


NETS = {"lenet": _lenet, "strided": _strided, "winograd": _winograd, "stem": _stem}


def test_stem_net_runs_winograd_rows():
    assert cconv.ops.conv2d_algorithms((1, 3, 20, 70), (8, 3, 7, 7), (2, 2), (3, 3, 3, 3),
                                       (1, 1), 1)[0] == "winograd_rows"


def _layers(net):
    return [layer for _, layer in net.layers()]


def _reference(net, x):
    """The net in float64 numpy, layer by layer."""
    v = x.astype(np.float64)
    for layer in _layers(net):
        p = {k: a.astype(np.float64) for k, a in layer.params.items()}
        if isinstance(layer, nn.Conv2d):
            a = layer._op_args()
            v = R.conv2d(v, p["weight"], p.get("bias"), a["stride"], a["padding"],
                         a["dilation"], a["groups"])
        elif isinstance(layer, nn.MaxPool2d):
            a = layer._op_args()
            v = R.max_pool2d(v, a["kernel_size"], a["stride"], a["padding"], a["dilation"],
                             a["ceil_mode"])
        elif isinstance(layer, nn.ReLU):
            v = np.maximum(v, 0)
        elif isinstance(layer, nn.Flatten):
            v = v.reshape(len(v), -1)
        elif isinstance(layer, nn.Linear):
            v = v @ p["weight"].T + (p["bias"] if "bias" in p else 0)
        else:  # pragma: no cover - the nets above use only these
            raise AssertionError(type(layer))
    return v


def _built(name, dtype):
    net, shape = NETS[name]()
    return net.build(shape, seed=3).astype(dtype), shape


def _step_by_step(plan, x):
    for fn, *_ in plan._run_steps:
        x = fn(x)
    return x


@pytest.mark.parametrize("batch", [1, 3, 8, 24])
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("name", sorted(NETS))
def test_chain_matches_reference_and_steps(name, dtype, batch, nthreads, rng):
    net, shape = _built(name, dtype)
    x = rng.standard_normal((batch,) + shape).astype(dtype)
    plan = net.compile(x.shape)
    assert plan._c_chain is not None, plan.describe()
    got = net(x)
    assert_close(got, _reference(net, x), dtype)
    steps = _step_by_step(plan, x)
    if plan._c_chain.split_threads(nthreads) == 1:
        # the same kernels on the same batch: bit for bit
        np.testing.assert_array_equal(got, steps)
    else:
        # convolutions and pools per sample: bit for bit; a Linear of fewer
        # rows may block its GEMM differently
        assert_close(got, steps, dtype, tol=1e-5 if dtype == np.float32 else 1e-13)
    assert not np.shares_memory(net(x), got)   # a fresh result per call


def test_lenet_batch_64_splits_over_two_threads():
    net, shape = _built("lenet", np.float32)
    plan = net.compile((64,) + shape)
    expected = 2 if cconv.openmp_enabled() else 1
    assert plan._c_chain.split_threads(2) == expected
    assert plan._c_chain.split_threads(1) == 1
    # too little work per thread: serial; 3 samples on 2 threads: per step
    assert net.compile((1,) + shape)._c_chain.split_threads(2) == 1
    assert net.compile((3,) + shape)._c_chain.split_threads(2) == 1


def test_large_weights_are_not_split():
    """Each thread of a split batch keeps its own packed weights: not for big nets."""
    net = Sequential(nn.Flatten(), nn.Linear(1100, 1000)).build((1100,), seed=0)
    chain = net.compile((64, 1100))._c_chain
    assert chain is not None and chain.split_threads(2) == 1   # 4.4 MB of weights
    small = Sequential(nn.Flatten(), nn.Linear(1000, 1000)).build((1000,), seed=0)
    assert small.compile((64, 1000))._c_chain.split_threads(2) == (
        2 if cconv.openmp_enabled() else 1)


@pytest.mark.parametrize("threads", [1, 2])
def test_replaced_weights_are_seen(threads, rng):
    net, shape = _built("lenet", np.float32)
    x = rng.standard_normal((16,) + shape).astype(np.float32)
    with cconv.threads(threads):
        net(x)
        conv = _layers(net)[3]
        conv.params["weight"] = rng.standard_normal(conv.params["weight"].shape).astype(
            np.float32)
        _layers(net)[7].params["bias"][:] = 5.0          # in place
        assert_close(net(x), _reference(net, x), np.float32)
        # another dtype: the plan refuses it and the general path converts
        conv.params["weight"] = conv.params["weight"].astype(np.float64)
        want = x
        for layer in _layers(net):
            want = layer.forward(want)
        np.testing.assert_array_equal(net(x), want)


def test_reuse_output_returns_the_same_buffer(rng):
    net, shape = _built("lenet", np.float32)
    x1, x2 = (rng.standard_normal((8,) + shape).astype(np.float32) for _ in range(2))
    a = net(x1, reuse_output=True)
    b = net(x2, reuse_output=True)
    assert a is b
    assert_close(b, _reference(net, x2), np.float32)


def _lenet_specs(dtype, n, last_buffer=False):
    net, shape = _built("lenet", dtype)
    conv1, conv2, fc = (_layers(net)[i] for i in (0, 3, 7))
    b1 = np.empty((n, 6, 12, 12), dtype)
    b2 = np.empty((n, 16, 4, 4), dtype)
    out = np.empty((n, 120), dtype) if last_buffer else None
    specs = [
        ("conv2d", conv1.params, True, (6, 1, 5, 5), (1, 28, 28), (1, 1), (0, 0, 0, 0),
         (1, 1), 1, 1, True, b1),
        ("conv2d", conv2.params, True, (16, 6, 5, 5), (6, 12, 12), (1, 1), (0, 0, 0, 0),
         (1, 1), 1, 1, True, b2),
        ("linear", fc.params, True, 256, 120, 0, out),
    ]
    return net, specs


@pytest.mark.parametrize("dtype", DTYPES)
def test_chain_object_runs_given_specs(dtype, nthreads, rng):
    net, specs = _lenet_specs(dtype, 4)
    chain = K.Chain(specs, 4, dtype)
    x = rng.standard_normal((4, 1, 28, 28)).astype(dtype)
    y = np.empty((4, 120), dtype)
    assert chain.run(x, y, nthreads) is y
    want = x
    for layer in _layers(net)[:8]:
        want = layer.forward(want)
    np.testing.assert_array_equal(y, want)
    # the last step's own buffer when it has one
    net, specs = _lenet_specs(dtype, 4, last_buffer=True)
    chain = K.Chain(specs, 4, dtype)
    assert chain.run(x, None, nthreads) is specs[-1][-1]


def test_bad_chains_are_refused_with_the_reason():
    net, specs = _lenet_specs(np.float32, 4)
    with pytest.raises(ValueError, match="kind must be one of"):
        K.Chain([("softmax", None)] + specs, 4, np.float32)
    with pytest.raises(ValueError, match="cannot start with relu"):
        K.Chain([("relu", np.empty((4, 1, 28, 28), np.float32))] + specs, 4, np.float32)
    with pytest.raises(ValueError, match=r"reads 256 elements per sample, the step before "
                                         r"writes 864"):
        K.Chain([specs[0], specs[2]], 4, np.float32)
    with pytest.raises(ValueError, match="step 1 output has 100 elements, expected 1024"):
        K.Chain([specs[0], specs[1][:-1] + (np.empty(100, np.float32),), specs[2]], 4,
                np.float32)
    with pytest.raises(TypeError, match="step 0 output has dtype float64"):
        K.Chain([specs[0][:-1] + (np.empty((4, 6, 12, 12)),)] + specs[1:], 4, np.float32)
    with pytest.raises(ValueError, match="only the last step's output"):
        K.Chain([specs[0][:-1] + (None,)] + specs[1:], 4, np.float32)
    with pytest.raises(ValueError, match=r"step 0 \(conv2d\): parameters out of range"):
        K.Chain([specs[0][:5] + ((0, 1),) + specs[0][6:]] + specs[1:], 4, np.float32)
    with pytest.raises(ValueError, match="weight .* and input channels 2 disagree"):
        K.Chain([specs[0][:4] + ((2, 28, 28),) + specs[0][5:]] + specs[1:], 4, np.float32)
    with pytest.raises(TypeError, match="dtype must be float32 or float64"):
        K.Chain(specs, 4, np.int32)
    with pytest.raises(ValueError, match="n must be >= 1"):
        K.Chain(specs, 0, np.float32)
    chain = K.Chain(specs, 4, np.float32)
    with pytest.raises(ValueError, match="x has 3136 elements, expected 3136|x has"):
        chain.run(np.empty((3, 1, 28, 28), np.float32), np.empty((4, 120), np.float32), 1)
    with pytest.raises(ValueError, match="y has 480 elements|must be writable"):
        ro = np.empty((4, 120), np.float32)
        ro.flags.writeable = False
        chain.run(np.empty((4, 1, 28, 28), np.float32), ro, 1)
    with pytest.raises(ValueError, match="pass y"):
        chain.run(np.empty((4, 1, 28, 28), np.float32), None, 1)
    with pytest.raises(ValueError, match="C-contiguous"):
        chain.run(np.empty((4, 1, 28, 56), np.float32)[..., ::2], np.empty((4, 120),
                  np.float32), 1)
    specs[0][1]["weight"] = np.empty((6, 1, 5, 4), np.float32)   # replaced, wrong shape
    with pytest.raises(ValueError, match=r"weight has shape \(6, 1, 5, 4\), expected"):
        chain.run(np.empty((4, 1, 28, 28), np.float32), np.empty((4, 120), np.float32), 1)
