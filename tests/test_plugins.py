"""The plugin system: hooks, discovery, registries, kernel selection, the example plugin."""
# Fixtures are imported by name (the pytest11 plugin may not be installed yet),
# so test arguments "redefine" them:
# ruff: noqa: F811
import inspect
import os
import warnings

import numpy as np
import pytest

import cconv
from cconv import hookspecs, nn, ops, optim, plugins
from cconv.gradcheck import check_gradients
from cconv.plugins import (DuplicateNameError, KernelNotSupportedError, PluginError,
                           PluginWarning, UnknownNameError)
from cconv.testing import cconv_plugin, cconv_pm, temporary_plugins  # noqa: F401
from conftest import assert_close, run_python
from plugin_helpers import (REPO, FakeEntryPoint, LayerPlugin, clean_plugin_state,  # noqa: F401
                            example_plugin, fake_entry_points, make_layer)

HOOK_NAMES = [name for name, fn in inspect.getmembers(hookspecs, inspect.isfunction)
              if hasattr(fn, "cconv_spec")]


# ---------------------------------------------------------------- the contract

def test_hookspecs_are_the_four_register_hooks():
    assert sorted(HOOK_NAMES) == sorted(plugins.HOOKS) == [
        "register_kernels", "register_layers", "register_optimizers",
        "register_weight_loaders"]


@pytest.mark.parametrize("hook", HOOK_NAMES)
def test_every_hook_is_documented(hook):
    doc = inspect.getdoc(getattr(hookspecs, hook))
    assert doc and "register(" in doc and "Example" in doc, f"{hook} lacks documentation"
    assert list(inspect.signature(getattr(hookspecs, hook)).parameters) == ["register"]
    with open(os.path.join(REPO, "docs", "plugins.md"), encoding="utf-8") as f:
        assert hook in f.read(), f"docs/plugins.md does not mention {hook}"


def test_import_cconv_makes_no_manager_and_imports_no_pluggy():
    code = ("import sys, cconv\n"
            "assert 'pluggy' not in sys.modules\n"
            "import cconv.plugins\n"
            "assert 'cconv.builtins.layers' not in sys.modules, 'manager made at import'\n"
            "assert cconv.hookimpl is cconv.hookspecs.hookimpl\n")
    done = run_python(code, env={"CCONV_DISABLE_PLUGIN_AUTOLOAD": "1"})
    assert done.returncode == 0, done.stderr


def test_ready_to_run_imports_no_error_or_disk_cache_modules():
    """difflib (only for "did you mean") and json (the autotune disk cache)
    load on first use, not with a net (3.5 ms of the 20 cconv adds to numpy)."""
    code = ("import sys\n"
            "for m in ('difflib', 'json'): sys.modules.pop(m, None)\n"
            "import cconv\n"
            "cconv.Sequential, cconv.nn.Conv2d, cconv.ops.conv2d, cconv.plugins.registry()\n"
            "late = [m for m in ('difflib', 'json') if m in sys.modules]\n"
            "assert not late, late\n")
    done = run_python(code, env={"CCONV_DISABLE_PLUGIN_AUTOLOAD": "1"})
    assert done.returncode == 0, done.stderr


def test_builtins_register_through_the_hooks_with_package_cconv(fake_entry_points):
    regs = plugins.registry()
    assert set(regs.layers) == set(nn.LAYER_CLASSES)
    assert plugins.get_layer_class("Conv2d") is nn.Conv2d
    assert regs.layers.entry("Conv2d").source == "cconv"
    assert regs.layers.entry("Conv2d").plugin == "cconv.builtins.layers"
    assert plugins.get_optimizer_class("SGD") is optim.SGD
    assert plugins.get_optimizer_class("adamw") is optim.AdamW
    for op in ("conv1d", "conv2d", "max_pool2d", "avg_pool2d", "conv2d_backward",
               "max_pool2d_backward"):
        assert op in regs.kernels
    assert [k.name for k in regs.kernels.kernels("conv2d")] == [
        "depthwise_direct", "winograd", "winograd_f4", "winograd_rows", "direct",
        "im2col_gemm", "numpy_reference"]
    names = [n for n, _ in plugins.get_plugin_manager().list_name_plugin()]
    assert names[:4] == list(plugins.BUILTIN_PLUGINS)


