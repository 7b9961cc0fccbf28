"""Autotuned kernel selection (cconv.autotune), with a fake timer: no test depends on speed."""
import json
import types

import numpy as np
import pytest

import cconv
from cconv import autotune, nn, ops, plugins
from cconv.hookspecs import hookimpl


@pytest.fixture(autouse=True)
def _clean(monkeypatch):
    monkeypatch.delenv(autotune.ENV_ENABLE, raising=False)
    monkeypatch.delenv(autotune.ENV_CACHE, raising=False)
    plugins.reset()
    autotune.disable()
    yield
    autotune.reset()
    plugins.reset()


class FakeTimer:
    """Seconds per kernel name from a table; counts what it timed."""

    def __init__(self, seconds, default=1.0):
        self.seconds, self.default, self.calls = seconds, default, []

    def __call__(self, kernel, args, kwargs):
        self.calls.append(kernel.name)
        return self.seconds.get(kernel.name, self.default)


def _conv_plugin(log):
    """Two extra conv2d kernels (distinct functions computing the C core's answer)."""
    def slow(x, w, bias=None, **kw):
        log.append("slow")
        return ops.conv2d(x, w, bias, **kw)

    def fast(x, w, bias=None, **kw):
        log.append("fast")
        return ops.conv2d(x, w, bias, **kw)

    def only_3x3(x, w, *a, **k):
        return np.shape(w)[2:] == (3, 3)

    @hookimpl
    def register_kernels(register):
        register("conv2d", "slow", slow, priority=20, supports=only_3x3)
        register("conv2d", "fast", fast, priority=5, supports=only_3x3)
        register("conv2d", "never", fast, priority=-100)   # below MIN_PRIORITY

    plugin = types.ModuleType("fake_conv_kernels")
    plugin.register_kernels = register_kernels
    return plugin


def _args(rng, k=3, n=1):
    x = rng.standard_normal((n, 2, 6, 6)).astype(np.float32)
    w = rng.standard_normal((3, 2, k, k)).astype(np.float32)
    return x, w


def test_off_by_default_priority_decides(cconv_plugin, rng):
    cconv_plugin(_conv_plugin([]))
    assert autotune.active() is None
    assert plugins.select_kernel("conv2d", *_args(rng)).name == "slow"


def test_fastest_candidate_wins_and_is_timed_once(cconv_plugin, rng):
    log = []
    cconv_plugin(_conv_plugin(log))
    timer = FakeTimer({"slow": 3.0, "fast": 1.0, "direct": 2.0})
    with autotune.tuning(timer=timer) as tuner:
        x, w = _args(rng)
        assert plugins.select_kernel("conv2d", x, w).name == "fast"
        assert sorted(timer.calls) == ["direct", "fast", "slow"]   # never: not a candidate
        # cached: neither the registry nor the tuner times again
        timer.calls.clear()
        plugins.registry().kernels._cache.clear()
        assert plugins.select_kernel("conv2d", x, w).name == "fast"
        assert timer.calls == []
        # a layer's forward runs the tuned kernel
        layer = nn.Conv2d(2, 3, 3)
        layer.build([(2, 6, 6)], rng=0)
        log.clear()
        np.testing.assert_allclose(layer.forward(x), ops.conv2d(x, layer.params["weight"],
                                                                layer.params["bias"]),
                                   rtol=1e-6)
        assert log == ["fast"]      # (its own signature: stride=..., padding=... given)
        timer.calls.clear()
        # a 5x5 call has one candidate function left (the C core): no timing at all
        x5, w5 = _args(rng, k=5)
        assert plugins.select_kernel("conv2d", x5, w5).name == "direct"
        assert timer.calls == []
        assert len(tuner.choices) == 2
    assert autotune.active() is None
    assert plugins.select_kernel("conv2d", x, w).name == "slow"


def test_each_signature_and_thread_count_is_tuned(cconv_plugin, rng):
    cconv_plugin(_conv_plugin([]))
    timer = FakeTimer({"slow": 1.0, "fast": 2.0})
    with autotune.tuning(timer=timer) as tuner:
        plugins.select_kernel("conv2d", *_args(rng, n=1))
        plugins.select_kernel("conv2d", *_args(rng, n=2))
        with cconv.threads(1):
            plugins.registry().kernels._cache.clear()
            plugins.select_kernel("conv2d", *_args(rng, n=2))
        sigs = list(tuner.choices)
    assert len(sigs) == len(set(sigs)) >= 2
    assert all(v == "slow" for v in tuner.choices.values())


