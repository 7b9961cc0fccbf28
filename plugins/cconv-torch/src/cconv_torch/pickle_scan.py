"""Run a pickle abstractly, before the real unpickler, and check it against budgets.

The C unpickler trusts its input: a tuple nested 200,000 deep used as a dict
key overflows the C stack when it is hashed (SIGSEGV); memoised containers
filled after they are shared (L[i] = [L[i-1], L[i-1]]) make a 1 KB pickle
whose walk has 2**40 paths; a 2 MB integer makes every size computation
crawl. None of that can be caught once the real objects exist, so this pass
replays the opcodes on a model of the object graph (node ids and edges in
flat arrays, no Python object per node) and refuses, naming the budget:

- more than MAX_OBJECTS objects or MAX_MEMO memo entries;
- an estimated in-memory size beyond MEMORY_FACTOR x the pickle + MEMORY_SLACK;
- an integer literal of more than MAX_INT_BITS bits;
- NEWOBJ / INST / OBJ (a tensor checkpoint only calls rebuild functions);
- BUILD on anything but an OrderedDict (the state_dict's `_metadata`);
- after the last opcode, over the final graph (containers only grow, so
  the final graph bounds every earlier state): a cycle, nesting deeper than
  MAX_DEPTH, or an object whose fully expanded tree (shared parts counted
  each time they are reached, which is what hashing and walking cost)
  exceeds 2**20 + 16 x the pickle's bytes.

Every refusal is a PickleBudgetError (a ValueError) whose message names the
opcode's byte offset and the budget.
"""
import io
import pickletools
from array import array

import numpy as np

__all__ = ["MAX_DEPTH", "MAX_INT_BITS", "MAX_MEMO", "MAX_OBJECTS", "PickleBudgetError",
           "scan"]

MAX_DEPTH = 64            # a state_dict pickle nests about 6 deep
MAX_OBJECTS = 1 << 21     # ~20 per tensor: 100,000 tensors
MAX_MEMO = 1 << 21
MAX_INT_BITS = 128        # the legacy magic number has 77
MEMORY_FACTOR, MEMORY_SLACK = 16, 32 << 20


class PickleBudgetError(ValueError):
    """The pickle exceeds one of this module's budgets (the message says which)."""


# node kinds (one byte each)
ATOM, NONE, CONTAINER, GLOBAL, CALL, ODICT, PERSISTENT = range(7)
_KIND_NAMES = {ATOM: "a literal", NONE: "None", CONTAINER: "a list, tuple, dict or set",
               GLOBAL: "a global", CALL: "the result of a call", ODICT: "an OrderedDict",
               PERSISTENT: "a storage (persistent id)"}

_LITERALS = {"INT", "BININT", "BININT1", "BININT2", "LONG", "LONG1", "LONG4", "STRING",
             "BINSTRING", "SHORT_BINSTRING", "BINBYTES", "SHORT_BINBYTES", "BINBYTES8",
             "UNICODE", "BINUNICODE", "SHORT_BINUNICODE", "BINUNICODE8", "BYTEARRAY8",
             "FLOAT", "BINFLOAT", "NEWTRUE", "NEWFALSE", "NEXT_BUFFER"}
_INTS = {"INT", "LONG", "LONG1", "LONG4"}   # the others are at most 32 bits
_EMPTY = {"EMPTY_LIST", "EMPTY_DICT", "EMPTY_TUPLE", "EMPTY_SET"}
_FROM_MARK = {"LIST", "TUPLE", "DICT", "FROZENSET"}
_REFUSED = {"INST": "INST", "OBJ": "OBJ", "NEWOBJ": "NEWOBJ", "NEWOBJ_EX": "NEWOBJ_EX"}
_ODICT_NAMES = ("collections OrderedDict",)
_CONTAINER_BYTES, _EDGE_BYTES, _ATOM_BYTES = 64, 16, 40   # CPython's sizes, rounded up


