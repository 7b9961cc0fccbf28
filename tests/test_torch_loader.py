"""The cconv-torch plugin: PyTorch checkpoints read without torch, safely.

Files are built by hand (tests/torch_files.py, no torch needed) and, where
torch is installed, written by torch.save in both formats; all must load to
the same arrays. Malicious, truncated, corrupt and oversized files must be
refused with clear errors before anything runs or is allocated, and leave
the net untouched.
"""
import os
import subprocess
import sys
import tracemalloc

import numpy as np
import pytest
import torch_files as tf

import cconv
from cconv import plugins
from cconv.graph import Sequential
from cconv.io import WeightFileError, WeightsMismatchError
from cconv.nn import BatchNorm2d, Conv2d, Flatten, Linear, ReLU

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PLUGIN_SRC = os.path.join(REPO, "plugins", "cconv-torch", "src")
if PLUGIN_SRC not in sys.path:
    sys.path.insert(0, PLUGIN_SRC)

import cconv_torch
from cconv_torch import TorchFileError, UnsafePickleError, load_torch, read_checkpoint

FORMATS = ["zip", "legacy"]


@pytest.fixture
def torch_plugin(cconv_plugin):
    """cconv-torch registered with the default plugin manager for one test."""
    cconv_plugin(cconv_torch, name="torch-test")
    return cconv_torch


def small_net(seed=0):
    return Sequential(Conv2d(1, 3, 3, padding=1), BatchNorm2d(3), ReLU(), Flatten(),
                      Linear(3 * 4 * 4, 5)).build((1, 4, 4), seed=seed)


def params(net):
    return {name: value.copy() for name, value in net.named_parameters()}


def assert_same(got, expected):
    assert sorted(got) == sorted(expected)
    for name, value in expected.items():
        assert got[name].dtype == value.dtype, name
        np.testing.assert_array_equal(got[name], value, err_msg=name)
        assert got[name].flags.c_contiguous and got[name].flags.writeable


def mixed_checkpoint():
    """({"state_dict": ..., "epoch": 3} hand-built, the arrays it must load to)."""
    rng = np.random.default_rng(0)
    base = rng.standard_normal(12).astype(np.float32)
    shared = tf.Storage("shared", base)
    bf16_values = np.array([1.0, -2.5, 3.140625, 0.0], np.float32)
    bf16 = tf.Storage("bf", (bf16_values.view(np.uint32) >> 16).astype(np.uint16),
                      type_name="BFloat16Storage")
    tensors = tf.OrderedDict_([
        ("conv.weight", tf.Tensor(shared, 0, (3, 4))),
        ("conv.weight_t", tf.Tensor(shared, 0, (4, 3), (1, 4))),    # transposed view
        ("tail", tf.Tensor(shared, 5, (2, 3), (3, 1))),             # offset view
        ("every_other", tf.Tensor(shared, 1, (6,), (2,))),          # strided view
        ("half", tf.Tensor(tf.Storage("h", np.array([1.5, -0.25, 65504], np.float16)))),
        ("double", tf.Tensor(tf.Storage("d", np.array([1e-300, np.pi]), ), 0, (2, 1))),
        ("steps", tf.Tensor(tf.Storage("i", np.array([2**40, -7], np.int64)), 1, ())),
        ("bf16", tf.Tensor(bf16)),
    ])
    grid = base.reshape(3, 4)
    expected = {"conv.weight": grid, "conv.weight_t": grid.T.copy(),
                "tail": base[5:11].reshape(2, 3), "every_other": base[1:12:2].copy(),
                "half": np.array([1.5, -0.25, 65504], np.float16),
                "double": np.array([[1e-300], [np.pi]]), "steps": np.array(-7, np.int64),
                "bf16": bf16_values}
    return {"state_dict": tensors, "epoch": 3, "arch": "tiny"}, expected


# ---------------------------------------------------------------- reading

@pytest.mark.parametrize("fmt", FORMATS)
def test_hand_built_checkpoint_loads_exact_arrays(tmp_path, fmt):
    obj, expected = mixed_checkpoint()
    path = tf.write(tmp_path / "ckpt.pt", obj, fmt)
    assert_same(load_torch(path), expected)
    whole = read_checkpoint(path)
    assert whole["epoch"] == 3 and whole["arch"] == "tiny"
    assert_same(load_torch(path, key="state_dict"), expected)


