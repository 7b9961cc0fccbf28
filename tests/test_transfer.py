"""Transfer learning: new heads, freezing (no update, no decay, no gradient work, frozen
BatchNorm), layer-wise learning rates, the finetune command, save/load of frozen state."""
import re

import numpy as np
import pytest

import cconv
from cconv import nn, transfer
from cconv.gradcheck import check_gradients
from cconv.graph import Graph, GraphError, Sequential
from cconv.optim import SGD, Adam, AdamW


def bn_net(seed=0, classes=4):
    """conv-bn-relu x2, pool, linear: small enough for fast steps, with BatchNorm."""
    net = Sequential(
        nn.Conv2d(1, 4, 3, padding=1), nn.BatchNorm2d(4), nn.ReLU(),
        nn.Conv2d(4, 6, 3, padding=1), nn.BatchNorm2d(6), nn.ReLU(), nn.MaxPool2d(2),
        nn.Flatten(), nn.Linear(6 * 4 * 4, 12), nn.ReLU(), nn.Linear(12, classes),
    )
    return net.build((1, 8, 8), seed=seed)


def data(rng, n=16, classes=4):
    return (rng.standard_normal((n, 1, 8, 8)).astype(np.float32),
            rng.integers(0, classes, n))


def snapshot(net):
    return {k: v.copy() for k, v in net.named_parameters()}


def train_steps(net, opt, x, y, steps=3):
    for _ in range(steps):
        out = net.forward(x, training=True)
        _, grad = nn.softmax_cross_entropy(out, y)
        net.backward(grad, input_grads=False)
        opt.step()


def randomise_bn_stats(net, rng):
    # fresh running stats are 0/1: an update towards a batch would still show, but
    # random ones make "unchanged" a stronger statement
    for _, layer in net.layers():
        if isinstance(layer, (nn.BatchNorm1d, nn.BatchNorm2d)):
            layer.params["running_mean"][...] = rng.standard_normal(layer.num_features)
            layer.params["running_var"][...] = rng.uniform(0.5, 2, layer.num_features)
            layer.params["weight"][...] = rng.uniform(0.5, 2, layer.num_features)
            layer.params["bias"][...] = rng.standard_normal(layer.num_features)


# ---------------------------------------------------------------- frozen = untouched

@pytest.mark.parametrize("make_opt", [
    lambda net: SGD(net, lr=0.1, momentum=0.9, weight_decay=0.1),
    lambda net: AdamW(net, lr=0.05, weight_decay=0.5),
    lambda net: Adam(net, lr=0.05, weight_decay=0.1),
], ids=["sgd_wd", "adamw", "adam_l2"])
def test_frozen_weights_and_bn_stats_are_bit_identical_after_training(make_opt, rng):
    net = bn_net()
    randomise_bn_stats(net, rng)
    frozen = transfer.freeze_to(net, "4_batchnorm2d")
    assert frozen == ["0_conv2d.weight", "0_conv2d.bias", "1_batchnorm2d.weight",
                      "1_batchnorm2d.bias", "3_conv2d.weight", "3_conv2d.bias",
                      "4_batchnorm2d.weight", "4_batchnorm2d.bias"]
    before = snapshot(net)
    x, y = data(rng)
    train_steps(net, make_opt(net), x, y)
    after = snapshot(net)
    stats = [n for n in after if "running" in n]
    assert len(stats) == 4
    for name in frozen + stats:
        assert after[name].tobytes() == before[name].tobytes(), name
    for name in ["8_linear.weight", "10_linear.weight", "10_linear.bias"]:
        assert not np.array_equal(after[name], before[name]), name


def test_weight_decay_alone_leaves_frozen_weights_alone(rng):
    # zero gradients: only decay could move a weight
    net = bn_net()
    transfer.freeze(net, "0_conv2d")
    before = snapshot(net)
    for opt in (SGD(net, lr=0.1, weight_decay=0.5), AdamW(net, lr=0.1, weight_decay=0.5)):
        opt.zero_grad()
        opt.step()
    after = snapshot(net)
    assert after["0_conv2d.weight"].tobytes() == before["0_conv2d.weight"].tobytes()
    assert not np.array_equal(after["3_conv2d.weight"], before["3_conv2d.weight"])