def test_unknown_names_list_the_known_ones(fake_entry_points):
    with pytest.raises(UnknownNameError, match=r"unknown layer 'Conv2D' \(did you mean "
                                               r"'Conv2d'\?\); known: .*Linear"):
        plugins.get_layer_class("Conv2D")
    with pytest.raises(UnknownNameError, match="known: adam, adamw, sgd"):
        plugins.get_optimizer_class("rmsprop")
    with pytest.raises(UnknownNameError, match="known: safetensors"):
        plugins.get_weight_loader("onnx")
    with pytest.raises(UnknownNameError, match="unknown op 'conv3d'.*conv2d"):
        plugins.select_kernel("conv3d", np.zeros((1, 1, 1, 1, 1)))
    # callers that catch ValueError or LookupError both handle it
    assert issubclass(UnknownNameError, ValueError) and issubclass(UnknownNameError, LookupError)


# ---------------------------------------------------------------- duplicates and override

def test_duplicate_name_raises_naming_both_sources(cconv_plugin):
    fake_conv = make_layer("Conv2d")
    with pytest.raises(DuplicateNameError, match=r"layer 'Conv2d' is registered twice: by "
                                                 r"plugin 'cconv.builtins.layers' from cconv "
                                                 r"and by plugin 'shadow' from plugin_helpers"):
        cconv_plugin(LayerPlugin(fake_conv), name="shadow")
    assert plugins.get_layer_class("Conv2d") is nn.Conv2d
    assert plugins.get_plugin_manager().get_plugin("shadow") is None


def test_duplicate_between_two_plugins_and_within_one(cconv_plugin):
    cconv_plugin(LayerPlugin(make_layer("Twice")), name="first")
    with pytest.raises(DuplicateNameError, match="'first'.*'second'"):
        cconv_plugin(LayerPlugin(make_layer("Twice")), name="second")
    with pytest.raises(DuplicateNameError, match="'Thrice' is registered twice by plugin"):
        cconv_plugin(LayerPlugin(make_layer("Thrice"), make_layer("Thrice")), name="self-dup")


def test_override_true_replaces_a_builtin_until_unregistered(cconv_plugin):
    fast_conv = make_layer("Conv2d")
    with temporary_plugins() as register:
        register(LayerPlugin(fast_conv, override=True), name="fast")
        assert plugins.get_layer_class("Conv2d") is fast_conv
        entry = plugins.registry().layers.entry("Conv2d")
        assert entry.plugin == "fast" and "cconv.builtins.layers" in entry.replaced
    assert plugins.get_layer_class("Conv2d") is nn.Conv2d


def test_registering_something_wrong_names_the_plugin(cconv_plugin):
    class NotALayer:
        pass

    with pytest.raises(PluginError, match=r"'bad'.*expected a subclass of cconv.nn.base.Layer"):
        cconv_plugin(LayerPlugin(NotALayer), name="bad")


def test_misspelt_hook_is_caught_naming_the_plugin(cconv_plugin):
    class Misspelt:
        @cconv.hookimpl
        def register_layer(self, register):
            pass

    with pytest.raises(PluginError, match=r"plugin 'typo' implements 'register_layer' \(did "
                                          r"you mean 'register_layers'\?\)"):
        cconv_plugin(Misspelt(), name="typo")
    assert plugins.get_plugin_manager().get_plugin("typo") is None
    assert "Conv2d" in plugins.registry().layers   # the rest keeps working


def test_hook_with_wrong_arguments_is_refused(cconv_plugin):
    class WrongArgs:
        @cconv.hookimpl
        def register_layers(self, registrar):
            pass

    with pytest.raises(PluginError, match="registrar"):
        cconv_plugin(WrongArgs(), name="wrong")


