"""Compiled inference plans: a Graph's forward for one input shape, prepared once.

`Graph.forward(x)` (inference) runs through a plan made on the first call
for each input shape, in each thread; `net.compile(shape)` makes it ahead of
time and returns it. A plan

- resolves the topological order, every shape and every kernel argument once;
- fuses Conv2d + ReLU and Linear + ReLU into one step: the conv kernel's
  own ReLU epilogue where the C core has one (`_kernels.ACTIVATIONS`),
  else ReLU (and Linear's bias) in place on the step's output with
  cconv._plan's one-pass loops (numpy's ufuncs without the extension);
- preallocates one output buffer per step and reuses it on every call, so
  a batch-1 forward allocates only its result. Flatten/Reshape are views;
- runs a chain whose every step has a C kernel (conv2d, max_pool2d, linear,
  relu, views) as one C call (`_kernels.Chain`, the core's
  cconv_chain_forward): no Python between layers, and for small nets the
  batch split over threads in one parallel region instead of one region
  (and one wake-up of the team) per layer.

Buffers belong to the plan, and a plan to one thread (see `_thread_plans`), so
threads sharing a net never share a buffer. Arrays returned by
`forward` are fresh on every call unless `reuse_output=True`, which returns
the plan's own buffer: overwritten by the next call in the same thread.

Built-in kernels are called directly only while they are what the plugin
registry would pick (no plugin kernel, no forced one, no autotuned choice);
otherwise that step runs the layer's own forward. Anything unexpected on the
hot path (a replaced parameter of another dtype, an input in another memory
layout) raises TypeError/ValueError in the C wrappers, and the caller then
takes the general path, which converts or explains.
"""
import threading
import weakref

import numpy as np

from . import ops, plugins

try:  # the C epilogues; numpy does the same, slower, if the extension is absent
    from . import _plan
except ImportError:  # pragma: no cover - only in a source tree without build
    _plan = None

__all__ = ["CompiledPlan", "plan_for", "cached_plan", "clear"]

# Plans kept per graph per thread; a net fed ever-new shapes drops them all.
MAX_PLANS = 8
# Bytes of buffers one plan keeps between calls; the steps past it allocate
# per call as the uncompiled path does (a big batch gains little from reuse
# and should not pin its activations in memory after the call).
MAX_BUFFER_BYTES = 32 << 20


def _relu_into(x, y):
    if _plan is not None:
        try:
            _plan.relu(x, y)
            return y
        except (TypeError, ValueError):
            pass
    return np.maximum(x, 0, out=y)


def _bias_act(y2, bias, relu):
    """y2 (rows, n) += bias, then ReLU, in place (same rounding as `y += bias`)."""
    if _plan is not None:
        try:
            _plan.bias_act_rows(y2, bias, relu)
            return
        except (TypeError, ValueError):
            pass
    if bias is not None:
        y2 += bias
    if relu:
        np.maximum(y2, 0, out=y2)


# On the plan's own buffers (C-contiguous, float32/64, writable) the C loops
# cannot refuse; only a replaced parameter (bias of another dtype) can, and
# then the whole call takes the general path.
relu_own = _plan.relu if _plan is not None else _relu_into
bias_act = _plan.bias_act_rows if _plan is not None else _bias_act


def _fused_relu_code():
    """The C kernels' code for a fused ReLU epilogue, or None where they have none."""
    codes = getattr(ops._kernels, "ACTIVATIONS", None)
    return codes.get("relu") if isinstance(codes, dict) else None


def _registry_state():
    """What the kernel choice depends on; a plan is rebuilt when it changes."""
    regs = plugins.registry()
    return regs, regs.kernels.static


# ---------------------------------------------------------------- steps
# Each step maker returns fn(*inputs) -> output. `fresh` says the output is a
# graph output: a new array per call (unless reuse) so callers may keep it.

class _Buffer:
    """The output array of one step, or (fresh) a new one per call."""

    __slots__ = ("shape", "dtype", "array", "fresh")

    def __init__(self, shape, dtype, fresh):
        self.shape, self.dtype, self.fresh = shape, dtype, fresh
        self.array = None if fresh else np.empty(shape, dtype)


def _conv_args(layer, in_shape):
    """The C kernel's arguments for Conv2d layer on in_shape (checked once by
    ops._conv_plan): (shape_x, shape_w, stride4, pads4, dil4, groups)."""
    params = layer.params
    a = layer._op_args()
    h = ops._hashable
    return ops._conv_plan(
        "conv2d", tuple(in_shape), tuple(params["weight"].shape),
        (params["weight"].shape[0],) if layer.bias else None, h(a["stride"]),
        h(a["padding"]), h(a["dilation"]), a["groups"], 2)[:6]


