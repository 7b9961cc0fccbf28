"""Transfer learning: a new head, freezing by pattern or depth, layer-wise learning rates.

    from cconv import transfer
    net = cconv.load("digits.safetensors")
    transfer.replace_head(net, 5, seed=0)              # new output layer, 5 classes
    transfer.freeze_to(net, "5_maxpool2d")             # that node and everything it reads
    groups = transfer.layerwise_groups(net, 1e-3, decay=0.5)
    opt = cconv.optim.Adam(groups, net=net)

Frozen parameters get no update and no weight decay (the optimizers skip
them), no gradient work (Graph.backward(..., input_grads=False) skips layers
with nothing trainable in or upstream of them), and a BatchNorm whose weight
and bias are frozen uses its running statistics in training as well.
"""
import fnmatch
import re

import numpy as np

__all__ = [
    "find_head",
    "freeze",
    "freeze_to",
    "layerwise_groups",
    "lr_multiplier_groups",
    "match",
    "replace_head",
    "unfreeze",
]

# Hyperparameters that set a layer's number of outputs, by the layers that have them.
_OUT_KEYS = ("out_features", "out_ch")


def _weights(net):
    """{node name: [parameter names]} of the non-buffer parameters, nodes in insertion order."""
    out = {}
    for full in net.select(None):    # every parameter but the running statistics
        out.setdefault(full.split(".", 1)[0], []).append(full)
    return out


def match(net, patterns, regex=False):
    """Parameter names selected by patterns (a string, a compiled regex, or a list of them).

    A pattern selects a parameter when it matches the parameter's full name
    ("conv1.weight") or its node's name ("conv1"): shell-style globs
    (fnmatch: *, ?, [...]) by default, whole-string regular expressions with
    regex=True (or a compiled re.Pattern). Running statistics (buffers) are
    never selected. Each pattern must select something.
    """
    if isinstance(patterns, (str, re.Pattern)):
        patterns = [patterns]
    patterns = list(patterns)
    if not patterns:
        raise ValueError("patterns must name at least one pattern, got an empty list")
    weights = _weights(net)
    chosen = []
    for pattern in patterns:
        if isinstance(pattern, re.Pattern) or regex:
            try:
                rx = pattern if isinstance(pattern, re.Pattern) else re.compile(pattern)
            except re.error as exc:
                raise ValueError(f"pattern {pattern!r} is not a valid regular expression: "
                                 f"{exc}") from None
            hit = rx.fullmatch
        elif isinstance(pattern, str):
            def hit(s, p=pattern):
                return fnmatch.fnmatchcase(s, p)
        else:
            raise TypeError(f"patterns must be strings or compiled regexes, got {pattern!r}")
        found = [p for node, params in weights.items() for p in params
                 if hit(node) or hit(p)]
        if not found:
            raise KeyError(f"pattern {getattr(pattern, 'pattern', pattern)!r} matches no "
                           f"node or parameter; nodes with parameters: {list(weights)}")
        chosen.extend(p for p in found if p not in chosen)
    return chosen


def freeze(net, patterns, regex=False):
    """Freeze the parameters that patterns select (see match); returns their names."""
    names = match(net, patterns, regex)
    net.freeze(names)
    return names


def unfreeze(net, patterns, regex=False):
    """Make the parameters that patterns select trainable again; returns their names."""
    names = match(net, patterns, regex)
    net.unfreeze(names)
    return names


def _ancestors(net, node):
    """node and every node it reads from, directly or not."""
    seen, stack = set(), [node]
    while stack:
        name = stack.pop()
        if name in seen or name not in net.nodes:
            continue   # graph inputs are not nodes
        seen.add(name)
        stack.extend(net.nodes[name].inputs)
    return seen


def freeze_to(net, node, inclusive=True):
    """Freeze `node` and everything upstream of it; make every other parameter trainable.

    The usual fine-tuning cut: the feature extractor up to `node` keeps its
    pretrained weights, the layers after it (the head) learn. inclusive=False
    leaves `node` itself trainable. Returns the frozen parameter names.
    """
    if node not in net.nodes:
        raise KeyError(f"freeze_to: no node named {node!r}; nodes: {list(net.nodes)}")
    upstream = _ancestors(net, node)
    if not inclusive:
        upstream.discard(node)
    weights = _weights(net)
    frozen = [p for n, params in weights.items() if n in upstream for p in params]
    rest = [p for n, params in weights.items() if n not in upstream for p in params]
    if rest:
        net.unfreeze(rest)
    if frozen:
        net.freeze(frozen)
    return frozen


def find_head(net):
    """Name of the output layer to replace: the last node with weights on the way back
    from the (single) output through parameter-free layers (Softmax, Flatten, ...)."""
    outputs = net.output_names
    if len(outputs) != 1:
        raise ValueError(f"the net has {len(outputs)} outputs {outputs}: name the head node "
                         f"to replace (node=...)")
    name = outputs[0]
    while name in net.nodes:
        node = net.nodes[name]
        if node.layer.params:
            return name
        if len(node.inputs) != 1:
            break
        name = node.inputs[0]
    raise ValueError(f"no layer with weights feeds output {outputs[0]!r} through a chain "
                     f"of single-input layers: name the head node (node=...)")