def test_unfrozen_bn_still_updates_running_stats(rng):
    net = bn_net()
    randomise_bn_stats(net, rng)
    transfer.freeze_to(net, "1_batchnorm2d")
    before = snapshot(net)
    x, y = data(rng)
    train_steps(net, SGD(net, lr=0.01), x, y, steps=1)
    after = snapshot(net)
    assert after["1_batchnorm2d.running_mean"].tobytes() == \
        before["1_batchnorm2d.running_mean"].tobytes()
    assert not np.array_equal(after["4_batchnorm2d.running_mean"],
                              before["4_batchnorm2d.running_mean"])


def test_frozen_bn_trains_like_inference(rng):
    bn = nn.BatchNorm2d(3)
    bn.build([(3, 4, 4)])
    bn.params["running_mean"][...] = [0.5, -1.0, 2.0]
    bn.params["running_var"][...] = [2.0, 0.5, 1.5]
    bn.params["weight"][...] = [1.5, -0.5, 2.0]
    bn.trainable["weight"] = bn.trainable["bias"] = False
    assert bn.frozen
    x = rng.standard_normal((5, 3, 4, 4)).astype(np.float32)
    np.testing.assert_array_equal(bn.forward(x, training=True), bn.forward(x))
    bn.trainable["bias"] = True   # partly frozen: batch statistics again
    assert not bn.frozen
    assert np.abs(bn.forward(x, training=True) - bn.forward(x)).max() > 0.1


def test_frozen_bn_gradient_matches_finite_differences(rng):
    bn = nn.BatchNorm2d(3)
    bn.build([(3, 4, 4)])
    bn.astype(np.float64)
    randomise_bn_stats(Sequential(bn), rng)
    bn.trainable["weight"] = bn.trainable["bias"] = False
    errors = check_gradients(bn, [rng.standard_normal((2, 3, 4, 4))])
    assert set(errors) == {"input0"}
    assert not bn.grads["weight"].any() and not bn.grads["bias"].any()


def test_net_with_frozen_prefix_gradients_match_finite_differences(rng):
    net = bn_net(classes=3).astype(np.float64)
    randomise_bn_stats(net, rng)
    transfer.freeze_to(net, "1_batchnorm2d")
    errors = check_gradients(net, [rng.standard_normal((3, 1, 8, 8))], max_coords=6,
                             params=net.named_parameters(trainable_only=True))
    assert "param:3_conv2d.weight" in errors and "param:0_conv2d.weight" not in errors


# ---------------------------------------------------------------- no gradient work

def test_frozen_layers_do_no_backward_work(monkeypatch, rng):
    net = bn_net()
    transfer.freeze_to(net, "6_maxpool2d")
    calls, names = [], {id(layer): name for name, layer in net.layers()}
    for cls in {type(layer) for _, layer in net.layers()}:
        def spy(self, *args, _original=cls.backward, **kwargs):
            calls.append((names[id(self)], kwargs.get("need_input_grad", True)))
            return _original(self, *args, **kwargs)
        monkeypatch.setattr(cls, "backward", spy)
    net._compile()   # the plan holds bound methods: rebuild it with the spies
    x, y = data(rng)
    out = net.forward(x, training=True)
    _, grad = nn.softmax_cross_entropy(out, y)
    assert net.backward(grad, input_grads=False) is None
    # Nothing trainable below 8_linear: it skips its input gradient, the rest never runs.
    assert calls == [("10_linear", True), ("9_relu", True), ("8_linear", False)]


