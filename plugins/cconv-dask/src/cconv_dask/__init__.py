"""cconv on Dask: batch inference and hyper-parameter sweeps, on a laptop or a cluster.

    import cconv_dask
    out = cconv_dask.predict(net, dask_array, batch_size=128)     # a dask array, input order
    result = cconv_dask.sweep(build, configs, x, y, validation_data=(vx, vy))

Both use the session's distributed Client (or client=/address=), else Dask's
local scheduler. See docs/dask.md in the cconv repository.
"""
from .images import load_image, load_images
from .predict import predict
from .sweep import SweepResult, Trial, sweep

__version__ = "0.1.0"

__all__ = ["SweepResult", "Trial", "load_image", "load_images", "predict", "sweep"]