def test_failing_candidate_loses(cconv_plugin, rng):
    cconv_plugin(_conv_plugin([]))

    def timer(kernel, args, kwargs):
        if kernel.name == "fast":
            raise RuntimeError("broken kernel")
        return {"slow": 2.0}.get(kernel.name, 5.0)

    with autotune.tuning(timer=timer) as tuner:
        assert plugins.select_kernel("conv2d", *_args(rng)).name == "slow"
        (times,) = tuner.timings.values()
        assert times["fast"] is None


def test_disk_cache_round_trip(cconv_plugin, rng, tmp_path):
    cconv_plugin(_conv_plugin([]))
    path = tmp_path / "sub" / "autotune.json"
    with autotune.tuning(cache_path=path, timer=FakeTimer({"fast": 0.5})):
        assert plugins.select_kernel("conv2d", *_args(rng)).name == "fast"
    data = json.loads(path.read_text())
    assert data["format"] == "cconv.autotune"
    (entries,) = data["machines"].values()
    (entry,) = entries.values()
    assert entry["kernel"] == "fast" and entry["seconds"]["fast"] == 0.5
    assert not [p for p in path.parent.iterdir() if p.name != "autotune.json"]  # no temp left

    def no_timing(*a):
        raise AssertionError("a cached choice must not be timed again")

    plugins.reset(manager=False)
    with autotune.tuning(cache_path=path, timer=no_timing):
        assert plugins.select_kernel("conv2d", *_args(rng)).name == "fast"


def test_invalid_cache_entries_are_ignored(cconv_plugin, rng, tmp_path):
    cconv_plugin(_conv_plugin([]))
    path = tmp_path / "autotune.json"
    x, w = _args(rng)
    probe = autotune.Tuner(timer=FakeTimer({}))
    sig = autotune.signature("conv2d", (x, w), {}, cconv.get_num_threads())
    path.write_text(json.dumps({"format": "cconv.autotune", "version": 1, "machines": {
        probe.machine: {sig: {"kernel": "gone_kernel"}, "junk": 3, "other": {"kernel": 7}}}}))
    timer = FakeTimer({"fast": 0.1})
    with autotune.tuning(cache_path=path, timer=timer):
        assert plugins.select_kernel("conv2d", x, w).name == "fast"
    assert timer.calls   # the stale entry was timed again
    entries = json.loads(path.read_text())["machines"][probe.machine]
    assert entries[sig]["kernel"] == "fast"
    # a corrupt file is ignored and replaced by a valid one
    path.write_text("{not json")
    plugins.reset(manager=False)
    with autotune.tuning(cache_path=path, timer=FakeTimer({"slow": 0.1})):
        assert plugins.select_kernel("conv2d", x, w).name == "slow"
    assert json.loads(path.read_text())["format"] == "cconv.autotune"


def test_environment_turns_it_on(monkeypatch, tmp_path):
    path = tmp_path / "t.json"
    monkeypatch.setenv(autotune.ENV_ENABLE, "1")
    monkeypatch.setenv(autotune.ENV_CACHE, str(path))
    autotune.reset()
    tuner = autotune.active()
    assert isinstance(tuner, autotune.Tuner) and tuner.cache_path == str(path)
    monkeypatch.setenv(autotune.ENV_CACHE, "")
    autotune.reset()
    assert autotune.active().cache_path is None      # memory only
    monkeypatch.setenv(autotune.ENV_ENABLE, "0")
    autotune.reset()
    assert autotune.active() is None


def test_forced_kernel_beats_tuning(cconv_plugin, rng):
    cconv_plugin(_conv_plugin([]))
    with autotune.tuning(timer=FakeTimer({"fast": 0.1})):
        with plugins.use_kernel("conv2d", "slow"):
            assert plugins.select_kernel("conv2d", *_args(rng)).name == "slow"


def test_default_timer_measures_a_real_call(rng):
    kernel = types.SimpleNamespace(function=ops.conv2d, name="c")
    t = autotune.default_timer(kernel, _args(rng), {}, repeats=2, min_time=1e-4)
    assert 0 < t < 1.0


def test_compiled_plan_steps_aside_for_tuned_kernels(cconv_plugin, rng):
    log = []
    cconv_plugin(_conv_plugin(log))
    net = nn.Sequential(nn.Conv2d(2, 3, 3), nn.ReLU()).build((2, 6, 6), seed=0)
    x, _ = _args(rng)
    with autotune.tuning(timer=FakeTimer({"fast": 0.1})):
        log.clear()
        y = net(x)
        assert log == ["fast"]
        assert net.compile(x.shape).steps[0][0] == "layer"
    want = np.maximum(ops.conv2d(x, net[0].params["weight"], net[0].params["bias"]), 0)
    np.testing.assert_allclose(y, want, rtol=1e-6)
