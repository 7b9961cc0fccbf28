"""The `cconv` command line: the pluggable subcommand table and `cconv plugins`."""
# Fixtures are imported by name (the pytest11 plugin may not be installed yet),
# so test arguments "redefine" them:
# ruff: noqa: F811
import json
import subprocess
import sys

import pytest

import cconv
from cconv import cli
from cconv.testing import cconv_plugin  # noqa: F401
from plugin_helpers import (REPO, LayerPlugin, clean_plugin_state,  # noqa: F401
                            example_plugin, make_layer)


def test_plugins_lists_every_kind_with_its_package(capsys):
    assert cli.main(["plugins"]) == 0
    out = capsys.readouterr().out
    for header in ("Plugins (", "Layers (", "Kernels (", "Optimizers (", "Weight loaders ("):
        assert header in out
    lines = [line.split() for line in out.splitlines()]
    assert ["Conv2d", "cconv", "cconv.builtins.layers"] in lines
    assert ["conv2d", "depthwise_direct", "10", "cconv"] in lines
    assert ["conv2d", "im2col_gemm", "0", "cconv"] in lines
    assert ["conv2d", "numpy_reference", "-100", "cconv"] in lines
    assert ["sgd", "cconv", "cconv.optim.SGD"] in lines
    assert ["safetensors", ".safetensors", "cconv"] in lines


def test_plugins_json(capsys, cconv_plugin):
    cconv_plugin(LayerPlugin(make_layer("Twice")), name="twice")
    cconv.plugins.force_kernel("conv2d", "numpy_reference")
    assert cli.main(["plugins", "--json"]) == 0
    listing = json.loads(capsys.readouterr().out)
    assert set(listing) == {"plugins", "layers", "kernels", "optimizers", "weight_loaders"}
    twice = next(e for e in listing["layers"] if e["name"] == "Twice")
    assert (twice["package"], twice["plugin"]) == ("plugin_helpers", "twice")
    forced = [(k["op"], k["name"]) for k in listing["kernels"] if k["forced"]]
    assert forced == [("conv2d", "numpy_reference")]
    assert {"name": "safetensors", "package": "cconv", "plugin": "cconv.builtins.loaders",
            "object": "cconv.builtins.loaders.load_safetensors",
            "suffixes": [".safetensors"]} in listing["weight_loaders"]


def test_example_plugin_appears_in_the_listing(example_plugin, capsys):
    cli.main(["plugins"])
    lines = [line.split() for line in capsys.readouterr().out.splitlines()]
    assert ["example", "cconv-example", "ok"] in lines
    assert ["Swish", "cconv-example", "example"] in lines
    assert ["lion", "cconv-example", "cconv_example.lion.Lion"] in lines


def test_python_dash_m_cconv_runs_the_same_cli():
    done = subprocess.run([sys.executable, "-m", "cconv", "plugins", "--json"], cwd=REPO,
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert any(e["name"] == "Conv2d" for e in json.loads(done.stdout)["layers"])


def add_hello(subparsers):
    p = subparsers.add_parser("hello", help="say hello")
    p.add_argument("--name", default="world")
    p.set_defaults(func=lambda args: print(f"hello {args.name}") or 3)


def test_subcommands_come_from_the_table_and_missing_modules_are_left_out(monkeypatch, capsys):
    monkeypatch.setitem(cli.SUBCOMMANDS, "hello", f"{__name__}:add_hello")
    monkeypatch.setitem(cli.SUBCOMMANDS, "ghost", "cconv_no_such_module:add_parser")
    assert cli.main(["hello", "--name", "cconv"]) == 3
    assert capsys.readouterr().out == "hello cconv\n"
    help_text = cli.build_parser().format_help()
    assert "hello" in help_text and "plugins" in help_text and "ghost" not in help_text
    with pytest.raises(SystemExit) as exc:
        cli.main(["ghost"])
    assert exc.value.code == 2


def test_no_command_prints_help_and_fails(capsys):
    assert cli.main([]) == 2
    assert "plugins" in capsys.readouterr().out
