"""Graph executor: a DAG of named layers, run forward and backward.

A node is a layer plus the names of the values it reads (graph inputs or
other nodes). `build(input_shape)` orders the nodes, infers every shape and
creates the parameters, then compiles a flat schedule of slots so that the
hot path is a loop over tuples: no dict lookups, no validation, and each
activation is dropped as soon as its last consumer has run.

The shape given to build() is an example: the net runs any input shape its
layers take. An input of another shape walks the layers' `output_shape` with
its concrete shapes once (cached per shape, as the compiled plans are), and a
layer that cannot take it raises a GraphError naming the node. `input_spec`
says which per-sample dimensions are fixed (by a layer, e.g. Flatten ->
Linear, or by `set_input_spec`) and which are free.

Mode is the `training=` argument, as on every layer: `net(x)` and
`net.forward(x)` are inference (the layers keep nothing); `net.forward(x,
training=True)` keeps what `net.backward(grad)` needs.
"""
import heapq
import numpy as np

from . import compiled as _compiled
from ._layer_errors import names_failing_layer

__all__ = ["Graph", "GraphError", "Sequential"]

CONFIG_FORMAT = "cconv.graph"
CONFIG_VERSION = 1
#: per-sample shape walks kept per graph; a net fed ever-new shapes drops them all
MAX_SHAPE_WALKS = 32


class GraphError(ValueError):
    """A graph that cannot be built or run; the message names the node."""


class Node:
    __slots__ = ("inputs", "layer", "name")

    def __init__(self, name, layer, inputs):
        self.name = name
        self.layer = layer
        self.inputs = inputs

    def __repr__(self):
        return f"Node({self.name!r}, {self.layer!r}, inputs={self.inputs})"


def _layer_class(type_name):
    """The layer class registered under type_name (built-ins and plugins)."""
    from .plugins import get_layer_class

    return get_layer_class(type_name)


def _shape(s):
    return tuple(int(d) for d in s)


def _spec_text(pins):
    return "(batch, " + ", ".join("?" if p is None else str(p) for p in pins) + ")"


