"""Fixtures and fakes shared by the plugin and CLI tests."""
import contextlib
import importlib
import importlib.metadata
import os
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


def _entry_points_of(plugin_dir):
    """[(group, name, value)] declared in plugins/<name>/pyproject.toml."""
    groups, group = [], None
    with open(os.path.join(plugin_dir, "pyproject.toml")) as f:
        for line in f:
            line = line.split("#", 1)[0].strip()
            if line.startswith("["):
                group = line[len("[project.entry-points."):-1].strip('"') \
                    if line.startswith("[project.entry-points.") else None
            elif group and "=" in line:
                key, value = (part.strip().strip('"') for part in line.split("=", 1))
                groups.append((group, key, value))
    return groups


@contextlib.contextmanager
def plugin_on_path(plugin_dir, site_dir):
    """The plugin package in plugin_dir importable and discoverable by entry point for
    the block, without installing anything: its src/ and a dist-info written into
    site_dir (made from its pyproject.toml) go on sys.path. An installed copy is used
    as it is."""
    dist = os.path.basename(plugin_dir)
    module = dist.replace("-", "_")
    added = []
    try:
        importlib.metadata.distribution(dist)
    except importlib.metadata.PackageNotFoundError:
        info = os.path.join(site_dir, f"{module}-0.0.0.dist-info")
        os.makedirs(info, exist_ok=True)
        with open(os.path.join(info, "METADATA"), "w") as f:
            f.write(f"Metadata-Version: 2.1\nName: {dist}\nVersion: 0.0.0\n")
        lines = {}
        for group, key, value in _entry_points_of(plugin_dir):
            lines.setdefault(group, []).append(f"{key} = {value}")
        with open(os.path.join(info, "entry_points.txt"), "w") as f:
            f.write("".join(f"[{g}]\n" + "\n".join(v) + "\n" for g, v in lines.items()))
        added = [os.path.join(plugin_dir, "src"), str(site_dir)]
    for path in reversed(added):
        sys.path.insert(0, path)
    importlib.invalidate_caches()
    try:
        yield importlib.import_module(module)
    finally:
        for path in added:
            sys.path.remove(path)
        importlib.invalidate_caches()


@pytest.fixture(scope="session")
def example_plugin(tmp_path_factory):
    """The cconv-example plugin package, discoverable by entry point; not installed."""
    with plugin_on_path(EXAMPLE_DIR, tmp_path_factory.mktemp("site")) as module:
        plugins.reset()
        yield module
    plugins.reset()