class _Graph:
    """The modelled objects: node kinds, edges parent -> child, the stack, marks, memo."""

    def __init__(self, nbytes):
        self.kinds = bytearray()
        self.parents, self.children = array("q"), array("q")
        self.stack, self.marks = array("q"), []
        self.memo = array("q")   # memo index -> node, -1 unset (indices are <= file size)
        self.memo_count = 0
        self.globals = {}   # node -> "module name" of a GLOBAL opcode
        self.unnamed_calls = set()   # results of calling a STACK_GLOBAL (name unknown here)
        self.memory = 0
        self.memory_limit = MEMORY_FACTOR * nbytes + MEMORY_SLACK
        self.pos = 0

    def fail(self, why):
        raise PickleBudgetError(f"at byte {self.pos}: {why}")

    def new(self, kind, cost):
        node = len(self.kinds)
        if node >= MAX_OBJECTS:
            self.fail(f"more than {MAX_OBJECTS} objects (a tensor checkpoint has about 20 "
                      f"per tensor)")
        self.kinds.append(kind)
        self.charge(cost)
        return node

    def charge(self, cost):
        self.memory += cost
        if self.memory > self.memory_limit:
            self.fail(f"the objects would take more than {self.memory_limit} bytes "
                      f"({MEMORY_FACTOR}x the pickle + {MEMORY_SLACK >> 20} MiB)")

    def link(self, parent, child):
        self.parents.append(parent)
        self.children.append(child)
        self.charge(_EDGE_BYTES)

    def push(self, node):
        self.stack.append(node)

    def pop(self):
        floor = self.marks[-1] if self.marks else 0
        if len(self.stack) <= floor:
            self.fail("stack underflow (corrupt pickle)")
        return self.stack.pop()

    def top(self):
        floor = self.marks[-1] if self.marks else 0
        if len(self.stack) <= floor:
            self.fail("stack underflow (corrupt pickle)")
        return self.stack[-1]

    def pop_mark(self):
        if not self.marks:
            self.fail("no MARK before an opcode that needs one (corrupt pickle)")
        k = self.marks.pop()
        items = self.stack[k:]
        del self.stack[k:]
        return items


def _step(g, name, arg):
    if name == "MARK":
        g.marks.append(len(g.stack))
    elif name in _LITERALS:
        if name in _INTS and isinstance(arg, int) and abs(arg).bit_length() > MAX_INT_BITS:
            g.fail(f"an integer of {abs(arg).bit_length()} bits (at most {MAX_INT_BITS})")
        size = len(arg) if isinstance(arg, (str, bytes, bytearray)) else 0
        g.push(g.new(ATOM, _ATOM_BYTES + size))
    elif name == "NONE":
        g.push(g.new(NONE, 0))
    elif name in _EMPTY:
        g.push(g.new(CONTAINER, _CONTAINER_BYTES))
    elif name in _FROM_MARK:
        items = g.pop_mark()
        node = g.new(CONTAINER, _CONTAINER_BYTES)
        for item in items:
            g.link(node, item)
        g.push(node)
    elif name in ("TUPLE1", "TUPLE2", "TUPLE3"):
        items = [g.pop() for _ in range(int(name[-1]))]
        node = g.new(CONTAINER, _CONTAINER_BYTES)
        for item in items:
            g.link(node, item)
        g.push(node)
    elif name == "APPEND":
        item = g.pop()
        g.link(g.top(), item)
    elif name in ("APPENDS", "SETITEMS", "ADDITEMS"):
        items = g.pop_mark()
        target = g.top()
        for item in items:
            g.link(target, item)
    elif name == "SETITEM":
        value, key = g.pop(), g.pop()
        target = g.top()
        g.link(target, key)
        g.link(target, value)
    elif name == "DUP":
        g.push(g.top())
    elif name == "POP":
        if g.stack and len(g.stack) > (g.marks[-1] if g.marks else 0):
            g.stack.pop()
        else:
            g.pop_mark()
    elif name == "POP_MARK":
        g.pop_mark()
    elif name == "GLOBAL":
        node = g.new(GLOBAL, _ATOM_BYTES)
        g.globals[node] = arg
        g.push(node)
    elif name in ("STACK_GLOBAL", "EXT1", "EXT2", "EXT4"):
        if name == "STACK_GLOBAL":
            g.pop(), g.pop()
        g.push(g.new(GLOBAL, _ATOM_BYTES))   # the name is checked by find_class
    elif name == "REDUCE":
        args, function = g.pop(), g.pop()
        odict = g.globals.get(function) in _ODICT_NAMES
        node = g.new(ODICT if odict else CALL, 2 * _CONTAINER_BYTES)
        if g.kinds[function] == GLOBAL and function not in g.globals:
            g.unnamed_calls.add(node)
        g.link(node, args)   # the result may hold its arguments (a TensorRef does)
        g.push(node)
    elif name == "BUILD":
        state = g.pop()
        target = g.top()
        kind = g.kinds[target]
        # a call of a STACK_GLOBAL: find_class only allows objects that refuse BUILD
        # themselves (or an OrderedDict)
        if kind != ODICT and target not in g.unnamed_calls:
            g.fail(f"BUILD would set the state of {_KIND_NAMES[kind]}; only an OrderedDict (a "
                   f"state_dict's _metadata) may have its state set")
        g.link(target, state)
    elif name in ("PERSID", "BINPERSID"):
        node = g.new(PERSISTENT, _CONTAINER_BYTES)
        if name == "BINPERSID":
            g.link(node, g.pop())
        g.push(node)
    elif name in ("PUT", "BINPUT", "LONG_BINPUT", "MEMOIZE"):
        key = g.memo_count if name == "MEMOIZE" else int(arg)
        if key >= len(g.memo):
            if key >= MAX_MEMO:
                g.fail(f"memo index {key}: more than {MAX_MEMO} memo entries")
            g.memo.extend(array("q", [-1]) * (key + 1 - len(g.memo)))
        if g.memo[key] < 0:
            g.memo_count += 1
        g.memo[key] = g.top()
    elif name in ("GET", "BINGET", "LONG_BINGET"):
        if not 0 <= arg < len(g.memo) or g.memo[arg] < 0:
            g.fail(f"memo entry {arg} is read before it is written (corrupt pickle)")
        g.push(g.memo[arg])
    elif name in _REFUSED:
        g.fail(f"{name} creates an arbitrary object; a tensor checkpoint only calls tensor "
               f"rebuild functions")
    elif name not in ("PROTO", "FRAME", "READONLY_BUFFER"):
        g.fail(f"unexpected opcode {name}")