def test_hookimpl_under_another_name_runs_once_for_its_own_plugin(cconv_plugin):
    class Renamed:
        @cconv.hookimpl(specname="register_layers")
        def add_my_layers(self, register):
            register(make_layer("Renamed"))

    cconv_plugin(Renamed(), name="renamed")
    cconv_plugin(LayerPlugin(make_layer("Other")), name="other")
    layers = plugins.registry().layers
    assert layers.entry("Renamed").plugin == "renamed"
    assert layers.entry("Other").plugin == "other"


def test_direct_pm_register_is_picked_up_by_the_registries():
    pm = plugins.get_plugin_manager()
    plugin = LayerPlugin(make_layer("Direct"))
    pm.register(plugin, name="direct")
    assert "Direct" in plugins.registry().layers
    pm.unregister(plugin)
    assert "Direct" not in plugins.registry().layers


# ---------------------------------------------------------------- entry points

def test_entry_point_plugins_record_their_package(fake_entry_points):
    fake_entry_points.append(FakeEntryPoint("good", LayerPlugin(make_layer("Twice")),
                                            dist="cconv-twice"))
    entry = plugins.registry().layers.entry("Twice")
    assert (entry.source, entry.plugin) == ("cconv-twice", "good")


def test_plugin_failing_to_import_is_reported_and_skipped(fake_entry_points):
    fake_entry_points += [
        FakeEntryPoint("broken", error=ImportError("No module named 'missing_dep'")),
        FakeEntryPoint("good", LayerPlugin(make_layer("Twice"))),
    ]
    with pytest.warns(PluginWarning, match=r"'broken' \(from fake-dist\) failed to load: "
                                           r"ImportError: No module named 'missing_dep'"):
        regs = plugins.registry()
    assert "Twice" in regs.layers and "Conv2d" in regs.layers
    status = {p["name"]: p["status"] for p in plugins.describe()["plugins"]}
    assert status["broken"] == "failed" and status["good"] == "ok"


def test_plugin_failing_to_register_is_reported_and_skipped_whole(fake_entry_points):
    fake_entry_points += [
        FakeEntryPoint("halfway", LayerPlugin(make_layer("Half"), fail_after=True)),
        FakeEntryPoint("good", LayerPlugin(make_layer("Twice"))),
    ]
    with pytest.warns(PluginWarning, match="'halfway'.*failed to register: RuntimeError: "
                                           "registration exploded"):
        regs = plugins.registry()
    assert "Half" not in regs.layers          # nothing of a failed plugin stays behind
    assert "Twice" in regs.layers
    with warnings.catch_warnings():
        warnings.simplefilter("error")        # reported once, not on every rebuild
        plugins.reset(manager=False)
        plugins.registry()


def test_entry_point_duplicating_a_builtin_is_skipped_with_both_sources(fake_entry_points):
    fake_entry_points.append(FakeEntryPoint("clash", LayerPlugin(make_layer("ReLU"))))
    with pytest.warns(PluginWarning, match="'ReLU' is registered twice: by plugin "
                                           "'cconv.builtins.layers' from cconv and by plugin "
                                           "'clash' from fake-dist"):
        assert plugins.get_layer_class("ReLU") is nn.ReLU


def test_entry_point_with_misspelt_hook_is_reported_and_skipped(fake_entry_points):
    class Misspelt:
        @cconv.hookimpl
        def register_kernel(self, register):
            pass

    fake_entry_points.append(FakeEntryPoint("typo", Misspelt()))
    with pytest.warns(PluginWarning, match="'typo'.*'register_kernel' \\(did you mean "
                                           "'register_kernels'\\?\\)"):
        plugins.registry()
    assert plugins.get_plugin_manager().get_plugin("typo") is None


