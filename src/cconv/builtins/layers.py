"""Built-in plugin: every layer of cconv.nn, under its type_name."""
from cconv.hookspecs import hookimpl
from cconv.nn import LAYER_CLASSES


@hookimpl
def register_layers(register):
    for layer_class in LAYER_CLASSES.values():
        register(layer_class)