def test_frozen_conv_between_trainable_layers_skips_its_weight_gradient(monkeypatch, rng):
    net = bn_net()
    transfer.freeze(net, ["3_conv2d", "4_batchnorm2d"])
    seen = []
    from cconv.nn import conv

    def spy(op, *args, **kwargs):
        if op == "conv2d_backward":
            seen.append((kwargs["need_input"], kwargs["need_weight"], kwargs["need_bias"]))
        return original(op, *args, **kwargs)
    original = conv.run_kernel
    monkeypatch.setattr(conv, "run_kernel", spy)
    grads = [g for _, g in net.named_gradients()]
    for g in grads:
        g[...] = np.nan   # a gradient nobody computes stays NaN
    x, y = data(rng)
    out = net.forward(x, training=True)
    net.backward(nn.softmax_cross_entropy(out, y)[1], input_grads=False)
    # 3_conv2d: input gradient (0_conv2d below is trainable), no weight/bias work;
    # 0_conv2d reads the network input: weights only.
    assert seen == [(True, False, False), (False, True, True)]
    g = dict(net.named_gradients())
    assert not np.isnan(g["0_conv2d.weight"]).any()
    assert not g["3_conv2d.weight"].any()


def test_skipping_frozen_work_leaves_trainable_gradients_unchanged(rng):
    net = bn_net()
    transfer.freeze_to(net, "4_batchnorm2d")
    x, y = data(rng)
    grads = []
    for input_grads in (True, False):
        out = net.forward(x, training=True)
        net.backward(nn.softmax_cross_entropy(out, y)[1], input_grads=input_grads)
        grads.append({k: v.copy() for k, v in net.named_gradients() if "linear" in k})
    for k in grads[0]:
        np.testing.assert_array_equal(grads[0][k], grads[1][k])


def test_linear_backward_can_skip_input_gradient(rng):
    layer = nn.Linear(5, 3)
    layer.build([(5,)], rng)
    x = rng.standard_normal((4, 5)).astype(np.float32)
    y = layer.forward(x, training=True)
    assert layer.backward(np.ones_like(y), need_input_grad=False) is None
    np.testing.assert_allclose(layer.grads["weight"], np.ones((3, 4)) @ x, rtol=1e-5)


# ---------------------------------------------------------------- new head

def test_replace_head_is_seeded_and_keeps_the_other_weights(rng):
    nets = [bn_net(seed=0) for _ in range(3)]
    before = snapshot(nets[0])
    names = [transfer.replace_head(net, 7, seed=s) for net, s in zip(nets, (5, 5, 6))]
    assert names == ["10_linear"] * 3
    a, b, c = (snapshot(n) for n in nets)
    for k in before:
        if not k.startswith("10_linear"):
            assert a[k].tobytes() == before[k].tobytes(), k
    assert a["10_linear.weight"].shape == (7, 12)
    np.testing.assert_array_equal(a["10_linear.weight"], b["10_linear.weight"])
    assert not np.array_equal(a["10_linear.weight"], c["10_linear.weight"])
    assert not a["10_linear.bias"].any()
    x, _ = data(rng, n=3)
    assert nets[0](x).shape == (3, 7)


def test_replace_head_after_freezing_gives_a_trainable_head_in_the_net_dtype():
    net = bn_net().astype(np.float64)
    net.freeze()
    transfer.replace_head(net, 2, seed=0)
    assert net["10_linear"].params["weight"].dtype == np.float64
    assert "10_linear.weight" not in net.frozen()
    assert "8_linear.weight" in net.frozen()


def test_replace_head_walks_back_over_parameter_free_outputs_and_takes_layers():
    net = Sequential(nn.Flatten(), nn.Linear(64, 10), nn.Softmax()).build((1, 8, 8))
    assert transfer.find_head(net) == "1_linear"
    transfer.replace_head(net, nn.Linear(64, 3, bias=False), seed=1)
    assert net(np.zeros((2, 1, 8, 8), np.float32)).shape == (2, 3)
    assert "1_linear.bias" not in dict(net.named_parameters())


def test_replace_head_of_conv_head():
    net = Sequential(nn.Conv2d(1, 4, 3), nn.Conv2d(4, 10, 1), nn.GlobalAvgPool(),
                     nn.Flatten()).build((1, 6, 6))
    transfer.replace_head(net, 3, seed=0)
    assert net["1_conv2d"].params["weight"].shape == (3, 4, 1, 1)
    assert net(np.ones((2, 1, 6, 6), np.float32)).shape == (2, 3)