def replace_head(net, head, seed=0, node=None):
    """Give the net a new, freshly initialised output layer; every other weight stays.

    head: the new number of classes (the old head's type and settings are
    kept, only its output count changes), or a Layer to put in its place.
    seed: feeds the new layer's initialiser alone, so the same seed gives the
    same head whatever the net's history. node: the node to replace
    (default: find_head(net)). The new layer is trainable and in the net's
    dtype; the net is rebuilt (shapes checked) and left unchanged if that
    fails. Returns the node name.
    """
    from .graph import GraphError
    from .nn.base import Layer

    if not net.built:
        raise ValueError("replace_head needs a built net (build() or load it first)")
    name = find_head(net) if node is None else node
    if name not in net.nodes:
        raise KeyError(f"replace_head: no node named {name!r}; nodes: {list(net.nodes)}")
    old = net.nodes[name].layer
    if isinstance(head, Layer):
        new = head
    else:
        if isinstance(head, bool) or not isinstance(head, (int, np.integer)) or head < 1:
            raise ValueError(f"head must be a number of classes >= 1 or a Layer, got {head!r}")
        config = dict(old.get_config())
        keys = [k for k in _OUT_KEYS if k in config]
        if not keys:
            raise ValueError(f"node {name!r} ({old.type_name}) has no output-count setting "
                             f"({' or '.join(_OUT_KEYS)}): pass the new head as a Layer")
        config[keys[0]] = int(head)
        new = type(old).from_config(config)
    if new.built:
        raise ValueError("replace_head builds the new head itself: pass an unbuilt Layer")
    shapes = net.input_shapes
    in_shapes = [net.infer_shapes(shapes)[s] for s in net.nodes[name].inputs]
    new.build(in_shapes, rng=np.random.default_rng(seed))
    new.astype(net.dtype)
    net.replace_layer(name, new)
    try:
        net.build(shapes, seed=net.seed)
    except GraphError:
        net.replace_layer(name, old)
        net.build(shapes, seed=net.seed)
        raise
    return name


def _groups(blocks, lrs):
    return [{"params": params, "lr": lr} for params, lr in zip(blocks, lrs) if params]


def _default_blocks(net):
    """Parameter names per block, input to output: a node with a weight matrix or kernel
    starts a block; nodes with vectors only (BatchNorm, PReLU) join the block before."""
    order = net.topological_order()
    weights = _weights(net)
    blocks = []
    for name in order:
        if name not in weights:
            continue
        layer = net.nodes[name].layer
        has_matrix = any(np.ndim(layer.params[p.split(".", 1)[1]]) >= 2 for p in weights[name])
        if has_matrix or not blocks:
            blocks.append([])
        blocks[-1].extend(weights[name])
    return blocks


def layerwise_groups(net, base_lr, decay=0.5, blocks=None):
    """Parameter groups with learning rates decaying from the output down (discriminative
    fine-tuning): the last block gets base_lr, the one before base_lr*decay, and so on.

    blocks: list of patterns (see match), one per block from input to output,
    each a pattern or a list of them; by default every node with a weight
    matrix or kernel starts a block and BatchNorm/PReLU nodes join the block
    before them. Frozen parameters are included (the optimizer skips them
    until they are unfrozen). Pass the result to an optimizer with net=net.
    """
    base_lr = _check_lr("base_lr", base_lr)
    decay = _check_lr("decay", decay)
    if blocks is None:
        names = _default_blocks(net)
    else:
        names, taken = [], set()
        for i, patterns in enumerate(blocks):
            picked = [p for p in match(net, patterns) if p not in taken]
            if not picked:
                raise ValueError(f"block {i} ({patterns!r}) selects no parameter that an "
                                 f"earlier block did not take")
            taken.update(picked)
            names.append(picked)
        left = [p for params in _weights(net).values() for p in params if p not in taken]
        if left:
            raise ValueError(f"parameters in no block: {left}; every parameter needs a block")
    n = len(names)
    return _groups(names, [base_lr * decay ** (n - 1 - i) for i in range(n)])


def lr_multiplier_groups(net, base_lr, multipliers, default=1.0, regex=False):
    """Parameter groups with lr = base_lr * multiplier of the first pattern that selects them.

    multipliers: {pattern: factor} (see match for patterns), e.g.
    {"conv*": 0.1, "fc*": 1.0}; parameters no pattern selects get default.
    Patterns that select nothing are an error (a typo would silently train at
    the default rate).
    """
    base_lr = _check_lr("base_lr", base_lr)
    if not isinstance(multipliers, dict):
        raise TypeError(f"multipliers must be a dict {{pattern: factor}}, got "
                        f"{type(multipliers).__name__}")
    default = _check_lr("default", default)
    taken, blocks, lrs = set(), [], []
    for pattern, factor in multipliers.items():
        factor = _check_lr(f"multipliers[{pattern!r}]", factor)
        picked = [p for p in match(net, pattern, regex) if p not in taken]
        taken.update(picked)
        blocks.append(picked)
        lrs.append(base_lr * factor)
    rest = [p for params in _weights(net).values() for p in params if p not in taken]
    blocks.append(rest)
    lrs.append(base_lr * default)
    return _groups(blocks, lrs)


def _check_lr(name, value):
    if isinstance(value, bool) or not isinstance(value, (int, float, np.floating, np.integer)):
        raise TypeError(f"{name} must be a number >= 0, got {value!r}")
    value = float(value)
    if not (np.isfinite(value) and value >= 0):
        raise ValueError(f"{name} must be a finite number >= 0, got {value}")
    return value
