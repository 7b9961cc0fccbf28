"""Built-in plugin: the optimizers of cconv.optim ("sgd", "adam", "adamw")."""
from cconv.hookspecs import hookimpl
from cconv.optim import SGD, Adam, AdamW


@hookimpl
def register_optimizers(register):
    for optimizer_class in (SGD, Adam, AdamW):
        register(optimizer_class)