def _conv_step(layer, in_shape, dtype, relu, buf):
    """Conv2d (+ ReLU) into the step's buffer.

    The C kernel writes straight into the buffer, with the arguments
    ops.conv2d_runner would pass (checked once by ops._conv_plan). ReLU runs
    inside the kernel where it offers the fused epilogue (the activation
    codes of _kernels.ACTIVATIONS), else in place right after.
    """
    fresh, shape, dt, arr, empty = buf.fresh, buf.shape, buf.dtype, buf.array, np.empty
    params, has_bias = layer.params, layer.bias
    _, _, stride4, pads4, dil4, groups = _conv_args(layer, in_shape)
    kernel, threads = ops._kernels.conv2d_forward, ops.get_num_threads
    act = _fused_relu_code() if relu else None
    if act is not None:
        def step(x):
            y = empty(shape, dt) if fresh else arr
            kernel(x, params["weight"], params["bias"] if has_bias else None, y, stride4,
                   pads4, dil4, groups, threads(), act)
            return y
        return step

    def step(x):
        y = empty(shape, dt) if fresh else arr
        kernel(x, params["weight"], params["bias"] if has_bias else None, y, stride4, pads4,
               dil4, groups, threads())
        if relu:
            relu_own(y, y)
        return y
    return step


def _pool_args(layer, in_shape):
    """Max-pool layer on in_shape as the C kernel takes it (checked once by
    ops._pool_setup): (output shape, kernel, stride, pads4, dilation)."""
    a = layer._op_args()
    h = ops._hashable
    _, out4, _, (k, st, p, d) = ops._pool_setup(
        "max_pool2d", tuple(in_shape), h(a["kernel_size"]), h(a["stride"]), h(a["padding"]),
        h(a["dilation"]), a["ceil_mode"], 2)
    return out4, k, st, p, d