@pytest.mark.parametrize("wrapper", ["state_dict", "model", "model_state_dict", None])
def test_wrappers_are_unwrapped(tmp_path, wrapper):
    arrays = {"fc.weight": np.ones((2, 3), np.float32)}
    sd = tf.state_dict_obj(arrays)
    obj = sd if wrapper is None else {wrapper: sd, "optimizer": {"lr": 0.1}, "epoch": 9}
    path = tf.write(tmp_path / "w.pth", obj, "zip")
    assert_same(load_torch(path), arrays)


def test_no_tensors_and_bad_key_are_clear(tmp_path):
    path = tf.write(tmp_path / "meta.pt", {"epoch": 3, "lr": 0.1}, "zip")
    with pytest.raises(TorchFileError, match=r"no tensors found.*'epoch'"):
        load_torch(path)
    good = tf.write(tmp_path / "good.pt", {"model": tf.state_dict_obj({"w": np.ones(2)})}, "zip")
    with pytest.raises(TorchFileError, match=r"key 'ema'.*'model'"):
        load_torch(good, key="ema")


def test_big_endian_zip(tmp_path):
    arrays = {"w": np.arange(6, dtype=np.float32).reshape(2, 3), "i": np.arange(3)}
    path = tf.write(tmp_path / "be.pt", tf.state_dict_obj(arrays), "zip", byteorder="big")
    got = load_torch(path)
    assert_same(got, arrays)
    assert got["w"].dtype.isnative


def test_loader_is_registered_by_suffix(torch_plugin, tmp_path):
    for suffix in (".pt", ".PTH", ".bin"):
        assert plugins.find_weight_loader(f"model{suffix}") is load_torch
    assert plugins.get_weight_loader("torch") is load_torch


def test_plugin_package_declares_its_entry_point():
    tomllib = pytest.importorskip("tomllib")
    with open(os.path.join(REPO, "plugins", "cconv-torch", "pyproject.toml"), "rb") as f:
        project = tomllib.load(f)["project"]
    assert project["entry-points"]["cconv"] == {"torch": "cconv_torch"}
    assert "torch" not in " ".join(project["dependencies"])


# ---------------------------------------------------------------- round trips into a net

def test_cconv_safetensors_and_hand_built_files_load_identically(torch_plugin, tmp_path):
    source = small_net(seed=1)
    expected = params(source)
    paths = [tmp_path / "net.safetensors"]
    cconv.save(source, paths[0])
    for fmt in FORMATS:
        paths.append(tf.write(tmp_path / f"net_{fmt}.pt",
                              {"state_dict": tf.state_dict_obj(expected)}, fmt))
    for path in paths:
        net = small_net(seed=2)
        report = cconv.load_weights(net, path)
        assert report.ok and sorted(report.loaded) == sorted(expected)
        assert_same(params(net), expected)


def _torch_state_dict(torch):
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Conv2d(1, 3, 3, padding=1), torch.nn.BatchNorm2d(3))
    model(torch.randn(2, 1, 4, 4))   # moves the running statistics off their init
    sd = model.state_dict()
    base = torch.randn(4, 6)
    sd["extra.t"] = base.t()                       # non-contiguous view
    sd["extra.shared"] = base[1:3]                 # shares base's storage, offset 6
    sd["extra.half"] = torch.randn(5).half()
    sd["extra.double"] = torch.randn(2, 2).double()
    sd["extra.long"] = torch.arange(-3, 3)
    sd["extra.bf16"] = torch.randn(4).bfloat16()
    return sd


def _expected(sd, torch):
    return {k: (v.float() if v.dtype == torch.bfloat16 else v).detach().numpy().copy()
            for k, v in sd.items()}


@pytest.mark.parametrize("fmt", FORMATS)
def test_torch_written_files_load_identically(tmp_path, fmt):
    torch = pytest.importorskip("torch")
    sd = _torch_state_dict(torch)
    expected = _expected(sd, torch)
    path = tmp_path / "torch.pt"
    torch.save({"state_dict": sd, "epoch": 2}, path,
               _use_new_zipfile_serialization=(fmt == "zip"))
    assert_same(load_torch(path), expected)
    model_path = tmp_path / "model.pth"
    torch.save({"model": sd}, model_path, _use_new_zipfile_serialization=(fmt == "zip"))
    assert_same(load_torch(model_path), expected)


