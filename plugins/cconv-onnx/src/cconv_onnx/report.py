"""The up-front report: every obstacle to importing a model, found in one pass before any import.

An obstacle is an operator cconv does not know, an operator it folds on
constants only (shape arithmetic) applied to a value the network computes,
or one with constant inputs only that cconv cannot evaluate at import. A
tensor is computed when it derives from a graph input; Shape's output is a
constant (cconv knows every shape when it imports).
"""
import collections

UNSUPPORTED = "unsupported operator"
CONSTANTS_ONLY = "supported on constants only, applied to a computed value"
NOT_FOLDABLE = "constant inputs only, which cconv cannot evaluate at import"


def _op_name(node):
    return node.op_type if node.domain in ("", "ai.onnx") else f"{node.domain}.{node.op_type}"


def obstacles(model, converters, folders):
    """{(op, why): [node names]} for every node cconv cannot import (empty when all are fine)."""
    graph = model.graph
    inits = {t.name for t in graph.initializer}
    computed = {vi.name for vi in graph.input if vi.name not in inits}
    found = collections.defaultdict(list)
    for i, node in enumerate(graph.node):
        op = _op_name(node)
        reads_computed = any(name in computed for name in node.input if name)
        if reads_computed and op != "Shape":
            computed.update(o for o in node.output if o)
        if op == "Shape":
            continue
        if op not in converters and op not in folders:
            why = UNSUPPORTED
        elif reads_computed and op not in converters:
            why = CONSTANTS_ONLY
        elif not reads_computed and op not in folders and op != "Constant":
            why = NOT_FOLDABLE
        else:
            continue
        found[(op, why)].append(node.name or f"#{i}")
    return dict(found)


def describe(found):
    """The lines of the one error that lists every obstacle."""
    return [f"  {op} ({why}): {len(names)} node(s), e.g. {', '.join(names[:3])}"
            for (op, why), names in sorted(found.items())]