def test_replace_head_failure_leaves_the_net_working():
    net = Sequential(nn.Linear(4, 6), nn.BatchNorm1d(6)).build((4,))
    transfer.replace_head(net, 6, seed=0, node="0_linear")   # same size: fine
    before = snapshot(net)
    with pytest.raises(GraphError, match="BatchNorm1d"):
        transfer.replace_head(net, 3, seed=0, node="0_linear")
    after = snapshot(net)
    assert all(after[k].tobytes() == before[k].tobytes() for k in before)
    assert net(np.ones((2, 4), np.float32)).shape == (2, 6)


@pytest.mark.parametrize("head, match", [
    (0, "number of classes >= 1"), (2.5, "number of classes"), (True, "number of classes"),
])
def test_replace_head_rejects_bad_heads(head, match):
    with pytest.raises(ValueError, match=match):
        transfer.replace_head(bn_net(), head)


def test_replace_head_needs_an_unambiguous_head():
    g = Graph(inputs=["x"])
    g.add("a", nn.Linear(4, 3), inputs=["x"])
    g.add("b", nn.Linear(4, 2), inputs=["x"])
    g.set_outputs(["a", "b"])
    g.build((4,))
    with pytest.raises(ValueError, match="2 outputs"):
        transfer.replace_head(g, 5)
    transfer.replace_head(g, 5, node="b")
    assert g(np.ones((1, 4), np.float32))[1].shape == (1, 5)
    with pytest.raises(KeyError, match="nope"):
        transfer.replace_head(g, 5, node="nope")
    with pytest.raises(ValueError, match="no output-count"):
        Sequential(nn.Flatten(), nn.PReLU()).build((4,)) and transfer.replace_head(
            Sequential(nn.Flatten(), nn.PReLU()).build((4,)), 3)


# ---------------------------------------------------------------- selecting, freezing

def test_match_by_glob_regex_and_node_name():
    net = bn_net()
    assert transfer.match(net, "*conv2d.weight") == ["0_conv2d.weight", "3_conv2d.weight"]
    assert transfer.match(net, "8_linear") == ["8_linear.weight", "8_linear.bias"]
    assert transfer.match(net, r"[03]_conv2d\.bias", regex=True) == \
        ["0_conv2d.bias", "3_conv2d.bias"]
    assert transfer.match(net, re.compile(r"1_batch.*")) == \
        ["1_batchnorm2d.weight", "1_batchnorm2d.bias"]   # never the running statistics
    with pytest.raises(KeyError, match="'conv9'.*matches no node"):
        transfer.match(net, "conv9")
    with pytest.raises(ValueError, match="not a valid regular expression"):
        transfer.match(net, "(", regex=True)
    with pytest.raises(ValueError, match="at least one"):
        transfer.match(net, [])


def test_freeze_to_freezes_ancestors_only_and_unfreezes_the_rest():
    g = Graph(inputs=["x"])
    g.add("trunk", nn.Linear(4, 4), inputs=["x"])
    g.add("side", nn.Linear(4, 4), inputs=["x"])
    g.add("deep", nn.Linear(4, 4), inputs=["trunk"])
    g.add("sum", nn.Add(), inputs=["deep", "side"])
    g.add("head", nn.Linear(4, 2), inputs=["sum"])
    g.build((4,))
    g.freeze()
    frozen = transfer.freeze_to(g, "deep")
    assert frozen == ["trunk.weight", "trunk.bias", "deep.weight", "deep.bias"]
    assert g.frozen() == frozen
    assert transfer.freeze_to(g, "deep", inclusive=False) == ["trunk.weight", "trunk.bias"]
    with pytest.raises(KeyError, match="no node named 'x'"):
        transfer.freeze_to(g, "x")
    transfer.unfreeze(g, "trunk*")
    assert g.frozen() == []


# ---------------------------------------------------------------- learning rates

def test_layerwise_groups_decay_from_the_head_down():
    net = bn_net()
    groups = transfer.layerwise_groups(net, 1e-2, decay=0.5)
    # BatchNorm joins the conv before it: 4 blocks
    assert [g["params"] for g in groups] == [
        ["0_conv2d.weight", "0_conv2d.bias", "1_batchnorm2d.weight", "1_batchnorm2d.bias"],
        ["3_conv2d.weight", "3_conv2d.bias", "4_batchnorm2d.weight", "4_batchnorm2d.bias"],
        ["8_linear.weight", "8_linear.bias"], ["10_linear.weight", "10_linear.bias"]]
    opt = SGD(groups, net=net, momentum=0.9)
    assert [g["lr"] for g in opt.param_groups] == pytest.approx([1.25e-3, 2.5e-3, 5e-3, 1e-2])
    assert opt.param_groups[0]["momentum"] == 0.9