@pytest.mark.parametrize("fmt", FORMATS)
def test_torch_file_into_cconv_net_equals_hand_built(torch_plugin, tmp_path, fmt):
    torch = pytest.importorskip("torch")
    expected = params(small_net(seed=3))
    sd = {k: torch.from_numpy(v.copy()) for k, v in expected.items()}
    # a non-contiguous view, as a transposed layer's weight would be
    sd["4_linear.weight"] = torch.from_numpy(expected["4_linear.weight"].T.copy()).t()
    assert not sd["4_linear.weight"].is_contiguous()
    torch.save(sd, tmp_path / "t.pt", _use_new_zipfile_serialization=(fmt == "zip"))
    tf.write(tmp_path / "h.pt", tf.state_dict_obj(expected), fmt)
    for name in ("t.pt", "h.pt"):
        net = small_net(seed=4)
        assert cconv.load_weights(net, tmp_path / name).ok
        assert_same(params(net), expected)


def test_hand_built_files_are_what_torch_reads(tmp_path):
    torch = pytest.importorskip("torch")
    obj, expected = mixed_checkpoint()
    for fmt in FORMATS:
        path = tf.write(tmp_path / f"{fmt}.pt", obj, fmt)
        loaded = torch.load(path, weights_only=True)["state_dict"]
        assert_same(_expected(loaded, torch), expected)


# ---------------------------------------------------------------- malicious files

MALICIOUS = [("os", "system"), ("posix", "system"), ("builtins", "eval"),
             ("builtins", "exec"), ("subprocess", "call")]


def _payload(target, module, name):
    command = f"touch {target}" if name in ("system", "call") else \
        f"open({str(target)!r}, 'w').close()"
    if module == "subprocess":
        return tf.Reduce(tf.Global(module, name), (["touch", str(target)],))
    return tf.Reduce(tf.Global(module, name), (command,))


@pytest.mark.parametrize("fmt", FORMATS)
@pytest.mark.parametrize("module,name", MALICIOUS)
def test_malicious_pickle_is_refused_and_never_runs(torch_plugin, tmp_path, fmt, module, name):
    target = tmp_path / "pwned"
    sd = tf.state_dict_obj({"0_conv2d.bias": np.zeros(3, np.float32)})
    sd.items.append(("evil", _payload(target, module, name)))
    path = tf.write(tmp_path / "evil.pt", {"state_dict": sd}, fmt)
    net = small_net()
    before = params(net)
    with pytest.raises(UnsafePickleError, match=rf"global {module}\.{name}") as info:
        cconv.load_weights(net, path)
    assert str(path) in str(info.value)
    assert info.value.global_name == f"{module}.{name}"
    assert isinstance(info.value, WeightFileError)
    assert not target.exists()
    assert_same(params(net), before)


def test_the_payload_is_real(tmp_path):
    """Plain pickle runs the same bytes' payload: the refusal above is what saves us."""
    target = tmp_path / "pwned"
    data = tf.dumps(_payload(target, "os", "system"))
    code = f"import pickle; pickle.loads({data!r})"
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)
    assert target.exists()


def test_whole_module_pickle_is_refused(tmp_path):
    obj = tf.Reduce(tf.Global("torch.nn.modules.linear", "Linear"), ())
    path = tf.write(tmp_path / "model.pt", obj, "zip")
    with pytest.raises(UnsafePickleError, match="torch.nn.modules.linear.Linear.*state_dict"):
        load_torch(path)


def test_pickle_cannot_tamper_with_allowed_globals(tmp_path):
    # BUILD (setstate) on a shared stand-in would change how later files read
    obj = tf.Raw(b"ctorch\nFloatStorage\n}(X\x05\x00\x00\x00dtypeX\x03\x00\x00\x00<f8ub")
    path = tf.write(tmp_path / "tamper.pt", obj, "zip")
    with pytest.raises(TorchFileError, match="set the state"):
        load_torch(path)
    arrays = {"w": np.arange(4, dtype=np.float32)}
    assert_same(load_torch(tf.write(tmp_path / "ok.pt", tf.state_dict_obj(arrays), "zip")),
                arrays)


# ---------------------------------------------------------------- truncated / corrupt

@pytest.mark.parametrize("fmt", FORMATS)
def test_truncated_files_raise_and_leave_the_net_untouched(torch_plugin, tmp_path, fmt):
    data = (tf.zip_bytes if fmt == "zip" else tf.legacy_bytes)(
        {"state_dict": tf.state_dict_obj(params(small_net(seed=5)))})
    net = small_net()
    before = params(net)
    cuts = sorted({1, 2, 10, len(data) // 3, len(data) // 2, len(data) - 40, len(data) - 9,
                   len(data) - 1})
    for cut in cuts:
        path = tmp_path / f"cut{cut}.pt"
        path.write_bytes(data[:cut])
        with pytest.raises(WeightFileError) as info:
            cconv.load_weights(net, path)
        assert str(path) in str(info.value), cut
        assert_same(params(net), before)


