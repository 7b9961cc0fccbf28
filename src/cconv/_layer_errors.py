"""Errors raised inside a layer, named: which node, which layer type, which plugin.

A plugin's layer that raises in forward or backward must not take the net
down with a bare traceback from someone else's code: Graph.forward/backward
find the node whose layer raised (from the traceback) and

- for a layer from a plugin (a package other than cconv), raise LayerError
  naming the node, the layer type, the plugin and its package, chained to the
  original exception;
- for a built-in layer, keep the exception (callers catch ValueError from
  shape checks) and add a note naming the node.

Nothing is kept from the failed call: the net can be called again.
"""
import functools

from ._registries import PluginError

__all__ = ["LayerError", "names_failing_layer"]


class LayerError(PluginError, RuntimeError):
    """A plugin layer raised in forward or backward; the message names node and plugin."""


def _failing_node(graph, tb):
    """(node name, layer) of the outermost frame in tb that runs one of graph's layers."""
    layers = {id(node.layer): (name, node.layer) for name, node in graph.nodes.items()}
    while tb is not None:
        owner = tb.tb_frame.f_locals.get("self")
        if owner is not None and id(owner) in layers:
            return layers[id(owner)]
        tb = tb.tb_next
    return None, None


def _origin(layer):
    """(plugin, package) that registered the layer's type, or (None, None)."""
    try:
        from . import plugins
        entry = plugins.registry().layers.entry(layer.type_name)
    except Exception:   # noqa: BLE001 -- naming is best effort, never a new failure
        return None, None
    if entry.obj is not type(layer):
        return None, None
    return entry.plugin, entry.source


def names_failing_layer(phase):
    """Decorator for Graph.forward/backward: name the node whose layer raised."""
    def wrap(method):
        @functools.wraps(method)
        def run(self, *args, **kwargs):
            try:
                return method(self, *args, **kwargs)
            except LayerError:
                raise
            except Exception as exc:
                name, layer = _failing_node(self, exc.__traceback__)
                if layer is None:
                    raise
                plugin, package = _origin(layer)
                where = f"node {name!r} ({layer.type_name}"
                if package is not None and package != "cconv":
                    raise LayerError(f"{where}, a layer of plugin {plugin!r} from {package}) "
                                     f"failed in {phase}: {type(exc).__name__}: {exc}") from exc
                if hasattr(exc, "add_note"):   # Python >= 3.11
                    exc.add_note(f"in {phase} of {where})")
                raise
        return run
    return wrap