@pytest.mark.parametrize("failure", ["import", "register"])
def test_strict_mode_reraises(fake_entry_points, monkeypatch, failure):
    monkeypatch.setenv("CCONV_STRICT_PLUGINS", "1")
    if failure == "import":
        fake_entry_points.append(FakeEntryPoint("broken", error=ImportError("nope")))
    else:
        fake_entry_points.append(FakeEntryPoint("broken", LayerPlugin(fail_after=True)))
    with pytest.raises(PluginError, match="'broken'"):
        plugins.registry()


def test_autoload_can_be_turned_off(fake_entry_points, monkeypatch):
    fake_entry_points.append(FakeEntryPoint("good", LayerPlugin(make_layer("Twice"))))
    monkeypatch.setenv("CCONV_DISABLE_PLUGIN_AUTOLOAD", "1")
    assert "Twice" not in plugins.registry().layers
    assert "Conv2d" in plugins.registry().layers
    pm = plugins.make_plugin_manager(autoload=False)
    assert pm.get_plugin("good") is None


@pytest.mark.parametrize("listed, loaded", [("b", {"b"}), ("a, b", {"a", "b"}),
                                            ("dist-a", {"a"}), ("", set())])
def test_load_plugins_names_the_subset(fake_entry_points, monkeypatch, listed, loaded):
    fake_entry_points += [FakeEntryPoint("a", LayerPlugin(make_layer("A")), dist="dist-a"),
                          FakeEntryPoint("b", LayerPlugin(make_layer("B")), dist="dist-b")]
    monkeypatch.setenv("CCONV_LOAD_PLUGINS", listed)
    layers = plugins.registry().layers
    assert {n for n in ("A", "B") if n in layers} == {n.upper() for n in loaded}


def test_load_plugins_warns_about_a_name_nobody_provides(fake_entry_points, monkeypatch):
    fake_entry_points.append(FakeEntryPoint("a", LayerPlugin(make_layer("A"))))
    monkeypatch.setenv("CCONV_LOAD_PLUGINS", "a,nonesuch")
    with pytest.warns(PluginWarning, match="'nonesuch'"):
        assert "A" in plugins.registry().layers


def test_trace_switch_prints_hook_calls(fake_entry_points, monkeypatch, capsys):
    monkeypatch.setenv("CCONV_TRACE_PLUGINS", "1")
    plugins.registry()
    err = capsys.readouterr().err
    assert "cconv plugins: register_layers -> cconv.builtins.layers" in err
    assert "register_kernels -> cconv.builtins.kernels" in err


def test_cconv_pm_fixture_gives_a_fresh_manager(cconv_pm):
    assert cconv_pm is plugins.get_plugin_manager()
    assert cconv_pm.get_plugin("cconv.builtins.layers") is not None


def test_temporary_plugins_undo_registration_and_forcing():
    with temporary_plugins() as register:
        register(LayerPlugin(make_layer("Temp")), name="temp")
        plugins.force_kernel("conv2d", "numpy_reference")
        assert "Temp" in plugins.registry().layers
    assert "Temp" not in plugins.registry().layers
    assert plugins.forced_kernels() == {}


# ---------------------------------------------------------------- kernels