def _corrupt(tmp_path, case):
    arrays = {"w": np.arange(6, dtype=np.float32)}
    sd = tf.state_dict_obj(arrays)
    if case == "empty":
        return b""
    if case == "text":
        return b"this is not a checkpoint\n" * 4
    if case == "bad_magic":
        return tf.dumps(12345) + tf.legacy_bytes(sd)[20:]
    if case == "storage_size":       # the entry holds fewer bytes than declared
        return tf.zip_bytes(sd, storage_bytes={"0": b"\0" * 20})
    if case == "missing_entry":
        return tf.zip_bytes(sd, storage_bytes={}, pickled=tf.dumps(tf.OrderedDict_(
            [("w", tf.Tensor(tf.Storage("nope", np.zeros(6, np.float32))))])))
    if case == "byteorder":
        return tf.zip_bytes(sd, byteorder="middle")
    if case == "compressed":
        return tf.zip_bytes(sd, compress=True)
    if case == "no_data_pkl":
        return tf.zip_bytes(sd, root="a/b")
    if case == "bad_opcode":
        return tf.zip_bytes(sd, pickled=b"\x80\x02\xff\xfe.")
    if case == "stride_outside":
        bad = tf.OrderedDict_([("w", tf.Tensor(tf.Storage(0, np.zeros(6, np.float32)), 0,
                                               (3, 3), (3, 1)))])
        return tf.legacy_bytes(bad)
    if case == "negative_offset":
        bad = tf.OrderedDict_([("w", tf.Tensor(tf.Storage(0, np.zeros(6, np.float32)), -1,
                                               (2,), (1,)))])
        return tf.zip_bytes(bad)
    if case == "legacy_numel":      # size record before the data disagrees with the pickle
        data = bytearray(tf.legacy_bytes(sd))
        data[-6 * 4 - 8:-6 * 4] = (7).to_bytes(8, "little")
        return bytes(data)
    if case in ("zip_version", "encrypted"):   # central directory fields zipfile refuses
        data = bytearray(tf.zip_bytes(sd))
        at = data.index(b"PK\x01\x02")
        if case == "zip_version":
            data[at + 6:at + 8] = (255).to_bytes(2, "little")
        else:
            data[at + 8] |= 1
        return bytes(data)
    if case == "legacy_trailing":
        return tf.legacy_bytes(sd) + b"junk"
    if case == "unknown_pid":
        return tf.zip_bytes(sd, pickled=b"\x80\x02X\x03\x00\x00\x00abcQ.")
    raise AssertionError(case)


CORRUPT = ["empty", "text", "bad_magic", "storage_size", "missing_entry", "byteorder",
           "compressed", "no_data_pkl", "bad_opcode", "stride_outside", "negative_offset",
           "legacy_numel", "legacy_trailing", "unknown_pid", "zip_version", "encrypted"]


@pytest.mark.parametrize("case", CORRUPT)
def test_corrupt_files_raise_clear_errors(torch_plugin, tmp_path, case):
    path = tmp_path / f"{case}.pt"
    path.write_bytes(_corrupt(tmp_path, case))
    net = small_net()
    before = params(net)
    with pytest.raises(TorchFileError) as info:
        cconv.load_weights(net, path)
    assert str(path) in str(info.value)
    assert isinstance(info.value, ValueError)
    assert_same(params(net), before)


def test_missing_file_and_directory(tmp_path):
    with pytest.raises(TorchFileError, match="cannot read"):
        load_torch(tmp_path / "nope.pt")
    with pytest.raises(TorchFileError, match="cannot read"):
        load_torch(tmp_path)


# ---------------------------------------------------------------- huge declared sizes