def test_layerwise_groups_update_each_block_at_its_own_rate(rng):
    net = Sequential(nn.Linear(3, 3), nn.Linear(3, 2)).build((3,))
    before = snapshot(net)
    opt = SGD(transfer.layerwise_groups(net, 0.1, decay=0.1), net=net)
    x = rng.standard_normal((4, 3)).astype(np.float32)
    out = net.forward(x, training=True)
    net.backward(np.ones_like(out), input_grads=False)
    grads = {k: v.copy() for k, v in net.named_gradients()}
    opt.step()
    after = snapshot(net)
    for name, lr in [("0_linear.weight", 0.01), ("1_linear.weight", 0.1)]:
        np.testing.assert_allclose(before[name] - after[name], lr * grads[name], rtol=1e-5)


def test_layerwise_groups_with_explicit_blocks_and_multipliers():
    net = bn_net()
    groups = transfer.layerwise_groups(net, 1.0, decay=0.1,
                                       blocks=[["0_*", "1_*", "3_*", "4_*"], "*linear"])
    assert [g["lr"] for g in groups] == pytest.approx([0.1, 1.0])
    with pytest.raises(ValueError, match="in no block"):
        transfer.layerwise_groups(net, 1.0, blocks=["*conv2d"])
    groups = transfer.lr_multiplier_groups(net, 0.5, {"*conv2d*": 0.1, "10_*": 2})
    assert [(len(g["params"]), g["lr"]) for g in groups] == \
        [(4, pytest.approx(0.05)), (2, 1.0), (6, 0.5)]
    with pytest.raises(KeyError, match="typo"):
        transfer.lr_multiplier_groups(net, 0.5, {"typo*": 0.1})
    with pytest.raises(ValueError, match="decay must be"):
        transfer.layerwise_groups(net, 1.0, decay=-1)


# ---------------------------------------------------------------- persistence, CLI

def test_save_load_keeps_frozen_state_and_frozen_bn(tmp_path, rng):
    net = bn_net()
    transfer.replace_head(net, 3, seed=2)
    frozen = transfer.freeze_to(net, "4_batchnorm2d")
    cconv.save(net, tmp_path / "ft.safetensors")
    back = cconv.load(tmp_path / "ft.safetensors")
    assert back.frozen() == frozen
    assert back["4_batchnorm2d"].frozen and not back["10_linear"].trainable.get("x", False)
    x, _ = data(rng, n=4)
    np.testing.assert_array_equal(back(x), net(x))
    before = back["4_batchnorm2d"].params["running_mean"].copy()
    back.forward(x, training=True)
    np.testing.assert_array_equal(back["4_batchnorm2d"].params["running_mean"], before)


def test_finetune_cli_end_to_end(tmp_path, capsys):
    pytest.importorskip("sklearn")
    from cconv.cli import main
    from cconv.examples.digits import build_model
    from cconv.io import read_safetensors

    src, out = tmp_path / "base.safetensors", tmp_path / "ft.safetensors"
    base = build_model(seed=0)
    cconv.save(base, src, metadata={"input_scale": "16.0"})
    assert main(["finetune", str(src), "--classes", "5,7,9", "--per-class", "4",
                 "--freeze-to", "5_maxpool2d", "--epochs", "2", "--lr-decay", "0.5",
                 "--no-progress", "-o", str(out)]) == 0
    text = capsys.readouterr().out
    assert "12 training" in text and "held-out accuracy" in text
    net = cconv.load(out)
    _, meta = read_safetensors(out)
    assert meta["classes"] == "5,7,9" and meta["input_scale"] == "16.0"
    assert net.frozen() == ["0_conv2d.weight", "0_conv2d.bias", "3_conv2d.weight",
                            "3_conv2d.bias"]
    assert net(np.zeros((1, 1, 8, 8), np.float32)).shape == (1, 3)
    trained, original = dict(net.named_parameters()), dict(base.named_parameters())
    assert trained["3_conv2d.weight"].tobytes() == original["3_conv2d.weight"].tobytes()
    assert not np.array_equal(trained["9_linear.weight"], original["9_linear.weight"])
    assert main(["finetune", str(out), "--list"]) == 0
    assert "frozen" in capsys.readouterr().out


