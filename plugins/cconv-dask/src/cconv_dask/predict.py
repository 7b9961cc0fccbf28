"""Batch inference as Dask tasks: one task per chunk of samples, outputs in input order.

Each task forwards its chunk in batches of batch_size. cconv's GEMM chooses
its kernel by the number of rows, so the same sample can round differently in
a batch of 7 than in one of 8; chunks are therefore aligned to multiples of
batch_size, which makes the result bit-identical to single-process
`cconv.predict(net, x, batch_size)` (= net(x) batch by batch).
"""
import os
from dataclasses import dataclass

import dask
import dask.array as da
import numpy as np

from . import _cluster, _model
from .images import check_input_shape, load_images

__all__ = ["predict"]


@dataclass(frozen=True)
class _Job:
    """Everything a task needs besides its data and the model bytes (small, sent per task)."""
    digest: str
    batch_size: int
    input_shape: tuple
    output_shape: tuple
    dtype: str
    threads: dict
    transform: object = None


def _forward(net, x, job):
    with _cluster.cconv_threads(_cluster.threads_for_task(job.threads)):
        outs = [net.forward(x[s:s + job.batch_size]) for s in range(0, len(x), job.batch_size)]
    if not outs:
        return np.empty((0,) + job.output_shape, dtype=job.dtype)
    return np.concatenate(outs) if len(outs) > 1 else np.asarray(outs[0])


def _predict_block(block, model_data, job):
    with _model.borrowed_net(model_data, job.digest) as net:
        return _forward(net, _model.aligned(block, job.dtype), job)


def _predict_files(paths, model_data, job):
    x = load_images(paths, job.input_shape, job.dtype, job.transform)
    with _model.borrowed_net(model_data, job.digest) as net:
        return _forward(net, x, job)


def _check_count(name, value):
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{name} must be an integer >= 1, got {value!r}")


def _aligned_chunks(chunks, batch_size):
    """chunks along the sample axis, with every boundary on a multiple of batch_size."""
    total = sum(chunks)
    ends = np.cumsum(chunks)[:-1]
    if all(e % batch_size == 0 for e in ends):
        return tuple(chunks)
    size = batch_size * max(1, round(float(np.median(chunks)) / batch_size))
    full, rest = divmod(total, size)
    return (size,) * full + ((rest,) if rest else ())


def _predict_array(x, ref, job):
    in_ndim = 1 + len(job.input_shape)
    if x.ndim != in_ndim or tuple(x.shape[1:]) != job.input_shape:
        raise ValueError(f"data has shape {x.shape}; the model takes (N,) + "
                         f"{job.input_shape}")
    if any(np.isnan(c) for c in x.chunks[0]):
        raise ValueError("data has unknown chunk sizes along the sample axis; call "
                         "data.compute_chunk_sizes() first")
    # one chunk across every axis but the samples; sample chunks on batch boundaries
    x = x.rechunk((_aligned_chunks(x.chunks[0], job.batch_size),) + job.input_shape)
    out_ndim = 1 + len(job.output_shape)
    axes = {}
    if out_ndim < in_ndim:
        axes["drop_axis"] = list(range(out_ndim, in_ndim))
    elif out_ndim > in_ndim:
        axes["new_axis"] = list(range(in_ndim, out_ndim))
    return x.map_blocks(_predict_block, ref, job=job, name="cconv-predict",
                        chunks=(x.chunks[0],) + tuple((s,) for s in job.output_shape),
                        dtype=job.dtype, meta=np.empty((0,) * out_ndim, dtype=job.dtype),
                        **axes)


def _file_parts(data, chunk_size, client):
    """([part of paths or a Delayed list of paths], [length of each part])."""
    if isinstance(data, (list, tuple)):
        paths = list(data)
        bad = [p for p in paths if not isinstance(p, (str, os.PathLike))]
        if bad:
            raise TypeError(f"data: a list must hold image file paths; found "
                            f"{type(bad[0]).__name__} {bad[0]!r}")
        paths = [os.fspath(p) for p in paths]
        parts = [paths[i:i + chunk_size] for i in range(0, len(paths), chunk_size)]
        return parts, [len(p) for p in parts]
    parts = data.to_delayed()  # a dask bag: one part per partition
    counts = [dask.delayed(len)(p) for p in parts]
    # the output's chunk sizes: counted where the bag lives (the cluster, if any)
    lengths = client.gather(client.compute(counts)) if client is not None and counts \
        else dask.compute(*counts)
    return parts, list(lengths)