def _huge(case):
    small = tf.Storage(0, np.zeros(4, np.float32))
    if case == "tensor_size":          # a view far bigger than its storage
        return "zip", tf.OrderedDict_([("w", tf.Tensor(small, 0, (2**20, 2**20)))])
    if case == "expanded":             # stride 0: every element is storage[0]
        return "legacy", tf.OrderedDict_([("w", tf.Tensor(small, 0, (2**16, 2**16), (0, 0)))])
    if case == "storage_numel_zip":
        huge = tf.Storage(0, np.zeros(4, np.float32))
        huge.numel = 2**50
        return "zip", tf.OrderedDict_([("w", tf.Tensor(huge, 0, (4,)))])
    if case == "storage_numel_legacy":
        huge = tf.Storage(0, np.zeros(4, np.float32))
        return "legacy_numel", huge
    if case == "pickle_bytes8":        # BINBYTES8 declaring 2**40 bytes
        return "pickle", b"\x80\x04\x8e" + (2**40).to_bytes(8, "little") + b"abc."
    if case == "pickle_unicode8":
        return "pickle", b"\x80\x04\x8d" + (2**33).to_bytes(8, "little") + b"abc."
    raise AssertionError(case)


@pytest.mark.parametrize("case", ["tensor_size", "expanded", "storage_numel_zip",
                                  "storage_numel_legacy", "pickle_bytes8", "pickle_unicode8"])
def test_huge_declared_sizes_are_refused_before_allocating(tmp_path, case):
    fmt, obj = _huge(case)
    path = tmp_path / f"{case}.pt"
    if fmt == "pickle":
        path.write_bytes(tf.zip_bytes({}, pickled=obj))
    elif fmt == "legacy_numel":
        sd = tf.OrderedDict_([("w", tf.Tensor(obj, 0, (4,)))])
        obj.numel = 2**50
        data = tf.legacy_bytes(sd)
        obj.numel = 4
        # the size record too claims 2**50 elements
        data = data[:-16 - 8] + (2**50).to_bytes(8, "little") + data[-16:]
        path.write_bytes(data)
    else:
        tf.write(path, obj, fmt)
    tracemalloc.start()
    try:
        with pytest.raises(TorchFileError):
            load_torch(path)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 20 * 2**20, f"{case}: {peak} bytes allocated"


def test_checked_load_through_load_weights_reports_mismatch(torch_plugin, tmp_path):
    weights = params(small_net(seed=1))
    weights["4_linear.weight"] = weights["4_linear.weight"][:, :10].copy()
    path = tf.write(tmp_path / "w.pt", tf.state_dict_obj(weights), "legacy")
    net = small_net()
    before = params(net)
    with pytest.raises(WeightsMismatchError, match="4_linear.weight"):
        cconv.load_weights(net, path)
    assert_same(params(net), before)


@pytest.mark.slow
def test_plugin_installs_and_is_discovered_by_entry_point(tmp_path):
    """Builds plugins/cconv-torch's wheel (isolated), unpacks it into a private folder
    (not this environment) and checks a fresh interpreter finds its loader by entry
    point."""
    import zipfile

    from conftest import build_wheel

    target = tmp_path / "site"
    with zipfile.ZipFile(build_wheel(os.path.join(REPO, "plugins", "cconv-torch"),
                                     tmp_path / "dist")) as zf:
        zf.extractall(target)   # a pure-Python wheel unpacked is an installed package
    ckpt = tf.write(tmp_path / "w.pt", tf.state_dict_obj({"w": np.arange(3.0)}), "legacy")
    code = ("import sys; from cconv import plugins; "
            f"f = plugins.find_weight_loader('x.pth'); print(f.__module__, "
            f"plugins.registry().weight_loaders.entry('torch').source, "
            f"f({str(ckpt)!r})['w'].tolist())")
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(
        [str(target)] + [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p]))
    env.pop("CCONV_DISABLE_PLUGIN_AUTOLOAD", None)
    env.pop("CCONV_LOAD_PLUGINS", None)
    out = subprocess.run([sys.executable, "-c", code], check=False, capture_output=True, text=True,
                         timeout=120, env=env)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["cconv_torch.reader", "cconv-torch", "[0.0,", "1.0,", "2.0]"]


def test_unsupported_tensor_types_are_named(tmp_path):
    for global_name in ("QInt8Storage", "float8_e4m3fn"):
        obj = tf.OrderedDict_([("w", tf.Global("torch", global_name))])
        path = tf.write(tmp_path / f"{global_name}.pt", obj, "zip")
        with pytest.raises(TorchFileError, match=f"unsupported tensor type torch.{global_name}"):
            load_torch(path)