def _conv_args(dtype=np.float32, c=3, k=3, groups=1, c_out=4):
    rng = np.random.default_rng(0)
    x = rng.standard_normal((2, c, 6, 6)).astype(dtype)
    w = rng.standard_normal((c_out, c // groups, k, k)).astype(dtype)
    return x, w


class KernelPlugin:
    """conv2d kernel for float64 1x1 convolutions only, counting calls and checks."""

    def __init__(self):
        self.calls = self.checks = 0

    def conv(self, x, w, bias=None, stride=1, padding=0, dilation=1, groups=1):
        self.calls += 1
        return ops.conv2d(x, w, bias, stride, padding, dilation, groups)

    def supports(self, x, w, bias=None, stride=1, padding=0, dilation=1, groups=1):
        self.checks += 1
        return x.dtype == np.float64 and w.shape[2:] == (1, 1)

    @cconv.hookimpl
    def register_kernels(self, register):
        register("conv2d", "f64_1x1", self.conv, supports=self.supports, priority=50)


def test_kernel_selection_by_shape_and_dtype(cconv_plugin):
    plugin = cconv_plugin(KernelPlugin())

    def name(*args, **kwargs):
        return plugins.select_kernel("conv2d", *args, **kwargs).name

    assert name(*_conv_args(np.float64, k=1)) == "f64_1x1"
    assert name(*_conv_args(np.float32, k=1)) == "im2col_gemm"
    assert name(*_conv_args(np.float64, k=3)) == "direct"
    assert name(*_conv_args(np.float32, c=4, groups=4, c_out=8), groups=4) == "depthwise_direct"
    assert name(*_conv_args(np.float32, c=4, groups=2), groups=2) == "direct"
    x, w = _conv_args(np.float64, k=1)
    y = plugins.run_kernel("conv2d", x, w, None, stride=1, padding=0)
    assert plugin.calls == 1
    np.testing.assert_allclose(y, ops.conv2d(x, w))


def test_selection_is_cached_per_shapes_and_dtypes(cconv_plugin):
    plugin = cconv_plugin(KernelPlugin())
    x, w = _conv_args(np.float64, k=1)
    for _ in range(3):
        plugins.run_kernel("conv2d", x, w, None, stride=1)
    assert (plugin.calls, plugin.checks) == (3, 1)
    plugins.run_kernel("conv2d", x[:1], w, None, stride=1)     # another shape: checked again
    plugins.run_kernel("conv2d", x=x, w=w)                     # arrays by keyword work too
    assert plugin.checks == 3


def test_registration_invalidates_the_cached_choice():
    x, w = _conv_args(np.float64, k=1)
    assert plugins.select_kernel("conv2d", x, w).name == "im2col_gemm"
    with temporary_plugins() as register:
        register(KernelPlugin(), name="k")
        assert plugins.select_kernel("conv2d", x, w).name == "f64_1x1"
    assert plugins.select_kernel("conv2d", x, w).name == "im2col_gemm"


def test_forcing_a_kernel_and_restoring_automatic_selection():
    x, w = _conv_args()
    plugins.force_kernel("conv2d", "numpy_reference")
    assert plugins.select_kernel("conv2d", x, w).name == "numpy_reference"
    assert plugins.forced_kernels() == {"conv2d": "numpy_reference"}
    plugins.force_kernel("conv2d", None)
    assert plugins.select_kernel("conv2d", x, w).name == "direct"
    with pytest.raises(RuntimeError):
        with plugins.use_kernel("conv2d", "numpy_reference") as kernel:
            assert kernel.name == plugins.select_kernel("conv2d", x, w).name
            raise RuntimeError
    assert plugins.forced_kernels() == {}


def test_forcing_survives_a_new_plugin(cconv_plugin):
    x, w = _conv_args(np.float64, k=1)
    with plugins.use_kernel("conv2d", "numpy_reference"):
        cconv_plugin(KernelPlugin())
        assert plugins.select_kernel("conv2d", x, w).name == "numpy_reference"


def test_forcing_an_unknown_kernel_lists_the_known_ones():
    with pytest.raises(UnknownNameError, match="unknown kernel for op 'conv2d' 'fft'; "
                                               "known: depthwise_direct, direct, im2col_gemm"):
        plugins.force_kernel("conv2d", "fft")


def test_forcing_a_kernel_that_does_not_support_the_call_raises():
    x, w = _conv_args()
    with plugins.use_kernel("conv2d", "depthwise_direct"):
        with pytest.raises(KernelNotSupportedError,
                           match=r"'depthwise_direct' is forced for op 'conv2d' but does not "
                                 r"support the call conv2d\(float32\[2, 3, 6, 6\], .*groups=1\);"
                                 r" kernels that do: direct, im2col_gemm, numpy_reference"):
            plugins.run_kernel("conv2d", x, w, None, groups=1)


def test_a_supports_predicate_that_raises_names_the_kernel(cconv_plugin):
    class Buggy:
        @cconv.hookimpl
        def register_kernels(self, register):
            register("conv2d", "buggy", ops.conv2d, supports=lambda *a, **k: 1 / 0,
                     priority=99)

    cconv_plugin(Buggy(), name="buggy-plugin")
    with pytest.raises(PluginError, match="kernel conv2d/buggy.*'buggy-plugin'.*Zero"):
        plugins.select_kernel("conv2d", *_conv_args())


def test_a_catch_all_plugin_kernel_outbids_the_builtins(cconv_plugin):
    calls = []

    class CatchAll:
        @cconv.hookimpl
        def register_kernels(self, register):
            register("max_pool2d", "counting", lambda *a, **k: calls.append(1) or
                     ops.max_pool2d(*a, **k), priority=1)

    x = np.arange(16.0).reshape(1, 1, 4, 4)
    np.testing.assert_array_equal(plugins.run_kernel("max_pool2d", x, 2), ops.max_pool2d(x, 2))
    cconv_plugin(CatchAll())
    np.testing.assert_array_equal(plugins.run_kernel("max_pool2d", x, 2), ops.max_pool2d(x, 2))
    assert calls == [1]


def test_plugin_adds_a_new_op(cconv_plugin):
    class Flip:
        @cconv.hookimpl
        def register_kernels(self, register):
            register("flip", "numpy", lambda x: x[..., ::-1])

    cconv_plugin(Flip())
    np.testing.assert_array_equal(plugins.run_kernel("flip", np.arange(3)), [2, 1, 0])


_R = np.random.default_rng(7)
REFERENCE_CASES = {
    "conv2d_plain": ("conv2d", (_R.standard_normal((2, 3, 7, 6)),
                                _R.standard_normal((4, 3, 3, 3))), {}),
    "conv2d_strided_dilated_uneven": (
        "conv2d", (_R.standard_normal((2, 3, 9, 8)), _R.standard_normal((4, 3, 3, 2)),
                   _R.standard_normal(4)),
        dict(stride=(2, 1), padding=((1, 0), (2, 1)), dilation=(1, 2))),
    "conv2d_same_stride2": ("conv2d", (_R.standard_normal((1, 2, 7, 7)),
                                       _R.standard_normal((3, 2, 4, 4))),
                            dict(stride=2, padding="same")),
    "conv2d_groups": ("conv2d", (_R.standard_normal((1, 4, 6, 6)),
                                 _R.standard_normal((6, 2, 3, 3))), dict(groups=2, padding=1)),
    "conv2d_depthwise": ("conv2d", (_R.standard_normal((2, 4, 5, 5)),
                                    _R.standard_normal((8, 1, 3, 3)), _R.standard_normal(8)),
                         dict(groups=4, padding=1)),
    "conv1d": ("conv1d", (_R.standard_normal((2, 3, 10)), _R.standard_normal((5, 3, 3))),
               dict(stride=2, padding=(1, 2), dilation=2)),
    "conv1d_same": ("conv1d", (_R.standard_normal((1, 2, 9)), _R.standard_normal((2, 2, 4))),
                    dict(padding="same")),
    "max_pool2d": ("max_pool2d", (_R.standard_normal((2, 3, 7, 7)), 3),
                   dict(stride=2, padding=1)),
    "max_pool2d_ceil_dilated": ("max_pool2d", (_R.standard_normal((1, 2, 8, 9)), (2, 3)),
                                dict(stride=(2, 2), dilation=(2, 1), ceil_mode=True)),
    "max_pool1d_ceil": ("max_pool1d", (_R.standard_normal((2, 3, 9)), 2),
                        dict(ceil_mode=True)),
    "avg_pool2d_pad": ("avg_pool2d", (_R.standard_normal((2, 3, 7, 7)), 3),
                       dict(stride=2, padding=1)),
    "avg_pool2d_no_pad_count_ceil": ("avg_pool2d", (_R.standard_normal((1, 2, 8, 7)), 3),
                                     dict(stride=2, padding=1, ceil_mode=True,
                                          count_include_pad=False)),
    "avg_pool2d_ceil_count_pad": ("avg_pool2d", (_R.standard_normal((1, 2, 6, 6)), 3),
                                  dict(stride=2, padding=1, ceil_mode=True)),
    "avg_pool1d": ("avg_pool1d", (_R.standard_normal((2, 3, 9)), 4),
                   dict(stride=3, padding=2, ceil_mode=True)),
}


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("case", list(REFERENCE_CASES))
def test_numpy_reference_equals_the_c_kernel(case, dtype):
    op, args, kwargs = REFERENCE_CASES[case]
    args = tuple(a.astype(dtype) if isinstance(a, np.ndarray) else a for a in args)
    expected = getattr(ops, op)(*args, **kwargs)
    with plugins.use_kernel(op, "numpy_reference"):
        assert plugins.select_kernel(op, *args, **kwargs).name == "numpy_reference"
        got = plugins.run_kernel(op, *args, **kwargs)
    assert_close(got, expected, dtype)
    assert plugins.select_kernel(op, *args, **kwargs).name != "numpy_reference"


def test_reference_pool_refuses_return_indices():
    x = np.zeros((1, 1, 4, 4), np.float32)
    assert plugins.select_kernel("max_pool2d", x, 2, return_indices=True).name == "direct"
    with plugins.use_kernel("max_pool2d", "numpy_reference"):
        with pytest.raises(KernelNotSupportedError):
            plugins.run_kernel("max_pool2d", x, 2, return_indices=True)


# ---------------------------------------------------------------- optimizers, loaders

def test_optimizer_plugins_and_duplicates(cconv_plugin):
    class SignSGD(optim.SGD):
        pass

    class Optimizers:
        def __init__(self, name=None, override=False):
            self.name, self.override = name, override

        @cconv.hookimpl
        def register_optimizers(self, register):
            register(SignSGD, name=self.name, override=self.override)

    cconv_plugin(Optimizers(), name="signsgd")
    assert plugins.get_optimizer_class("SignSGD") is SignSGD
    with pytest.raises(DuplicateNameError, match="optimizer 'Adam'.*'cconv.builtins.optimizers'"):
        cconv_plugin(Optimizers("Adam"), name="adam-clash")
    cconv_plugin(Optimizers("adam", override=True), name="adam-override")
    assert plugins.get_optimizer_class("ADAM") is SignSGD


def test_safetensors_loader_reads_a_file(tmp_path):
    from safetensors.numpy import save_file

    tensors = {"conv.weight": np.arange(6, dtype=np.float32).reshape(2, 3),
               "conv.bias": np.ones(2, np.float64)}
    path = tmp_path / "w.safetensors"
    save_file(tensors, str(path))
    for loader in (plugins.get_weight_loader("safetensors"),
                   plugins.find_weight_loader(str(path).upper())):
        loaded = loader(str(path))
        assert sorted(loaded) == sorted(tensors)
        for name, array in tensors.items():
            np.testing.assert_array_equal(loaded[name], array)
            assert loaded[name].dtype == array.dtype
    # a suffix no plugin reads (installed loader plugins add .onnx, .pt, ...)
    with pytest.raises(UnknownNameError, match=r"'w.h5'; known suffixes: .*\.safetensors"):
        plugins.find_weight_loader("w.h5")


def test_weight_loader_plugin_by_suffix(cconv_plugin, tmp_path):
    class Npz:
        @cconv.hookimpl
        def register_weight_loaders(self, register):
            register("npz", lambda path: dict(np.load(path)), suffixes=".npz")

    cconv_plugin(Npz())
    path = tmp_path / "w.npz"
    np.savez(path, a=np.arange(3))
    np.testing.assert_array_equal(plugins.find_weight_loader(path)(path)["a"], np.arange(3))


# ---------------------------------------------------------------- the example plugin

def _blobs(n=96, seed=0):
    """8x8 images whose class (0, 1, 2) is the quadrant holding a bright square."""
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 3, n)
    x = rng.normal(0, 0.3, (n, 1, 8, 8)).astype(np.float32)
    for i, c in enumerate(y):
        r, col = divmod(int(c), 2)
        x[i, 0, 4 * r:4 * r + 4, 4 * col:4 * col + 4] += 1.0
    return x, y


def test_example_plugin_is_discovered_with_its_package(example_plugin):
    regs = plugins.registry()
    assert regs.layers.entry("Swish").source == "cconv-example"
    assert regs.layers["Swish"] is example_plugin.Swish
    assert regs.optimizers.entry("lion").source == "cconv-example"
    assert plugins.get_optimizer_class("Lion") is example_plugin.Lion


def test_example_swish_gradients(example_plugin):
    layer = example_plugin.Swish(beta=0.7)
    rng = np.random.default_rng(1)
    layer.build([(3, 4, 4)], rng=rng)
    layer.astype(np.float64)
    layer.params["beta"][...] = rng.normal(1, 0.5, 3)
    check_gradients(layer, [rng.standard_normal((2, 3, 4, 4))])


def test_example_plugin_trains_saves_and_loads(example_plugin, tmp_path):
    Swish = plugins.get_layer_class("Swish")
    Lion = plugins.get_optimizer_class("lion")
    x, y = _blobs()
    net = nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), Swish(), nn.MaxPool2d(2),
                        nn.Flatten(), nn.Linear(4 * 4 * 4, 3))
    net.build(x.shape[1:], seed=0)
    beta_before = net.named_parameters()
    beta_before = {k: v.copy() for k, v in beta_before if k.endswith("beta")}
    history = cconv.fit(net, x, y, epochs=12, batch_size=16, optimizer=Lion(net, lr=3e-3),
                        loss="cross_entropy", seed=0, progress=False)
    assert history["loss"][-1] < 0.5 * history["loss"][0]
    assert history["accuracy"][-1] >= 0.9
    beta_after = {k: v for k, v in net.named_parameters() if k in beta_before}
    assert any(not np.array_equal(beta_before[k], beta_after[k]) for k in beta_before)
    # the saved config names "Swish"; load finds it through the plugin registry
    path = tmp_path / "swish.safetensors"
    cconv.save(net, str(path))
    again = cconv.load(str(path))
    np.testing.assert_allclose(again.forward(x[:8]), net.forward(x[:8]), rtol=1e-6)