class Graph:
    """A DAG of named layers with one or more inputs and outputs.

        g = Graph(inputs=["x"])
        g.add("conv1", Conv2d(1, 6, 5), inputs=["x"])
        g.add("relu1", ReLU())                 # default input: the node added last
        g.set_outputs(["relu1"])               # default: the node added last
        g.build((1, 28, 28), seed=0)
        y = g(x)
    """

    def __init__(self, inputs=("x",)):
        if isinstance(inputs, str):
            inputs = [inputs]
        inputs = list(inputs)
        if not inputs:
            raise GraphError("a graph needs at least one input name")
        for name in inputs:
            self._check_name(name, "input")
        if len(set(inputs)) != len(inputs):
            raise GraphError(f"input names must be distinct, got {inputs}")
        self.input_names = inputs
        self.nodes = {}             # name -> Node, in insertion order
        self._outputs = None        # None: the node added last
        self.input_shapes = None    # per-sample shapes, set by build()
        self.seed = 0
        self._plan = None           # compiled schedule, see _compile()
        # Parameters a layer created untrainable (BatchNorm's running statistics):
        # state, not weights, so freeze()/unfreeze() leave them alone.
        self._buffers = set()
        self._last_training = False  # the last forward kept state for backward
        # Per input: a tuple of per-sample dims, an int where set_input_spec()
        # fixed it, None where the layers decide; None when nothing is pinned.
        self._pins = None
        self._walks = {}            # per-sample input shapes -> shape walk (or error)
        self._spec = None           # input_spec, derived on first use after build

    # ------------------------------------------------------------ construction
    @staticmethod
    def _check_name(name, what):
        if not isinstance(name, str) or not name or "." in name:
            raise GraphError(f"{what} name must be a non-empty string without '.', "
                             f"got {name!r}")

    def add(self, name, layer, inputs=None):
        """Add node `name` running `layer` on `inputs` (names of inputs or nodes).

        inputs defaults to the node added last (the graph's only input for the
        first node). Nodes may name nodes added later; cycles are refused at
        build. Returns name, so `h = g.add(...)` reads like a variable.
        """
        self._check_name(name, "node")
        if name in self.nodes or name in self.input_names:
            raise GraphError(f"node name {name!r} is already used")
        if not hasattr(layer, "forward") or not hasattr(layer, "backward"):
            raise GraphError(f"node {name!r}: expected a Layer, got {type(layer).__name__}")
        if inputs is None:
            if self.nodes:
                inputs = [next(reversed(self.nodes))]
            elif len(self.input_names) == 1:
                inputs = list(self.input_names)
            else:
                raise GraphError(f"node {name!r}: name its inputs, the graph has "
                                 f"several ({self.input_names})")
        elif isinstance(inputs, str):
            inputs = [inputs]
        inputs = list(inputs)
        try:
            layer.check_num_inputs(inputs)
        except ValueError as exc:
            raise GraphError(f"node {name!r}: {exc} ({inputs})") from None
        self.nodes[name] = Node(name, layer, inputs)
        self._invalidate()
        return name

    def set_outputs(self, names):
        """Names of the nodes (or inputs) whose values forward() returns."""
        if isinstance(names, str):
            names = [names]
        names = list(names)
        if not names:
            raise GraphError("a graph needs at least one output")
        self._outputs = names
        self._invalidate()

    @property
    def output_names(self):
        if self._outputs is not None:
            return list(self._outputs)
        return [next(reversed(self.nodes))] if self.nodes else []

    def __getitem__(self, name):
        return self.nodes[name].layer

    def __contains__(self, name):
        return name in self.nodes

    def layers(self):
        """(node name, layer) pairs in insertion order."""
        return [(n.name, n.layer) for n in self.nodes.values()]

    def replace_layer(self, name, layer):
        """Run `layer` in node `name` instead of its current layer (same wiring).

        The graph must be built again (build() keeps the other layers'
        parameters); returns the old layer.
        """
        if name not in self.nodes:
            raise KeyError(f"no node named {name!r}; nodes: {list(self.nodes)}")
        node = self.nodes[name]
        if not hasattr(layer, "forward") or not hasattr(layer, "backward"):
            raise GraphError(f"node {name!r}: expected a Layer, got {type(layer).__name__}")
        try:
            layer.check_num_inputs(node.inputs)
        except ValueError as exc:
            raise GraphError(f"node {name!r}: {exc} ({node.inputs})") from None
        old, node.layer = node.layer, layer
        self._buffers = {b for b in self._buffers if not b.startswith(name + ".")}
        if layer.built:
            self._buffers.update(f"{name}.{p}" for p, t in layer.trainable.items() if not t)
        self._invalidate()
        return old

    def _invalidate(self):
        self._plan = None
        self.input_shapes = None
        self._walks = {}
        self._spec = None

    # ------------------------------------------------------------ ordering
    def topological_order(self):
        """Node names, each after all of its inputs (ties in insertion order).

        Only nodes the outputs depend on are included: the others never run.
        """
        known = set(self.input_names)
        for node in self.nodes.values():
            for src in node.inputs:
                if src not in self.nodes and src not in known:
                    raise GraphError(f"node {node.name!r} reads {src!r}, which is neither "
                                     f"a node nor an input ({self.input_names})")
        outputs = self.output_names
        if not outputs:
            raise GraphError("the graph has no nodes")
        for out in outputs:
            if out not in self.nodes and out not in known:
                raise GraphError(f"output {out!r} is neither a node nor an input")
        needed, stack = set(), [o for o in outputs if o in self.nodes]
        while stack:
            name = stack.pop()
            if name not in needed:
                needed.add(name)
                stack.extend(s for s in self.nodes[name].inputs if s in self.nodes)
        # Kahn's algorithm; a heap keyed by insertion index keeps ties in insertion
        # order (the order builds draw initialisers in) at O(N log N).
        rank = {n: i for i, n in enumerate(self.nodes)}
        pending = {n: sum(1 for s in self.nodes[n].inputs if s in self.nodes)
                   for n in self.nodes if n in needed}
        consumers = {n: [] for n in pending}
        for n in pending:
            for s in self.nodes[n].inputs:
                if s in self.nodes:
                    consumers[s].append(n)
        order = []
        ready = [rank[n] for n in pending if pending[n] == 0]
        heapq.heapify(ready)
        names = list(self.nodes)
        while ready:
            name = names[heapq.heappop(ready)]
            order.append(name)
            for c in consumers[name]:
                pending[c] -= 1
                if pending[c] == 0:
                    heapq.heappush(ready, rank[c])
        if len(order) != len(pending):
            done = set(order)
            cyclic = [n for n in self.nodes if n in pending and n not in done]
            raise GraphError(f"the graph has a cycle through nodes {cyclic}")
        return order

    # ------------------------------------------------------------ build
    def _normalise_input_shapes(self, input_shape):
        if isinstance(input_shape, dict):
            missing = [n for n in self.input_names if n not in input_shape]
            if missing:
                raise GraphError(f"no shape given for input(s) {missing}")
            return [_shape(input_shape[n]) for n in self.input_names]
        if len(self.input_names) == 1:
            if input_shape and isinstance(input_shape[0], (tuple, list)):
                if len(input_shape) != 1:
                    raise GraphError(f"the graph has one input, got {len(input_shape)} shapes")
                input_shape = input_shape[0]
            return [_shape(input_shape)]
        if len(input_shape) != len(self.input_names):
            raise GraphError(f"the graph has inputs {self.input_names}: give one shape "
                             f"each, got {input_shape!r}")
        return [_shape(s) for s in input_shape]

    def infer_shapes(self, input_shape):
        """Per-sample shape of every value (inputs and nodes), without building."""
        return self._walk_shapes(self._normalise_input_shapes(input_shape), None)

    def build(self, input_shape, seed=0):
        """Order the nodes, check every shape and create the parameters.

        input_shape: per-sample shape (no batch dimension), e.g. (1, 28, 28);
        one per input (list, or dict by input name) for several inputs.
        Layers already built keep their parameters. seed feeds the
        initialisers, in topological order, so a build is reproducible.
        """
        shapes = self._normalise_input_shapes(input_shape)
        self._check_pins(shapes)
        self._walk_shapes(shapes, None)   # every shape error before any side effect
        values = self._walk_shapes(shapes, np.random.default_rng(seed))
        self.input_shapes = shapes
        self.seed = seed
        self._walks = {tuple(shapes): values}
        self._spec = None
        self._compile()
        return self

    def _walk_shapes(self, shapes, rng):
        values = dict(zip(self.input_names, shapes))
        for name in self.topological_order():
            node = self.nodes[name]
            in_shapes = [values[s] for s in node.inputs]
            try:
                if rng is not None and not node.layer.built:
                    node.layer.build(in_shapes, rng=rng)
                    self._buffers.update(f"{name}.{p}" for p, t in
                                         node.layer.trainable.items() if not t)
                out = _shape(node.layer.output_shape(in_shapes))
            except (ValueError, TypeError, IndexError) as exc:
                wiring = ", ".join(f"{s} {values[s]}" for s in node.inputs)
                raise GraphError(f"node {name!r} ({node.layer.type_name}) cannot take "
                                 f"input shapes [{wiring}]: {exc}") from exc
            values[name] = out
        return values

    # ------------------------------------------------------------ any input size
    def shapes_for(self, input_shapes):
        """Per-sample shape of every value for these per-sample input shapes (one per
        input), walked once per shape and cached; GraphError naming the node that
        cannot take them (or the dim that set_input_spec fixed)."""
        key = tuple(_shape(s) for s in input_shapes)
        walk = self._walks.get(key)
        if walk is None:
            try:
                walk = self._walk_checked(key)
            except GraphError as exc:
                walk = str(exc)   # a refused shape is refused again without a walk
            if len(self._walks) >= MAX_SHAPE_WALKS:
                built = tuple(self.input_shapes or ())
                self._walks = {k: v for k, v in self._walks.items() if k == built}
            self._walks[key] = walk
        if isinstance(walk, str):
            raise GraphError(walk)
        return walk

    def _walk_checked(self, shapes):
        if len(shapes) != len(self.input_names):
            raise GraphError(f"the graph has inputs {self.input_names}, got {len(shapes)} "
                             f"shapes")
        self._check_pins(shapes)
        return self._walk_shapes(list(shapes), None)

    def _check_pins(self, shapes):
        if self._pins is None:
            return
        for name, shape, pins in zip(self.input_names, shapes, self._pins):
            if len(shape) != len(pins) or any(
                    p is not None and p != d for p, d in zip(pins, shape)):
                raise GraphError(f"input {name!r} of per-sample shape {tuple(shape)} does not "
                                 f"fit its fixed dims {_spec_text(pins)} (set_input_spec)")

    @property
    def input_spec(self):
        """{input name: (None, d1, d2, ...)}, batch first: an int where the dim is fixed
        (by a layer: Flatten -> Linear fixes C*H*W, a weight fixes the channels; or
        by set_input_spec), None where it is free. Built graphs only."""
        if self._plan is None:
            raise GraphError("input_spec: build the graph first (net.build(input_shape))")
        if self._spec is None:
            self._spec = self._derive_spec()
        return {name: (None,) + spec for name, spec in zip(self.input_names, self._spec)}

    def set_input_spec(self, spec):
        """Fix per-sample dims of a built graph's inputs at their built sizes.

        spec: {name: (None, C, None, None)} (batch first, as input_spec gives
        it) or one such tuple per input; an int fixes that dim (it must equal
        the built size), None leaves it to the layers. spec=None frees all.
        """
        pins = None
        if spec is not None and self._plan is None:
            raise GraphError("set_input_spec: build the graph first (spec=None works "
                             "unbuilt: it drops fixed dims before a build at another size)")
        if spec is not None:
            if isinstance(spec, dict):
                unknown = set(spec) - set(self.input_names)
                if unknown:
                    raise GraphError(f"set_input_spec: no input(s) {sorted(unknown)} "
                                     f"(inputs: {self.input_names})")
                rows = [spec.get(n) for n in self.input_names]
            else:
                rows = list(spec)
                if len(rows) != len(self.input_names):
                    raise GraphError(f"set_input_spec takes one spec per input "
                                     f"({self.input_names}), got {len(rows)}")
            pins = []
            for name, row, built in zip(self.input_names, rows, self.input_shapes):
                row = (None,) * (len(built) + 1) if row is None else tuple(row)
                if len(row) != len(built) + 1:
                    raise GraphError(f"set_input_spec: input {name!r} is (batch,) + {built}, "
                                     f"got spec {row}")
                pin = tuple(None if d is None else int(d) for d in row[1:])
                if any(p is not None and p != d for p, d in zip(pin, built)):
                    raise GraphError(f"set_input_spec: input {name!r} was built as (batch,) "
                                     f"+ {built}; a fixed dim must equal it, got {row}")
                pins.append(pin)
        self._pins = pins
        built = tuple(self.input_shapes or ())
        self._walks = {built: self._walks[built]} if built in self._walks else {}
        self._spec = None
        return self

    def _derive_spec(self):
        """Per input, per-sample dims: an int where no other size passes the shape walk.

        Each dim is tried at 2x and 3x its built size: multiples keep the
        divisibility a UNet's skip connections need, while a Flatten -> Linear
        that a pooling's floor lets take 9 as well as 8 stays fixed. A dim failing
        alone is tried jointly with the same dim of the other inputs (an Add).
        """
        base = [list(s) for s in self.input_shapes]

        def passes(changes):
            shapes = [list(s) for s in base]
            for i, d, v in changes:
                shapes[i][d] = v
            try:
                self._walk_checked([tuple(s) for s in shapes])
                return True
            except Exception:   # noqa: BLE001 - a layer's own error type means "refused" too
                return False

        spec = [list(p) if p is not None else [None] * len(s)
                for p, s in zip(self._pins or [None] * len(base), base)]
        for i, shape in enumerate(base):
            for d, size in enumerate(shape):
                if spec[i][d] is not None:
                    continue
                tries = (2 * size, 3 * size)
                if any(passes([(i, d, v)]) for v in tries):
                    continue
                alike = [j for j, s in enumerate(base) if len(s) > d and s[d] == size
                         and spec[j][d] is None]
                if len(alike) > 1 and any(passes([(j, d, v) for j in alike]) for v in tries):
                    continue
                spec[i][d] = size
        return [tuple(s) for s in spec]

    @property
    def built(self):
        return self._plan is not None

    def _compile(self):
        """Flatten the graph into slots and steps for forward/backward.

        Slot i holds one value: the inputs first, then nodes in topological
        order. Each step is (layer, input slots, output slot, slots to free),
        where a slot is freed after its last consumer unless it is an output.
        """
        order = self.topological_order()
        slot = {n: i for i, n in enumerate(self.input_names)}
        for name in order:
            slot[name] = len(slot)
        outputs = [slot[o] for o in self.output_names]
        last_use = {}
        for i, name in enumerate(order):
            for s in self.nodes[name].inputs:
                last_use[slot[s]] = i
        frees = [[] for _ in order]
        for s, i in last_use.items():
            if s not in outputs:
                frees[i].append(s)
        steps = tuple(
            (self.nodes[name].layer, tuple(slot[s] for s in self.nodes[name].inputs),
             slot[name], tuple(frees[i]))
            for i, name in enumerate(order))
        n_in = len(self.input_names)
        # A chain (each node reads the previous one, one output at the end) runs
        # as `x = layer.forward(x)`: the cheapest loop Python has.
        chain = (n_in == 1 and outputs == [len(slot) - 1] and
                 all(ins == (out - 1,) for _, ins, out, _ in steps))
        self._plan = {
            "order": order, "steps": steps, "n_slots": len(slot), "outputs": outputs,
            "n_inputs": n_in, "chain": tuple(s[0].forward for s in steps) if chain else None,
            "backward": tuple((layer.backward, ins, out) for layer, ins, out, _ in
                              reversed(steps)),
            "dtype": self._param_dtype(),
        }

    def compile(self, *input_shapes, reuse_output=False):
        """This thread's compiled inference plan for batch-inclusive input shapes.

        forward() makes one by itself on the first inference call per input
        shape (per thread); compile() does it ahead of time and returns it
        (cconv.compiled.CompiledPlan: fused steps, buffers planned once).
        Builds the graph first if needed (seed self.seed).
        """
        shapes = [_shape(s) for s in input_shapes]
        if len(shapes) == 1 and shapes and len(self.input_names) != 1:
            raise GraphError(f"compile takes one shape per input ({self.input_names})")
        if self._plan is None:
            self.build([s[1:] for s in shapes], seed=self.seed)
        dtype = self._plan["dtype"]
        xs = self._prepare_inputs([np.empty(s, dtype) for s in shapes])
        return _compiled.plan_for(self, xs, reuse_output)

    # ------------------------------------------------------------ running
    def _prepare_inputs(self, xs):
        plan = self._plan
        if len(xs) != plan["n_inputs"]:
            raise GraphError(f"forward takes {plan['n_inputs']} input(s) "
                             f"({self.input_names}), got {len(xs)}")
        dtype = plan["dtype"]
        out, other = [], False
        for x, shape in zip(xs, self.input_shapes):
            if not isinstance(x, np.ndarray) or x.dtype != dtype:
                x = np.asarray(x, dtype=dtype)
            other = other or x.shape[1:] != shape
            out.append(x)
        if other:   # not the built shape: the (cached) walk says whether the layers take it
            try:
                self.shapes_for([x.shape[1:] for x in out])
            except GraphError as exc:
                got = ", ".join(f"input {n!r} has shape {x.shape}"
                                for n, x in zip(self.input_names, out))
                built = ", ".join(f"{n!r} (batch,) + {s}"
                                  for n, s in zip(self.input_names, self.input_shapes))
                raise GraphError(f"{got}: {exc} (the net was built for {built})") from None
        return out

    @names_failing_layer("forward")
    def forward(self, *xs, training=False, reuse_output=False):
        """Outputs for a batch: one array, or a tuple for several outputs.

        Builds the graph on first use from the inputs' shapes (seed 0) if
        build() was not called. training=True keeps what backward() needs.
        Inference runs this thread's compiled plan for the input shapes
        (cconv.compiled); the arrays it returns are new on every call, unless
        reuse_output=True: then they are the plan's buffers, overwritten by
        the next reuse_output call with these shapes in this thread.
        """
        if not training:
            compiled_plan = _compiled.cached_plan(self, xs, reuse_output)
            if compiled_plan is not None:   # the hot path: inputs as planned
                self._last_training = False
                try:
                    return compiled_plan.run(*xs)
                except (TypeError, ValueError):
                    pass  # an input layout or parameter the plan cannot take
        if self._plan is None:
            self.build([np.shape(x)[1:] for x in xs], seed=self.seed)
        plan = self._plan
        xs = self._prepare_inputs(xs)
        self._last_training = training
        if not training:
            try:
                return _compiled.plan_for(self, xs, reuse_output).run(*xs)
            except (TypeError, ValueError):
                pass  # an input layout or parameter the plan cannot take: general path
        chain = plan["chain"]
        if chain is not None:
            x = xs[0]
            for fwd in chain:
                x = fwd(x, training=training)
            return x
        vals = [None] * plan["n_slots"]
        vals[:len(xs)] = xs
        for layer, ins, out, frees in plan["steps"]:
            if len(ins) == 1:
                vals[out] = layer.forward(vals[ins[0]], training=training)
            else:
                vals[out] = layer.forward(*[vals[i] for i in ins], training=training)
            for i in frees:
                vals[i] = None
        outs = plan["outputs"]
        if len(outs) == 1:
            return vals[outs[0]]
        return tuple(vals[i] for i in outs)

    __call__ = forward

    @names_failing_layer("backward")
    def backward(self, grad, input_grads=True):
        """Propagate the loss gradient(s) of the outputs of the last training forward.

        grad: one array per output (a tuple/list for several; None for an
        output that the loss ignores). Parameter gradients land in the layers'
        `grads` (see named_gradients()); returns the gradient w.r.t. the
        input(s): one array, or a tuple for several inputs. With
        input_grads=False (training) only the gradients that reach a trainable
        parameter are computed: a layer with nothing trainable in or upstream
        of it is skipped, one with nothing trainable upstream skips its input
        gradient where it can (can_skip_input_grad), and None is returned.
        """
        plan = self._plan
        if plan is None or not self._last_training:
            raise GraphError("backward() needs a forward(..., training=True) before it")
        outs = plan["outputs"]
        grads_out = (grad,) if len(outs) == 1 else tuple(grad)
        if len(grads_out) != len(outs):
            raise GraphError(f"backward takes one gradient per output ({len(outs)}), "
                             f"got {len(grads_out)}")
        grads = [None] * plan["n_slots"]
        for i, g in zip(outs, grads_out):
            grads[i] = g if grads[i] is None or g is None else grads[i] + g
        # Without input gradients, a value needs a gradient only when some
        # trainable parameter lies upstream of it: frozen layers at the bottom
        # of a fine-tuned net then do no backward work at all.
        needs = None if input_grads else self._slots_needing_grad()
        for bwd, ins, out in plan["backward"]:
            g = grads[out]
            if g is None:  # nothing downstream depends on this node
                continue
            grads[out] = None
            if needs is not None and not any(needs[i] for i in ins):
                if not needs[out]:
                    continue   # no trainable parameter here or upstream: skip the layer
                if getattr(bwd.__self__, "can_skip_input_grad", False):
                    bwd(g, need_input_grad=False)
                else:
                    bwd(g)
                continue
            gin = bwd(g)
            if len(ins) == 1:
                gin = (gin,)
            for i, gi in zip(ins, gin):
                # A value read by several nodes gets the sum of their gradients.
                acc = grads[i]
                grads[i] = gi if acc is None else acc + gi
        if not input_grads:
            return None
        n_in = plan["n_inputs"]
        return grads[0] if n_in == 1 else tuple(grads[:n_in])

    def _slots_needing_grad(self):
        """Per slot: True when a trainable parameter lies in or upstream of its producer.

        Recomputed per call (a pass over the nodes) since freezing flips
        layer.trainable directly.
        """
        plan = self._plan
        needs = [False] * plan["n_slots"]
        for layer, ins, out, _ in plan["steps"]:
            # .get(p, True): as the optimizers read it, unlisted means trainable
            needs[out] = (any(needs[i] for i in ins) or
                          any(layer.trainable.get(p, True) for p in layer.params))
        return needs

    # ------------------------------------------------------------ parameters
    def _param_refs(self):
        """(full name, layer, param name) for every parameter, nodes in insertion order."""
        return [(f"{n.name}.{p}", n.layer, p) for n in self.nodes.values()
                for p in n.layer.params]

    def named_parameters(self, trainable_only=False):
        """[(name, array)], names like "conv1.weight"; the arrays are the live ones."""
        return [(name, layer.params[p]) for name, layer, p in self._param_refs()
                if not trainable_only or layer.trainable.get(p, True)]

    def named_gradients(self):
        """[(name, gradient array)] matching named_parameters()."""
        return [(name, layer.grads[p]) for name, layer, p in self._param_refs()]

    def parameter_count(self, trainable_only=False):
        return int(sum(a.size for _, a in self.named_parameters(trainable_only)))

    def _match(self, names_or_prefixes):
        """Parameter refs selected by names or prefixes ("conv1" -> "conv1.*"), buffers excluded."""
        refs = [r for r in self._param_refs() if r[0] not in self._buffers]
        if names_or_prefixes is None:
            return refs
        if isinstance(names_or_prefixes, str):
            names_or_prefixes = [names_or_prefixes]
        chosen = []
        for key in names_or_prefixes:
            prefix = key if key.endswith(".") else key + "."
            hits = [r for r in refs if r[0] == key or r[0].startswith(prefix)]
            if not hits:
                raise KeyError(f"no parameter named or starting with {key!r}; "
                               f"parameters: {[r[0] for r in refs]}")
            chosen.extend(h for h in hits if h not in chosen)
        return chosen

    def select(self, names_or_prefixes):
        """Full parameter names matched by names or prefixes (as freeze() reads them)."""
        return [r[0] for r in self._match(names_or_prefixes)]

    def freeze(self, names_or_prefixes=None):
        """Mark parameters frozen (all when None): optimizers then skip them entirely."""
        for _, layer, p in self._match(names_or_prefixes):
            layer.trainable[p] = False
        return self

    def unfreeze(self, names_or_prefixes=None):
        for _, layer, p in self._match(names_or_prefixes):
            layer.trainable[p] = True
        return self

    def frozen(self):
        """Names of the frozen parameters."""
        return [name for name, layer, p in self._param_refs()
                if not layer.trainable.get(p, True) and name not in self._buffers]

    def _param_dtype(self):
        for _, a in self.named_parameters():
            if a.dtype.kind == "f":
                return a.dtype
        return getattr(self, "_dtype", np.dtype(np.float32))

    def astype(self, dtype):
        """Cast every parameter (and gradient) to dtype; inputs are cast to it too."""
        self._dtype = np.dtype(dtype)
        for node in self.nodes.values():
            node.layer.astype(dtype)
        if self._plan is not None:
            # a new schedule object: compiled plans made for the old one are stale
            self._plan = dict(self._plan, dtype=self._dtype)
        return self

    @property
    def dtype(self):
        return self._param_dtype()

    def load_weights(self, source, strict=True, **options):
        """Copy weights from a weight file or a {name: array} dict; see cconv.io.load_weights.

        options: mapping=, layout=, cast=, dry_run=, loader=, label=.
        """
        from .io import load_weights
        return load_weights(self, source, strict=strict, **options)

    # ------------------------------------------------------------ config
    def get_config(self):
        """JSON-serialisable description: layers, wiring, input shapes, dtype, frozen."""
        return {
            "format": CONFIG_FORMAT,
            "version": CONFIG_VERSION,
            "class": type(self).__name__,
            "inputs": list(self.input_names),
            "input_shapes": (None if self.input_shapes is None
                             else [list(s) for s in self.input_shapes]),
            # which dims are fixed (ints) and free (null), batch first; a config
            # without it (older files) is loaded with every dim fixed as built
            "input_spec": (None if self._plan is None
                           else [list(self.input_spec[n]) for n in self.input_names]),
            "nodes": [{"name": n.name, "type": n.layer.type_name,
                       "config": n.layer.get_config(), "inputs": list(n.inputs)}
                      for n in self.nodes.values()],
            "outputs": self.output_names,
            "dtype": str(self.dtype),
            "frozen": self.frozen(),
        }

    @classmethod
    def from_config(cls, config, seed=0, build=True):
        """The graph get_config() described, built if it records input shapes (and build).

        Weights are freshly initialised (with seed): load them after.
        """
        if not isinstance(config, dict) or config.get("format") != CONFIG_FORMAT:
            raise GraphError(f"not a cconv graph config (expected format "
                             f"{CONFIG_FORMAT!r}): {str(config)[:200]}")
        if config.get("version", 0) > CONFIG_VERSION:
            raise GraphError(f"graph config version {config.get('version')} is newer than "
                             f"this cconv understands ({CONFIG_VERSION})")
        target = Sequential if config.get("class") == "Sequential" else Graph
        if cls is not Graph and cls is not target:
            target = cls
        try:
            net = target.__new__(target)
            Graph.__init__(net, inputs=config["inputs"])
            for spec in config["nodes"]:
                try:
                    layer_cls = _layer_class(spec["type"])
                except LookupError as exc:
                    raise GraphError(f"node {spec['name']!r}: {exc}") from exc
                try:
                    layer = layer_cls.from_config(dict(spec.get("config") or {}))
                except (TypeError, ValueError) as exc:
                    raise GraphError(f"node {spec['name']!r}: cannot create "
                                     f"{spec['type']} from {spec.get('config')}: {exc}") from exc
                net.add(spec["name"], layer, inputs=spec["inputs"])
            net.set_outputs(config["outputs"])
        except KeyError as exc:
            raise GraphError(f"graph config lacks the key {exc}") from None
        if build and config.get("input_shapes") is not None:
            net.build(config["input_shapes"], seed=seed)
            if config.get("dtype"):
                net.astype(config["dtype"])
            if config.get("frozen"):
                net.freeze(config["frozen"])
            spec = config.get("input_spec")
            if spec is None:   # written before input_spec existed: fixed as built, as then
                spec = [[None] + list(s) for s in net.input_shapes]
            try:
                net.set_input_spec(spec)
            except (TypeError, ValueError) as exc:
                raise GraphError(f"graph config: input_spec {str(spec)[:200]} does not fit "
                                 f"input_shapes {config['input_shapes']}: {exc}") from None
        return net

    # ------------------------------------------------------------ display
    def summary(self):
        """A layer table like Keras's: node, layer, inputs, output shape, parameters."""
        shapes = (self._walk_shapes(self.input_shapes, None)
                  if self.input_shapes is not None else {})
        rows = [("node", "layer", "inputs", "output (per sample)", "params")]
        for name in self.nodes:
            node = self.nodes[name]
            count = sum(a.size for a in node.layer.params.values())
            shape = shapes.get(name)
            rows.append((name, _layer_label(node.layer), ",".join(node.inputs),
                         "?" if shape is None else str(tuple(shape)), f"{count:,}"))
        widths = [max(len(r[i]) for r in rows) for i in range(5)]
        lines = ["  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip() for r in rows]
        lines.insert(1, "-" * len(lines[0]))
        if self._plan is None:
            built = "not built: call build(input_shape)"
        else:   # ? for a dim the layers leave free (input_spec)
            spec = self.input_spec
            built = "inputs " + ", ".join(
                f"{n} (N, {', '.join('?' if d is None else str(d) for d in spec[n][1:])})"
                for n in self.input_names)
            if any(d is None for n in self.input_names for d in spec[n][1:]):
                built += " (?: any size the layers take)"
        lines.append("-" * len(lines[0]))
        lines.append(f"total parameters: {self.parameter_count():,} "
                     f"({self.parameter_count(True):,} trainable); {built}; "
                     f"outputs {', '.join(self.output_names)}")
        return "\n".join(lines)

    def __repr__(self):
        return f"{type(self).__name__}\n{self.summary()}"


def _layer_label(layer, width=48):
    """The layer's repr, shortened to fit a table column."""
    text = repr(layer)
    return text if len(text) <= width else text[:width - 3] + "..."


class Sequential(Graph):
    """A chain of layers, named "0_conv2d", "1_relu", ... (index and type)."""

    def __init__(self, *layers):
        super().__init__(inputs=["x"])
        for layer in layers:
            self.append(layer)

    def append(self, layer):
        """Add layer at the end; returns its node name."""
        name = f"{len(self.nodes)}_{str(layer.type_name).lower()}"
        return self.add(name, layer)

    def __getitem__(self, key):
        if isinstance(key, int):
            return list(self.nodes.values())[key].layer
        return super().__getitem__(key)

    def __len__(self):
        return len(self.nodes)

    def __iter__(self):
        return iter([n.layer for n in self.nodes.values()])