def test_repeated_views_are_shared_and_bounded(tmp_path):
    values = np.arange(2**18, dtype=np.float32)          # a 1 MiB storage
    storage = tf.Storage(0, values)
    tied = tf.Tensor(storage, 0, (2**9, 2**9))
    same = tf.OrderedDict_([("embed.weight", tied), ("head.weight",
                                                     tf.Tensor(storage, 0, (2**9, 2**9)))])
    got = load_torch(tf.write(tmp_path / "tied.pt", same, "zip"))
    np.testing.assert_array_equal(got["head.weight"], values.reshape(2**9, 2**9))
    assert got["head.weight"] is got["embed.weight"]     # one view, one array
    # 64 distinct views of nearly the whole storage: 64 MiB from a 1 MiB file
    many = tf.OrderedDict_([(f"v{i}", tf.Tensor(storage, i, (2**18 - 64,)))
                            for i in range(64)])
    path = tf.write(tmp_path / "many.pt", many, "legacy")
    tracemalloc.start()
    try:
        with pytest.raises(TorchFileError, match="more than 4x the bytes of their storages"):
            load_torch(path)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 20 * 2**20


def test_exponentially_shared_pickle_is_refused_quickly(tmp_path):
    # t0 = (); t_k = (t_{k-1}, t_{k-1}) through the memo: 2**64 objects to hash
    # as a dict key, from a ~400-byte pickle
    ops = [b"\x80\x02}", b")q\x000"]
    for k in range(1, 65):
        ops.append(b"h" + bytes([k - 1]) + b"h" + bytes([k - 1]) + b"\x86q" + bytes([k])
                   + (b"0" if k < 64 else b""))
    ops.append(b"K\x01s.")   # {t_64: 1}
    import pickletools
    assert [op.name for op, _, _ in pickletools.genops(b"".join(ops))][-3:] == [
        "BININT1", "SETITEM", "STOP"]
    path = tmp_path / "dag.pt"
    path.write_bytes(tf.zip_bytes({}, pickled=b"".join(ops)))
    # 66 levels deep too: either budget may speak first
    with pytest.raises(TorchFileError, match="expand to more than|nested more than 64"):
        load_torch(path)


def test_state_dict_metadata_set_by_build_still_loads(tmp_path):
    # model.state_dict() pickles its `_metadata` attribute with BUILD on the
    # OrderedDict (after SETITEMS): the one BUILD the scan allows
    w = np.arange(6, dtype=np.float32).reshape(2, 3)
    sd = tf.state_dict_obj({"fc.weight": w})
    body = tf.dumps(sd)[:-1]   # the OrderedDict with its items, still on the stack
    meta = (b"}(X\x09\x00\x00\x00_metadata" b"ccollections\nOrderedDict\n)R"
            b"X\x00\x00\x00\x00}X\x07\x00\x00\x00versionK\x01ssub")   # {"": {"version": 1}}
    path = tmp_path / "sd.pt"
    path.write_bytes(tf.zip_bytes(sd, pickled=body + meta + b"."))
    np.testing.assert_array_equal(load_torch(path)["fc.weight"], w)


@pytest.mark.parametrize("pickled,match", [
    (b"\x80\x02}" + b")" + b"\x85" * 5000 + b"K\x01s.", "nested more than 64"),
    (b"\x80\x02]q\x00h\x00a.", "contains itself"),
    (b"\x80\x02ccollections\nOrderedDict\n)\x81.", "NEWOBJ"),
    (b"\x80\x02\x8a\x20" + b"\xff" * 31 + b"\x7f.", "integer of 255 bits"),
    (b"\x80\x02h\x05.", "read before it is written"),
    (b"\x80\x02a.", "stack underflow"),
])
def test_pickle_budgets_refuse_before_unpickling(tmp_path, pickled, match):
    path = tmp_path / "b.pt"
    path.write_bytes(tf.zip_bytes({}, pickled=pickled))
    with pytest.raises(TorchFileError, match=match):
        load_torch(path)


def test_lists_filled_after_memoisation_are_refused(tmp_path):
    # issue 23: 41 lists memoised empty, then L[i] = [L[i-1], L[i-1]]: 2**40 paths
    ops = [b"\x80\x02"] + [b"]q" + bytes([i]) + b"0" for i in range(41)]
    ops += [b"h" + bytes([i]) + b"h" + bytes([i - 1]) + b"ah" + bytes([i - 1]) + b"a0"
            for i in range(40, 0, -1)]
    ops.append(b"}X\x01\x00\x00\x00wh\x28s.")
    path = tmp_path / "lists.pt"
    path.write_bytes(tf.zip_bytes({}, pickled=b"".join(ops)))
    with pytest.raises(TorchFileError, match="expand to more than"):
        load_torch(path)