def test_layer_gradients_on_im2col_gemm_only_when_forced(rng):
    """The backward kernel "im2col_gemm_only" is never picked by itself; forced,
    a Conv2d layer's gradients are ops.conv2d_backward(algorithm="im2col_gemm")'s
    (here the automatic choice runs the Winograd adjoint, whose rounding differs)."""
    layer = nn.Conv2d(64, 32, 3, padding=1)
    layer.build([(64, 24, 24)], rng=0)
    x = rng.standard_normal((4, 64, 24, 24)).astype(np.float32)
    gy = rng.standard_normal((4, 32, 24, 24)).astype(np.float32)
    w = layer.params["weight"]
    assert plugins.select_kernel("conv2d_backward", gy, x, w, padding=1).name != \
        "im2col_gemm_only"
    layer.forward(x, training=True)
    auto_dx = layer.backward(gy)
    auto_dw = layer.grads["weight"].copy()
    with plugins.use_kernel("conv2d_backward", "im2col_gemm_only"):
        layer.forward(x, training=True)
        dx = layer.backward(gy)
    want = ops.conv2d_backward(gy, x, w, padding=1, algorithm="im2col_gemm")
    np.testing.assert_array_equal(dx, want[0])
    np.testing.assert_array_equal(layer.grads["weight"], want[1])
    assert not np.array_equal(auto_dw, want[1]) and not np.array_equal(auto_dx, want[0])
