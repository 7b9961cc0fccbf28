"""Fixtures and fakes shared by the plugin and CLI tests."""
import importlib
import importlib.metadata
import os
import subprocess
import sys
import types

import numpy as np
import pytest

import cconv
from cconv import plugins
from cconv.nn.base import Layer

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
EXAMPLE_DIR = os.path.join(REPO, "plugins", "cconv-example")
ENV_VARS = ("CCONV_DISABLE_PLUGIN_AUTOLOAD", "CCONV_LOAD_PLUGINS", "CCONV_STRICT_PLUGINS",
            "CCONV_TRACE_PLUGINS")


@pytest.fixture(autouse=True)
def clean_plugin_state(monkeypatch):
    """Every test starts from a fresh default manager, with no plugin env vars set."""
    for name in ENV_VARS:
        monkeypatch.delenv(name, raising=False)
    plugins.reset()
    yield
    plugins.reset()


class FakeEntryPoint:
    """What cconv reads from an importlib.metadata entry point: name, dist, load()."""

    def __init__(self, name, plugin=None, error=None, dist="fake-dist"):
        self.name, self.group, self.value = name, "cconv", f"fake_{name}"
        self.dist = types.SimpleNamespace(name=dist)
        self._plugin, self._error = plugin, error

    def load(self):
        if self._error is not None:
            raise self._error
        return self._plugin


@pytest.fixture
def fake_entry_points(monkeypatch):
    """A list the test fills with FakeEntryPoints: the only installed cconv plugins."""
    eps = []

    def entry_points(**selection):
        return [ep for ep in eps if selection.get("group") == ep.group]

    monkeypatch.setattr(importlib.metadata, "entry_points", entry_points)
    return eps


def make_layer(type_name):
    """A trivial Layer subclass (y = 2x) registered under type_name."""
    def output_shape(self, input_shapes):
        return tuple(input_shapes[0])

    def forward(self, x, training=False):
        return 2 * np.asarray(x)

    def backward(self, grad_out):
        return 2 * grad_out

    return type(type_name, (Layer,), {"type_name": type_name, "output_shape": output_shape,
                                      "forward": forward, "backward": backward})


class LayerPlugin:
    """A plugin registering the given layer classes (optionally with override=True)."""

    def __init__(self, *classes, override=False, fail_after=False):
        self.classes, self.override, self.fail_after = classes, override, fail_after

    @cconv.hookimpl
    def register_layers(self, register):
        for layer_class in self.classes:
            register(layer_class, override=self.override)
        if self.fail_after:
            raise RuntimeError("registration exploded")


def _pip_install_example():
    base = [sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "-e", EXAMPLE_DIR]
    # Without build isolation first: no network needed when setuptools is present.
    for cmd in (base[:4] + ["--no-build-isolation"] + base[4:], base):
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
        if done.returncode == 0:
            return
    pytest.fail(f"cannot pip install {EXAMPLE_DIR}:\n{done.stdout}\n{done.stderr}")


@pytest.fixture(scope="session")
def example_plugin():
    """The cconv-example plugin package, pip-installed (editable) when missing."""
    try:
        importlib.metadata.distribution("cconv-example")
    except importlib.metadata.PackageNotFoundError:
        _pip_install_example()
        importlib.invalidate_caches()
    try:
        module = importlib.import_module("cconv_example")
    except ImportError:
        # An editable install's .pth file is read at interpreter start only.
        sys.path.insert(0, os.path.join(EXAMPLE_DIR, "src"))
        module = importlib.import_module("cconv_example")
    plugins.reset()
    return module
