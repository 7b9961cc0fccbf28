"""`cconv convert`: foreign weights (a PyTorch checkpoint, a safetensors state_dict)
onto a cconv architecture, saved as a cconv model file.

    cconv convert resnet.pth --arch arch.json -o model.safetensors --strip-prefix module.
    cconv convert lenet.pt --arch digits --by-order --dry-run      # just the report

The architecture is a net config JSON (json.dump(net.get_config(), f) of a
built net), a saved cconv model (its config is used, its weights replaced)
or a bundled example name.
Plugged into the main CLI through add_parser(subparsers).
"""
import json
import os
import sys

EXAMPLES = {"digits": "cconv.examples.digits"}
#: dropped unless --keep-all: torch BatchNorm's step counter has no cconv counterpart
DEFAULT_DROP = (r"(^|\.)num_batches_tracked$",)


def add_parser(subparsers):
    p = subparsers.add_parser(
        "convert", help="load foreign weights (.pt/.pth/.bin, .safetensors) into a cconv "
                        "architecture and save a cconv model",
        description="Read a weight file with the weight loader registered for its suffix "
                    "(PyTorch checkpoints need the cconv-torch plugin), map its tensor "
                    "names onto the architecture's parameters, check every shape and "
                    "dtype, print the report and save the model (nothing is written "
                    "unless everything matches, or with --non-strict).")
    p.add_argument("checkpoint", help="weight file: .pt/.pth/.bin, .safetensors, ...")
    p.add_argument("--arch", required=True,
                   help="net config JSON (net.get_config()), a cconv model file, or a "
                        f"bundled example: {', '.join(sorted(EXAMPLES))}")
    p.add_argument("-o", "--out", help="output model file (cconv.save format)")
    p.add_argument("--strip-prefix", action="append", default=[], metavar="PREFIX",
                   help="remove this prefix from source names (repeatable; e.g. module.)")
    p.add_argument("--rename", action="append", default=[], metavar="OLD=NEW",
                   help="regex rename rule applied to source names in order (repeatable), "
                        r"e.g. '^features\.(\d+)\.=conv\1.'")
    p.add_argument("--drop", action="append", default=[], metavar="REGEX",
                   help="skip source tensors whose name matches (repeatable; "
                        "num_batches_tracked is always skipped unless --keep-all)")
    p.add_argument("--keep-all", action="store_true",
                   help="do not skip num_batches_tracked")
    p.add_argument("--by-order", action="store_true",
                   help="pair source tensors with the net's parameters in order, ignoring "
                        "names (shapes still checked)")
    p.add_argument("--layout", action="append", default=[], metavar="SPEC",
                   help="convert source arrays, e.g. HWIO->OIHW (all 4-D) or IO->OI "
                        "(all 2-D), or PATTERN:SPEC for names matching a regex")
    p.add_argument("--loader", default=None,
                   help="weight loader name (default: chosen by the file's suffix)")
    p.add_argument("--key", default=None,
                   help="where the state_dict is inside the checkpoint, e.g. ema or "
                        "model.state_dict (default: found automatically; loaders that "
                        "take a key, like cconv-torch's)")
    p.add_argument("--no-cast", action="store_true",
                   help="a dtype other than the parameter's is an error (default: cast "
                        "integer and float sources to the parameter dtype)")
    p.add_argument("--non-strict", action="store_true",
                   help="load what matches and save even if tensors are missing, "
                        "unexpected or mismatched (all reported)")
    p.add_argument("--dry-run", action="store_true",
                   help="print the report only; load and write nothing")
    p.add_argument("--json", action="store_true", help="print the report as JSON")
    p.set_defaults(func=run_convert, command="convert")
    return p


def _fail(message):
    raise SystemExit(f"cconv convert: {message}")


def build_arch(arch):
    """The untrained net an --arch value names."""
    from .graph import Graph

    if arch in EXAMPLES:
        import importlib

        return importlib.import_module(EXAMPLES[arch]).build_model()
    if not os.path.exists(arch):
        _fail(f"--arch {arch!r} is neither a file nor a bundled example "
              f"({', '.join(sorted(EXAMPLES))})")
    if arch.lower().endswith(".safetensors"):
        from .io import load

        return load(arch)
    try:
        with open(arch, encoding="utf-8") as f:
            config = json.load(f)
        net = Graph.from_config(config)
    except (OSError, ValueError, LookupError, TypeError) as exc:
        _fail(f"--arch {arch}: not a usable net config JSON: {exc}")
    if not net.built:
        _fail(f"--arch {arch}: the config records no input shapes, so the net cannot be "
              f"built; save the config of a built net (net.build(input_shape) first)")
    return net


def _rules(args):
    rules = []
    for rule in args.rename:
        old, sep, new = rule.partition("=")
        if not sep or not old:
            _fail(f"--rename {rule!r}: expected OLD=NEW (a regex and its replacement)")
        rules.append((old, new))
    return rules


def _layout(specs):
    if not specs:
        return None
    if any(":" in s for s in specs):
        layout = {}
        for spec in specs:
            pattern, sep, conversion = spec.rpartition(":")
            layout[pattern if sep else "."] = conversion
        return layout
    return specs


def run_convert(args):
    from .io import WeightFileError, WeightsMismatchError, load_weights, save
    from .weightmap import NameMap

    if not args.dry_run and not args.out:
        _fail("say where to write the model: -o OUT (or --dry-run for the report only)")
    from .cli import check_output_path, stage

    if args.out:
        try:
            check_output_path(args.out)
        except OSError as exc:
            _fail(f"{exc.filename}: {exc.strerror}")
    net = build_arch(args.arch)
    loader = args.loader
    if args.key is not None:
        from functools import partial

        from . import plugins

        try:
            function = plugins.get_weight_loader(loader) if loader else \
                plugins.find_weight_loader(args.checkpoint)
        except LookupError as exc:
            from .io import loader_hint

            _fail(f"{exc}; {loader_hint(args.checkpoint)}")
        loader = partial(function, key=args.key)
    drop = list(args.drop) + ([] if args.keep_all else list(DEFAULT_DROP))
    try:
        mapping = NameMap(strip_prefix=args.strip_prefix, rename=_rules(args), drop=drop,
                          by_order=args.by_order)
        size = os.path.getsize(args.checkpoint) if os.path.isfile(args.checkpoint) else 0
        with stage("convert", f"reading and checking {args.checkpoint} "
                              f"({size / 1e6:.1f} MB)", quiet=args.json):
            report = load_weights(net, args.checkpoint, strict=not args.non_strict,
                                  mapping=mapping, layout=_layout(args.layout),
                                  cast=not args.no_cast, dry_run=args.dry_run,
                                  loader=loader)
    except WeightsMismatchError as exc:
        _print(exc.report, args, sys.stderr)
        print("cconv convert: the weights do not fit the architecture; nothing was written",
              file=sys.stderr)
        return 1
    except (WeightFileError, ValueError, LookupError, TypeError) as exc:
        _fail(str(exc))
    _print(report, args, sys.stdout)
    if args.dry_run:
        return 0 if report.ok else 1
    with stage("convert", f"writing {args.out}", quiet=args.json):
        save(net, args.out, metadata={"converted_from": os.path.basename(args.checkpoint)})
    if not args.json:
        print(f"saved {args.out}")
    return 0


def _print(report, args, stream):
    if args.json:
        print(json.dumps(report.as_dict(), indent=2), file=stream)
    else:
        print(report, file=stream)
