"""Built-in plugin: the safetensors weight loader (cconv model files and bare state_dicts)."""
from cconv.hookspecs import hookimpl


def load_safetensors(path):
    """A .safetensors file as a dict of numpy arrays (name -> array); metadata ignored.

    Reads cconv model files and bare state_dicts written by other tools
    (safetensors.torch.save_file, Hugging Face model.safetensors) alike,
    through cconv's validating reader: every offset and size is checked
    before an array is made, and BF16 tensors come back as float32.
    """
    from cconv.io import read_safetensors

    return read_safetensors(path)[0]


@hookimpl
def register_weight_loaders(register):
    register("safetensors", load_safetensors, suffixes=[".safetensors"],
             description="safetensors file: cconv model or bare state_dict (validating "
                         "reader; BF16 -> float32)")