def _check_graph(g, limit):
    """Refuse cycles, nesting beyond MAX_DEPTH and expanded trees beyond limit.

    Iterative depth-first walk over the containers (every node once), so
    the check itself neither recurses nor walks shared parts twice.
    """
    n = len(g.kinds)
    if not g.parents:
        return
    parents = np.frombuffer(g.parents, np.int64)
    children = np.frombuffer(g.children, np.int64)
    order = np.argsort(parents, kind="stable")
    # array('q') rather than lists: 8 bytes per entry, no int object each
    kids = array("q", children[order].tobytes())
    starts = array("q", np.searchsorted(parents[order], np.arange(n + 1)).astype(np.int64)
                   .tobytes())
    del order
    size = array("q", [1]) * n   # expanded tree size (refused beyond limit)
    depth = array("q", [1]) * n
    state = bytearray(n)    # 0 new, 1 on the walk's path, 2 done
    for root in array("q", np.unique(parents).tobytes()):
        if state[root]:
            continue
        path = [(root, starts[root])]
        state[root] = 1
        while path:
            node, i = path[-1]
            if i < starts[node + 1]:
                path[-1] = (node, i + 1)
                child = kids[i]
                if state[child] == 1:
                    raise PickleBudgetError("an object contains itself (a cycle); a tensor "
                                            "checkpoint has none")
                if state[child] == 0 and starts[child] < starts[child + 1]:
                    if len(path) >= MAX_DEPTH:   # refuse before walking 200,000 levels down
                        raise PickleBudgetError(f"objects nested more than {MAX_DEPTH} deep")
                    state[child] = 1
                    path.append((child, starts[child]))
                continue
            path.pop()
            state[node] = 2
            total, deepest = 1, 0
            for c in kids[starts[node]:starts[node + 1]]:
                total += size[c]
                deepest = max(deepest, depth[c])
            if total > limit:
                raise PickleBudgetError(f"shared objects expand to more than {limit} "
                                        f"objects (corrupt or hostile file)")
            if deepest + 1 > MAX_DEPTH:
                raise PickleBudgetError(f"objects nested more than {MAX_DEPTH} deep")
            size[node], depth[node] = total, deepest + 1


def scan(data, start):
    """Index just past the pickle at data[start] (after its STOP), every budget checked.

    Raises PickleBudgetError for a budget and ValueError/EOFError (from
    pickletools) for a malformed pickle.
    """
    g = _Graph(len(data) - start)
    f = io.BytesIO(memoryview(data)[start:])
    for opcode, arg, pos in pickletools.genops(f):
        g.pos = start + pos
        if opcode.name == "STOP":
            _check_graph(g, 2**20 + 16 * f.tell())
            return start + f.tell()
        if opcode.name in ("PUT", "BINPUT", "LONG_BINPUT") and not 0 <= int(arg) <= len(data):
            # the C unpickler sizes its memo table by the largest index
            g.fail(f"memo index {arg} is beyond the size of the file (corrupt file?)")
        _step(g, opcode.name, arg)
    raise EOFError("the pickle ends without a STOP opcode")