def _pool2_of(layer, in_shape):
    """True when max-pool layer on in_shape is the 2x2 / stride 2 window without
    padding that the direct convolution can apply in its epilogue."""
    try:
        out4, k, st, p, d = _pool_args(layer, in_shape)
    except (TypeError, ValueError):
        return False
    return (tuple(k) == (2, 2) and tuple(st) == (2, 2) and not any(p) and tuple(d) == (1, 1)
            and tuple(out4[2:]) == (in_shape[2] // 2, in_shape[3] // 2))


def _conv_pool_plan(layer, in_shape, relu):
    """What Conv2d (+ ReLU) + MaxPool2d(2) as one C call needs, or None where it does not pay.

    Only where ops.conv2d itself runs the direct algorithm: its epilogue then
    pools each pair of output rows while they are in registers, so the
    full-size activation is never written (LeNet: two steps and a pass over
    the largest activation fewer).
    """
    act = _fused_relu_code() if relu else 0
    if act is None:
        return None
    shape_x, shape_w, stride4, pads4, dil4, groups = _conv_args(layer, in_shape)
    if ops.conv2d_algorithms(shape_x, shape_w, stride4, pads4, dil4, groups)[0] != "direct":
        return None
    return act, stride4, pads4, dil4, groups


def _conv_pool_step(layer, plan, buf):
    act, stride4, pads4, dil4, groups = plan
    kernel = ops._kernels.conv2d_forward
    params, has_bias = layer.params, layer.bias
    fresh, shape, dt, arr, empty = buf.fresh, buf.shape, buf.dtype, buf.array, np.empty
    threads = ops.get_num_threads

    def step(x):
        y = empty(shape, dt) if fresh else arr
        kernel(x, params["weight"], params["bias"] if has_bias else None, y, stride4, pads4,
               dil4, groups, threads(), act, 0, True)
        return y
    return step


def _pool_step(layer, in_shape, dtype, buf):
    fresh, shape, dt, arr, empty = buf.fresh, buf.shape, buf.dtype, buf.array, np.empty
    _, k, st, p, d = _pool_args(layer, in_shape)
    kernel, threads = ops._kernels.max_pool2d_forward, ops.get_num_threads

    def step(x):
        y = empty(shape, dt) if fresh else arr
        kernel(x, y, None, k, st, p, d, threads())
        return y
    return step


def _linear_step(layer, in_shape, dtype, relu, buf):
    fresh, shape, dt, arr, empty = buf.fresh, buf.shape, buf.dtype, buf.array, np.empty
    rows = int(np.prod(in_shape[:-1], dtype=np.int64))
    n_in, n_out = layer.in_features, layer.out_features
    gemm = ops._kernels.gemm
    threads = ops.get_num_threads
    params, has_bias = layer.params, layer.bias
    shape2 = (rows, n_out)

    def step(x):
        y = empty(shape, dt) if fresh else arr
        y2 = y.reshape(shape2)
        gemm(False, True, 1.0, x.reshape(rows, n_in), params["weight"], 0.0, y2, threads())
        if has_bias or relu:
            bias_act(y2, params["bias"] if has_bias else None, relu)
        return y
    return step


def _relu_step(buf):
    fresh, shape, dt, arr, empty = buf.fresh, buf.shape, buf.dtype, buf.array, np.empty
    def step(x):
        y = empty(shape, dt) if fresh else arr
        return _relu_into(x, y)
    return step


# ---- the same steps as specs of one C chain (cconv._kernels.Chain)

def _conv_spec(layer, in_shape, act, pool2, buf):
    shape_x, shape_w, stride, pads, dil, groups = _conv_args(layer, in_shape)
    return ("conv2d", layer.params, bool(layer.bias), tuple(shape_w), tuple(shape_x[1:]),
            tuple(stride), tuple(pads), tuple(dil), groups, act, bool(pool2), buf)


def _pool_spec(layer, in_shape, buf):
    out4, k, st, p, d = _pool_args(layer, in_shape)
    return ("max_pool2d", tuple(in_shape[1:]), tuple(k), tuple(st), tuple(p), tuple(d),
            tuple(out4[2:]), buf)


def _linear_spec(layer, in_shape, relu, buf):
    if len(in_shape) != 2:   # rows of a 3-D input: the per-step path
        return None
    act = _fused_relu_code() if relu else 0
    if act is None:
        return None
    return ("linear", layer.params, bool(layer.bias), layer.in_features, layer.out_features,
            act, buf)


def _reshape_step(out_shape):
    def step(x):
        return x.reshape(out_shape)
    return step


# ---------------------------------------------------------------- the plan

class CompiledPlan:
    """Inference of one graph for one tuple of input shapes and one dtype.

    `plan(*xs)` returns what `graph.forward(*xs)` returns. A plan owns its
    buffers: use it from one thread at a time (Graph.forward keeps one per
    thread). With reuse_output, the arrays it returns are its own buffers,
    overwritten by its next call. `steps` lists (kind, node names).
    """

    def __init__(self, graph, shapes, dtype, reuse_output=False):
        from .nn.activations import ReLU
        from .nn.conv import Conv2d
        from .nn.linear import Linear
        from .nn.pool import MaxPool2d
        from .nn.shape import Flatten

        # weakly: the per-thread cache holds plans, and a plan must not keep
        # its graph alive (the cache entry dies with the graph)
        self._graph = weakref.ref(graph)
        self.schedule = sched = graph._plan
        self.shapes = tuple(tuple(int(d) for d in s) for s in shapes)
        self.dtype = dtype = np.dtype(dtype)
        self.reuse_output = bool(reuse_output)
        self.registry_state = _registry_state()
        self._regs, self._static = static = self.registry_state
        static = static[1]
        native = dtype in ops._FLOATS
        conv_ok = native and static.get("conv2d") is ops.conv2d
        pool_ok = native and static.get("max_pool2d") is ops.max_pool2d

        n_in = len(graph.input_names)
        names = graph.input_names + sched["order"]
        per_sample = graph._walk_shapes([s[1:] for s in self.shapes], None)
        batch = self.shapes[0][0]
        slot_shapes = [(batch,) + per_sample[n] for n in names]
        outputs = set(sched["outputs"])
        readers = {}
        for i, (_, ins, _, _) in enumerate(sched["steps"]):
            for s in ins:
                readers.setdefault(s, []).append(i)

        def sole_reader(out, kind):
            """Index of the step of type kind that alone reads slot `out`, or None."""
            r = readers.get(out, ())
            if out in outputs or len(r) != 1:
                return None
            return r[0] if type(sched["steps"][r[0]][0]) is kind else None

        def fusable_relu(out):
            return sole_reader(out, ReLU)

        kept = [0]

        def buffer(slot):
            """The step's own array; fresh per call for outputs and past the memory cap."""
            shape = slot_shapes[slot]
            nbytes = int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
            own = (slot not in outputs or reuse_output) and kept[0] + nbytes <= MAX_BUFFER_BYTES
            if own:
                kept[0] += nbytes
            return _Buffer(shape, dtype, not own)

        steps, absorbed, self.steps = [], set(), []
        specs = []      # per step: its cconv_chain_step spec, "view", or None (no C step)
        views = set()   # slots whose value may be (a view of) a plan buffer
        for i, (layer, ins, out, frees) in enumerate(sched["steps"]):
            if i in absorbed:
                continue
            t = type(layer)
            nodes = [names[out]]
            relu_j = fusable_relu(out) if (t is Conv2d and conv_ok) or \
                (t is Linear and native) else None
            if relu_j is not None:
                absorbed.add(relu_j)
                _, _, out, relu_frees = sched["steps"][relu_j]
                frees = tuple(frees) + tuple(relu_frees)
                nodes.append(names[out])
            in_shape = slot_shapes[ins[0]]
            fused = "+relu" if relu_j is not None else ""
            pool_j = sole_reader(out, MaxPool2d) if t is Conv2d and conv_ok else None
            pool_plan = None
            if pool_j is not None and _pool2_of(sched["steps"][pool_j][0], slot_shapes[out]):
                pool_plan = _conv_pool_plan(layer, in_shape, bool(fused))
            if pool_plan is not None:
                absorbed.add(pool_j)
                _, _, out, pool_frees = sched["steps"][pool_j]
                frees = tuple(frees) + tuple(pool_frees)
                nodes.append(names[out])
                buf = buffer(out)
                fn, kind = _conv_pool_step(layer, pool_plan, buf), "conv2d" + fused + "+max_pool2d"
                spec = _conv_spec(layer, in_shape, pool_plan[0], True, buf)
            elif t is Conv2d and conv_ok:
                buf = buffer(out)
                fn, kind = _conv_step(layer, in_shape, dtype, bool(fused), buf), "conv2d" + fused
                act = _fused_relu_code() if fused else 0
                spec = _conv_spec(layer, in_shape, act, False, buf) if act is not None else None
            elif t is Linear and native:
                buf = buffer(out)
                fn, kind = _linear_step(layer, in_shape, dtype, bool(fused), buf), "linear" + fused
                spec = _linear_spec(layer, in_shape, bool(fused), buf)
            elif t is MaxPool2d and pool_ok:
                buf = buffer(out)
                fn, kind = _pool_step(layer, in_shape, dtype, buf), "max_pool2d"
                spec = _pool_spec(layer, in_shape, buf)
            elif t is ReLU and native:
                buf = buffer(out)
                fn, kind = _relu_step(buf), "relu"
                spec = ("relu", buf)
            elif t is Flatten and out not in outputs:
                buf = None
                fn, kind = _reshape_step(slot_shapes[out]), "view"
                spec = "view"
                if ins[0] in views:
                    views.add(out)
            else:
                buf = spec = None
                fn, kind = self._generic(layer, [slot_shapes[s] for s in ins], out,
                                         outputs, ins, views)
            specs.append(spec)
            if buf is not None and not buf.fresh:
                views.add(out)
            steps.append((fn, tuple(ins), out, tuple(frees)))
            self.steps.append((kind, tuple(nodes)))

        self._n_slots = len(names)
        self._outputs = tuple(sched["outputs"])
        # A chain (each step reads the previous value, one output at the end)
        # runs as `x = fn(x)`: the cheapest loop Python has.
        prev = [0] + [s[2] for s in steps[:-1]]
        chain = (n_in == 1 and len(self._outputs) == 1 and steps
                 and steps[-1][2] == self._outputs[0]
                 and all(st[1] == (p,) for st, p in zip(steps, prev)))
        self._chain = tuple(s[0] for s in steps) if chain else None
        self._run_steps = tuple(steps)
        self._c_chain = self._c_chain_out = None
        if chain:
            self._make_c_chain(specs, batch)

    def _make_c_chain(self, specs, batch):
        """The whole chain as one C call (cconv._kernels.Chain), where every step has one.

        One call instead of one per layer: no per-layer Python, and a batch
        split over threads in one parallel region where that pays (see
        cconv_chain_forward in the C core). Only with the intermediate
        buffers owned by the plan (not past MAX_BUFFER_BYTES).
        """
        Chain = getattr(ops._kernels, "Chain", None)
        if Chain is None or any(s is None for s in specs):
            return
        c_specs = [s for s in specs if s != "view"]
        if not c_specs or c_specs[0][0] == "relu":
            return
        *inner, last = c_specs
        if any(s[-1].fresh for s in inner):
            return
        c_specs = [s[:-1] + (s[-1].array,) for s in inner] + [last[:-1] + (None,)]
        try:
            self._c_chain = Chain(c_specs, batch, self.dtype)
        except (TypeError, ValueError):   # a shape the C steps do not take: per step
            return
        self._c_chain_out = last[-1]

    def _generic(self, layer, in_shapes, out, outputs, ins, views):
        """A layer without a fused step: its plan_forward, else forward (inference)."""
        make = getattr(layer, "plan_forward", None)
        fn = make(in_shapes, self.dtype) if make is not None else layer.forward
        # a layer may return (a view of) its input (Flatten, Dropout at
        # inference): a graph output that might view a plan buffer is copied
        if any(s in views for s in ins):
            views.add(out)
            if out in outputs and not self.reuse_output:
                inner = fn

                def fn(*xs):
                    return np.array(inner(*xs), copy=True)
        return fn, "layer"

    def valid(self):
        """False once the graph or the kernel registry changed since compiling."""
        graph = self._graph()
        if graph is None:
            return False
        schedule = graph._plan
        if schedule is not self.schedule or schedule["dtype"] != self.dtype:
            return False
        regs = plugins._current
        return (regs is self._regs and regs.generation == regs.pm.generation
                and regs.kernels.static is self._static)

    def run(self, *xs):
        """Outputs for inputs xs (arrays of the planned shapes and dtype, C-contiguous)."""
        c_chain = self._c_chain
        if c_chain is not None:
            buf = self._c_chain_out
            y = np.empty(buf.shape, buf.dtype) if buf.fresh else buf.array
            return c_chain.run(xs[0], y, ops.get_num_threads())
        chain = self._chain
        if chain is not None:
            x = xs[0]
            for fn in chain:
                x = fn(x)
            return x
        vals = [None] * self._n_slots
        vals[:len(xs)] = xs
        for fn, ins, out, frees in self._run_steps:
            vals[out] = fn(*[vals[i] for i in ins])
            for i in frees:
                vals[i] = None
        outs = self._outputs
        return vals[outs[0]] if len(outs) == 1 else tuple(vals[i] for i in outs)

    __call__ = run

    def describe(self):
        """One line per step: its kind and the nodes it runs."""
        return "\n".join(f"{kind:12s} {' + '.join(nodes)}" for kind, nodes in self.steps)

    def __repr__(self):
        return (f"CompiledPlan(shapes={list(self.shapes)}, dtype={self.dtype}, "
                f"steps={len(self.steps)}, reuse_output={self.reuse_output})")


# ---------------------------------------------------------------- per-thread cache

_local = threading.local()


def _thread_plans(graph):
    """{(input shapes, reuse_output): plan} of graph in this thread.

    Keyed by id(graph) with a weak reference beside it (a dead graph's id
    may be reused): nothing is stored on the graph, which stays picklable
    and deep-copyable, and a thread's plans die with the thread.
    """
    table = getattr(_local, "plans", None)
    if table is None:
        table = _local.plans = {}
    entry = table.get(id(graph))
    if entry is None or entry[0]() is not graph:
        if len(table) > 64:   # drop entries of graphs that are gone
            for k in [k for k, (ref, _) in table.items() if ref() is None]:
                del table[k]
        key = id(graph)

        def forget(_, table=table, key=key):   # the graph is gone: free its buffers now
            entry = table.get(key)
            if entry is not None and entry[0]() is None:
                table.pop(key, None)
        entry = table[key] = (weakref.ref(graph, forget), {})
    return entry[1]


def cached_plan(graph, xs, reuse_output):
    """This thread's valid plan for exactly these input arrays, or None (the hot path).

    None sends the caller to plan_for() after the full input checks.
    """
    table = getattr(_local, "plans", None)
    if table is None:
        return None
    entry = table.get(id(graph))
    if entry is None or entry[0]() is not graph:
        return None
    try:
        key = ((xs[0].shape,) if len(xs) == 1 else tuple(x.shape for x in xs), reuse_output)
    except AttributeError:
        return None
    plan = entry[1].get(key)
    if plan is None or not plan.valid():
        return None
    dtype = plan.dtype
    for x in xs:
        if type(x) is not np.ndarray or x.dtype != dtype:
            return None
    return plan


def plan_for(graph, xs, reuse_output=False):
    """This thread's plan for inputs xs, made on first use (and again when stale)."""
    key = (tuple(x.shape for x in xs), bool(reuse_output))
    plans = _thread_plans(graph)
    plan = plans.get(key)
    if plan is not None and plan.valid():
        return plan
    if len(plans) >= MAX_PLANS:
        plans.clear()
    plan = plans[key] = CompiledPlan(graph, key[0], graph._plan["dtype"], reuse_output)
    return plan


def clear(graph=None):
    """Drop this thread's plans (of one graph, or all)."""
    table = getattr(_local, "plans", None)
    if table is None:
        return
    if graph is None:
        table.clear()
    else:
        table.pop(id(graph), None)
