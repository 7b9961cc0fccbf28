"""Fit foreign weights onto a net: rename, re-layout, cast, and check it all first.

`cconv.io.load_weights` plans a load with `plan_load` and changes the net
only afterwards, so a problem found anywhere leaves every parameter as it was.

mapping (source name -> net name):
    None              names are used as they are
    "module."         a prefix to strip (where present)
    {"fc.w": "fc.weight"}                exact renames; other names unchanged
    [(r"^features\\.", "body."), ...]    regex rules, applied in order (re.sub)
    callable(name) -> new name, or None to skip the tensor on purpose
    NameMap(...)      all of the above together, plus drop patterns and by_order

layout (conversions of the source array, chosen by the *net* name):
    "HWIO->OIHW"      every source array of that many dimensions is transposed
    ["HWIO->OIHW", "IO->OI"]             several, by number of dimensions
    {r"conv.*weight$": "HWIO->OIHW", r"fc\\.weight$": (1, 0), "x": callable}
"""
import re
from collections.abc import Mapping

import numpy as np

__all__ = ["NameMap", "as_layout", "as_name_map", "layout_axes", "plan_load"]


def _as_list(value):
    if value is None:
        return []
    if isinstance(value, str) or (isinstance(value, tuple) and value and
                                  all(isinstance(v, int) for v in value)):  # one axes tuple
        return [value]
    return list(value)


class NameMap:
    """Source names -> net names, in this order: drop, strip_prefix, names, rename.

    drop: regexes (re.search on the source name) of tensors to skip on
    purpose (reported as skipped, e.g. r"num_batches_tracked$"). strip_prefix:
    one prefix or several ("module.", "model."); the first that a name starts
    with is removed. names: {source name: net name}. rename: (pattern,
    replacement) regex pairs applied in order with re.sub. by_order: ignore
    the names and pair the remaining source tensors with the net's
    parameters in order (for nets built layer for layer like the source);
    the shapes are still checked.
    """

    def __init__(self, strip_prefix=None, rename=(), names=None, drop=(), by_order=False):
        self.strip_prefix = [str(p) for p in _as_list(strip_prefix)]
        self.names = dict(names or {})
        self.drop = [_compile(p, "drop") for p in _as_list(drop)]
        self.rename = []
        for rule in ([rename] if isinstance(rename, tuple) and len(rename) == 2
                     and isinstance(rename[0], str) else list(rename)):
            if not (isinstance(rule, (tuple, list)) and len(rule) == 2):
                raise ValueError(f"rename: each rule must be a (pattern, replacement) pair, "
                                 f"got {rule!r}")
            self.rename.append((_compile(rule[0], "rename"), str(rule[1])))
        self.by_order = bool(by_order)

    def __call__(self, name):
        if any(p.search(name) for p in self.drop):
            return None
        for prefix in self.strip_prefix:
            if name.startswith(prefix):
                name = name[len(prefix):]
                break
        name = self.names.get(name, name)
        for pattern, replacement in self.rename:
            name = pattern.sub(replacement, name)
        return name

    def resolve(self, source_names, net_names):
        """{source name: net name or None (skipped)}."""
        mapped = {s: self(s) for s in source_names}
        if self.by_order:
            kept = iter(net_names)
            mapped = {s: (None if t is None else next(kept, f"<extra {i}> {s}"))
                      for i, (s, t) in enumerate(mapped.items())}
        return mapped


def _compile(pattern, what):
    try:
        return re.compile(pattern)
    except (re.error, TypeError) as exc:
        raise ValueError(f"{what}: {pattern!r} is not a valid regular expression "
                         f"({exc})") from None


def as_name_map(mapping):
    """A NameMap (or a callable-based resolver) from any accepted `mapping` form."""
    if mapping is None:
        return NameMap()
    if isinstance(mapping, NameMap):
        return mapping
    if isinstance(mapping, str):
        # "by_order" is the one keyword; any other string is a prefix to strip
        return NameMap(by_order=True) if mapping == "by_order" else NameMap(strip_prefix=mapping)
    if isinstance(mapping, Mapping):
        return NameMap(names=mapping)
    if callable(mapping):
        return _CallableMap(mapping)
    if isinstance(mapping, (list, tuple)):
        return NameMap(rename=mapping)
    raise TypeError(f"mapping must be None, a prefix string, \"by_order\", a dict of names, a list of "
                    f"(pattern, replacement) pairs, a callable or a NameMap; got "
                    f"{type(mapping).__name__}")


class _CallableMap:
    def __init__(self, function):
        self.function = function

    def resolve(self, source_names, net_names):
        out = {}
        for s in source_names:
            t = self.function(s)
            if t is not None and not isinstance(t, str):
                raise TypeError(f"mapping({s!r}) returned {t!r}; expected a name or None")
            out[s] = t
        return out


# ---------------------------------------------------------------- layouts

def layout_axes(spec):
    """Axes for np.transpose from "HWIO->OIHW" (letters: any, each used once)."""
    src, arrow, dst = str(spec).replace(" ", "").partition("->")
    if (not arrow or len(src) != len(dst) or sorted(src) != sorted(dst)
            or len(set(src)) != len(src) or not src):
        raise ValueError(f"layout {spec!r}: expected 'SRC->DST' with the same distinct "
                         f"letters on both sides, e.g. 'HWIO->OIHW'")
    return tuple(src.index(c) for c in dst)


