"""`cconv import`: turn a foreign model file into a saved cconv network.

    cconv import mobilenet.onnx -o mobilenet.safetensors
    cconv import detector.onnx                                # open H, W stay open
    cconv import model.onnx --input-shape input=3,224,224     # where a Reshape fixes them

The format is found by the file's suffix among the registered weight
loaders; a loader that can rebuild the whole network offers
`loader.load_graph(path, input_shapes=None) -> cconv.Graph` (the cconv-onnx
plugin's does). The result is written with cconv.save, so `cconv.load`,
`cconv summary` and `cconv hessian` read it.
"""
import os
import sys


def add_parser(subparsers):
    p = subparsers.add_parser(
        "import", help="import a model file (ONNX with the cconv-onnx plugin) as a cconv net",
        description="Import a whole network with its weights from another framework's "
                    "file (.onnx through the cconv-onnx plugin), print its summary and save "
                    "it in cconv's native format (safetensors weights + JSON config).")
    p.add_argument("model", help="the model file, e.g. model.onnx")
    p.add_argument("-o", "--output", default=None,
                   help="where to save (default: the model path with .safetensors)")
    p.add_argument("--input-shape", action="append", default=[], metavar="NAME=C,H,W",
                   help="per-sample shape to build an input at; needed only where the "
                        "model fixes a size the file leaves open (the error names the "
                        "node), and the net then runs that size only (repeat for several "
                        "inputs)")
    p.set_defaults(func=run_import)
    return p


def _parse_shapes(specs):
    shapes = {}
    for spec in specs:
        name, sep, dims = spec.rpartition("=")
        try:
            if not sep or not name:
                raise ValueError
            shapes[name] = tuple(int(d) for d in dims.split(","))
        except ValueError:
            raise ValueError(f"--input-shape must look like NAME=C,H,W, got {spec!r}") from None
    return shapes


def _graph_loader(path):
    from . import plugins

    try:
        loader = plugins.find_weight_loader(path)
    except LookupError as exc:
        hint = (" (install the ONNX importer: pip install ./plugins/cconv-onnx)"
                if os.fspath(path).lower().endswith(".onnx") else "")
        raise ValueError(f"{exc}{hint}") from None
    load_graph = getattr(loader, "load_graph", None)
    if load_graph is None:
        raise ValueError(f"the weight loader for {path!r} reads weights only, not a "
                         f"network: build the net and use cconv.load_weights instead")
    return load_graph


def run_import(args):
    from . import io

    from .cli import check_output_path, stage

    output = args.output or os.path.splitext(args.model)[0] + ".safetensors"
    try:
        check_output_path(output)
        shapes = _parse_shapes(args.input_shape)
        load_graph = _graph_loader(args.model)
        size = os.path.getsize(args.model)
        with stage("import", f"reading and converting {args.model} ({size / 1e6:.1f} MB)"):
            net = load_graph(args.model, input_shapes=shapes or None)
    except OSError as exc:
        print(f"cconv import: error: {exc.filename or args.model}: {exc.strerror or exc}",
              file=sys.stderr)
        return 1
    except ValueError as exc:
        print(f"cconv import: error: {exc}", file=sys.stderr)
        return 1
    print(net.summary())
    # what became of the model's constant operands (the ONNX importer's report)
    for kind, notes in getattr(net, "onnx_import_report", {}).items():
        if notes:
            print(f"{len(notes)} constant(s) {kind}: " + "; ".join(notes))
    try:
        io.save(net, output, metadata={"imported_from": os.path.basename(args.model)})
    except OSError as exc:
        print(f"cconv import: error: {exc.filename or output}: {exc.strerror or exc}",
              file=sys.stderr)
        return 1
    print(f"saved {output}")
    return 0