@pytest.mark.parametrize("argv, message", [
    (["--freeze-to", "nope"], "no node named 'nope'"),
    (["--classes", "5-12"], "digits 0..9"),
    (["--per-class", "500"], "has only"),
    (["--lr", "0"], "--lr"),
])
def test_finetune_cli_bad_arguments(tmp_path, argv, message):
    pytest.importorskip("sklearn")
    from cconv.cli import main
    from cconv.examples.digits import build_model

    src = tmp_path / "base.safetensors"
    cconv.save(build_model(seed=0), src)
    with pytest.raises(SystemExit, match=message):
        main(["finetune", str(src), "--epochs", "1", "-o", "", *argv])


def test_digit_task_has_the_requested_classes_and_counts():
    pytest.importorskip("sklearn")
    from cconv.examples.digit_tasks import load_task, parse_classes

    assert parse_classes("5-7,9") == [5, 6, 7, 9]
    for bad in ("3-", "1,1", "10", ""):
        with pytest.raises(ValueError, match="classes"):
            parse_classes(bad)
    x, y, xt, yt = load_task([7, 2], per_class=3, seed=1)
    assert x.shape == (6, 1, 8, 8) and x.dtype == np.float32 and x.max() <= 1
    assert list(y) == [0, 0, 0, 1, 1, 1]
    assert set(yt) == {0, 1} and len(xt) > 50
    again = load_task([7, 2], per_class=3, seed=1)
    np.testing.assert_array_equal(again[0], x)
    # no held-out image is also a training image
    flat = {row.tobytes() for row in xt.reshape(len(xt), -1)}
    assert not any(row.tobytes() in flat for row in x.reshape(len(x), -1))
    with pytest.raises(ValueError, match="per_class"):
        load_task([1], per_class=0)


def test_transfer_experiment_script_runs_on_a_tiny_setting(tmp_path):
    pytest.importorskip("sklearn")
    import importlib.util
    import json
    import os

    path = os.path.join(os.path.dirname(__file__), "..", "examples", "transfer_digits.py")
    spec = importlib.util.spec_from_file_location("transfer_digits", path)
    script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(script)
    script.main(["--seeds", "1", "--epochs", "2", "--pretrain-epochs", "1", "--per-class", "2",
                 "--sweep-lrs", "1e-3", "--sweep-seeds", "1", "--out-dir", str(tmp_path)])
    result = json.loads((tmp_path / "transfer_digits.json").read_text())
    assert set(result["summary"]) == set(script.METHODS)
    curve = result["runs"][0]["head_only"]
    assert len(curve["accuracy"]) == 3 and curve["drift"] == [0.0, 0.0, 0.0]
    assert result["runs"][0]["all_high_lr"]["drift"][-1] > 0
    assert (tmp_path / "transfer_digits.png").stat().st_size > 0


def test_an_optimizer_made_before_replace_head_trains_the_new_head(rng):
    net = bn_net()
    x, y = data(rng)
    opt = Adam(net, lr=0.01)
    train_steps(net, opt, x, y, steps=1)   # state for the old head
    transfer.replace_head(net, 4, seed=3)
    head = net["10_linear"].params["weight"].copy()
    train_steps(net, opt, x, y, steps=2)
    assert not np.array_equal(net["10_linear"].params["weight"], head)
    assert opt.state["10_linear.weight"]["step"] == 2   # fresh state, not the old head's
    assert opt.state["8_linear.weight"]["step"] == 3

    transfer.replace_head(net, nn.Linear(12, 4, bias=False), seed=0)
    with pytest.raises(ValueError, match="'10_linear.bias'.*no longer in the net"):
        opt.step()