def _conversion(spec):
    """(label, function array -> array) of one layout spec."""
    if callable(spec):
        return getattr(spec, "__name__", "callable"), spec
    if isinstance(spec, str):
        axes = layout_axes(spec)
        label = spec
    else:
        axes = tuple(int(a) for a in spec)
        if sorted(axes) != list(range(len(axes))):
            raise ValueError(f"layout axes {spec!r} are not a permutation of 0..{len(axes) - 1}")
        label = f"transpose{axes}"

    def convert(a):
        if a.ndim != len(axes):
            raise ValueError(f"layout {label} needs {len(axes)} dimensions, the source "
                             f"array has shape {a.shape}")
        return np.transpose(a, axes)
    convert.ndim = len(axes)
    return label, convert


def as_layout(layout):
    """function(net name, array) -> (array, label or None) for a `layout` argument."""
    if layout is None:
        return lambda name, a: (a, None)
    if isinstance(layout, Mapping):
        rules = [(_compile(p, "layout"), *_conversion(s)) for p, s in layout.items()]

        def by_name(name, a):
            for pattern, label, convert in rules:
                if pattern.search(name):
                    return convert(a), label
            return a, None
        return by_name
    by_ndim = {}
    for spec in _as_list(layout):
        label, convert = _conversion(spec)
        ndim = getattr(convert, "ndim", None)
        if ndim is None:
            raise ValueError("a layout callable needs a name pattern: layout={pattern: f}")
        if ndim in by_ndim:
            raise ValueError(f"layout: two conversions for {ndim}-D arrays ({by_ndim[ndim][0]} "
                             f"and {label}); use a {{pattern: spec}} dict")
        by_ndim[ndim] = (label, convert)

    def by_dims(name, a):
        if a.ndim in by_ndim:
            label, convert = by_ndim[a.ndim]
            return convert(a), label
        return a, None
    return by_dims


# ---------------------------------------------------------------- planning

def _describe(a):
    return f"{tuple(a.shape)} {a.dtype}"


def _cast(value, target):
    """value as target's dtype, or a reason why not."""
    if value.dtype.kind not in "biuf" or target.dtype.kind != "f":
        return None, f"cannot cast {value.dtype} to {target.dtype}"
    with np.errstate(over="ignore", invalid="ignore"):
        out = value.astype(target.dtype)
    if value.dtype.kind == "f" and not np.array_equal(np.isfinite(out), np.isfinite(value)):
        return None, f"values overflow {target.dtype}"
    return out, None


def _prefix_hint(unexpected, missing):
    """'module.'-style prefix whose removal would match some names, for the error."""
    missing = set(missing)
    for name in unexpected:
        parts = name.split(".")
        for i in range(1, len(parts)):
            prefix = ".".join(parts[:i]) + "."
            if name[len(prefix):] in missing:
                return prefix
    return None


def plan_load(net_params, tensors, report, mapping=None, layout=None, cast=False):
    """{net name: array to copy} after renaming, re-layout, casting and checks.

    Fills `report` (a cconv.io.LoadReport): loaded, missing, unexpected,
    mismatched, skipped, renamed, converted. Touches nothing.
    """
    resolver = as_name_map(mapping)
    convert = as_layout(layout)
    targets = resolver.resolve(list(tensors), list(net_params))
    by_target = {}
    for source, target in targets.items():
        if target is None:
            report.skipped.append(source)
            continue
        if target in by_target:
            raise ValueError(f"mapping sends both {by_target[target]!r} and {source!r} to "
                             f"{target!r}")
        by_target[target] = source
        if target != source:
            report.renamed[source] = target
    plan = {}
    for name, param in net_params.items():
        source = by_target.get(name)
        if source is None:
            report.missing.append(name)
            continue
        value = np.asarray(tensors[source])
        try:
            value, label = convert(name, value)
        except ValueError as exc:
            report.mismatched.append((name, _describe(param), f"{_describe(value)} ({exc})"))
            continue
        if label:
            report.converted.append((name, label))
        if value.shape != param.shape:
            report.mismatched.append((name, _describe(param), _describe(value)))
            continue
        if value.dtype != param.dtype:
            if not cast:
                report.mismatched.append((name, _describe(param), _describe(value)))
                report.hints.add("pass cast=True to convert the dtypes on purpose")
                continue
            new, why = _cast(value, param)
            if why:
                report.mismatched.append((name, _describe(param), f"{_describe(value)} ({why})"))
                continue
            report.converted.append((name, f"{value.dtype}->{param.dtype}"))
            value = new
        plan[name] = value
        report.loaded.append(name)
    report.unexpected = [s for s, t in targets.items()
                         if t is not None and t not in net_params]
    prefix = _prefix_hint(report.unexpected, report.missing)
    if prefix:
        report.hints.add(f"names differ by a prefix: try mapping={prefix!r}")
    elif report.missing and report.unexpected and _order_fits(tensors, targets, net_params):
        report.hints.add("the names differ but the shapes match in order: try "
                         "mapping=\"by_order\" (cconv convert --by-order)")
    return plan


def _order_fits(tensors, targets, net_params):
    """True when the kept source tensors have the net's parameter shapes, in order."""
    kept = [np.shape(tensors[s]) for s, t in targets.items() if t is not None]
    wanted = [np.shape(p) for p in net_params.values()]
    return len(kept) == len(wanted) and all(a == b or int(np.prod(a)) == int(np.prod(b))
                                            for a, b in zip(kept, wanted))
