"""Built-in plugin: the safetensors weight loader."""
from cconv.hookspecs import hookimpl


def load_safetensors(path):
    """A .safetensors file as a dict of numpy arrays (name -> array)."""
    # Imported here: reading weights is rare, and `import cconv` must stay fast.
    from safetensors.numpy import load_file

    return load_file(path)


@hookimpl
def register_weight_loaders(register):
    register("safetensors", load_safetensors, suffixes=[".safetensors"],
             description="safetensors file (safetensors.numpy.load_file)")