def _predict_files_all(data, ref, job, chunk_size, client):
    check_input_shape(job.input_shape)
    parts, lengths = _file_parts(data, chunk_size, client)
    meta = np.empty((0,) * (1 + len(job.output_shape)), dtype=job.dtype)
    pieces = [da.from_delayed(dask.delayed(_predict_files, pure=True)(part, ref, job),
                              shape=(n,) + job.output_shape, dtype=job.dtype, meta=meta)
              for part, n in zip(parts, lengths) if n]
    if not pieces:
        return da.empty((0,) + job.output_shape, dtype=job.dtype, chunks=1)
    return da.concatenate(pieces) if len(pieces) > 1 else pieces[0]


def _is_bag(data):
    try:
        import dask.bag
    except ImportError:
        return False
    return isinstance(data, dask.bag.Bag)


def predict(model, data, batch_size=256, *, chunk_size=None, client=None, address=None,
            threads_per_task=None, transform=None, progress=False):
    """Outputs of model on data, computed as Dask tasks; a dask array in input order.

    model: a cconv net, the path of a file written by cconv.save, or its bytes.
        It is serialized once and scattered to every worker once; a worker
        loads it on its first task and keeps it (one copy per concurrent task).
    data: a dask array (N, C, H, W) (a numpy array is chunked by chunk_size);
        or a list of image file paths or a dask bag of them (read with Pillow,
        grey or RGB and resized to the model's input shape, scaled to [0, 1],
        then transform(image) if given).
    batch_size: samples per forward call inside a task; chunks are aligned to
        it (see the module docstring). chunk_size: samples per task for numpy
        arrays and path lists (default batch_size).
    client / address: the distributed Client, or a scheduler address to
        connect to; default: the session's default client, else Dask's local
        scheduler.
    threads_per_task: cconv threads inside each task; default: the host's
        CPUs over the Dask threads of all workers on that host.
    progress: compute now with Dask's progress bar; returns the persisted array.
    """
    _check_count("batch_size", batch_size)
    chunk_size = batch_size if chunk_size is None else chunk_size
    _check_count("chunk_size", chunk_size)
    data_bytes, net = _model.model_bytes(model)
    if len(net.input_names) != 1 or len(net.output_names) != 1:
        raise ValueError(f"predict runs nets with one input and one output; this one has "
                         f"inputs {net.input_names} and outputs {net.output_names}")
    input_shape = tuple(int(s) for s in net.input_shapes[0])
    output_shape = tuple(int(s) for s in
                         net.infer_shapes(net.input_shapes)[net.output_names[0]])
    client = _cluster.resolve_client(client, address)
    if isinstance(data, np.ndarray):
        data = da.from_array(data, chunks=(chunk_size,) + data.shape[1:])
    job = _Job(_model.digest_of(data_bytes), batch_size, input_shape, output_shape,
               np.dtype(net.dtype).str, _cluster.plan_threads(client, threads_per_task),
               transform)
    if isinstance(data, da.Array):
        if transform is not None:
            raise ValueError("transform applies to image files; map it over the dask "
                             "array instead (data.map_blocks(...))")
        out = _predict_array(data, _cluster.share(client, data_bytes), job)
    elif isinstance(data, (list, tuple)) or _is_bag(data):
        out = _predict_files_all(data, _cluster.share(client, data_bytes), job, chunk_size,
                                 client)
    else:
        raise TypeError(f"data must be a dask array (N, C, H, W), a numpy array, a list of "
                        f"image file paths or a dask bag of them; got {type(data).__name__}")
    if progress:
        (out,) = _cluster.show_progress(client, [out])
    return out
