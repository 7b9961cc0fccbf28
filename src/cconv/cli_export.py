"""`cconv export`: write a saved cconv network as an ONNX model (needs the cconv-onnx plugin).

    cconv export digits.safetensors -o digits.onnx
    cconv export digits.safetensors --opset 13 --static      # every axis fixed, batch 1

The batch axis (and every spatial axis the net leaves free) is symbolic
unless --static or --batch-only says otherwise. Errors are one line on
stderr and exit code 1; nothing is written then.
"""
import os
import sys


def add_parser(subparsers):
    p = subparsers.add_parser(
        "export", help="export a saved cconv net to ONNX (with the cconv-onnx plugin)",
        description="Write a network saved with cconv.save as an ONNX model that "
                    "onnxruntime (or any ONNX runtime) runs. Needs the cconv-onnx plugin: "
                    "pip install ./plugins/cconv-onnx.")
    p.add_argument("model", help="the saved net, e.g. model.safetensors")
    p.add_argument("-o", "--output", default=None,
                   help="where to write (default: the model path with .onnx)")
    p.add_argument("--opset", type=int, default=17, help="ONNX opset version (default 17)")
    axes = p.add_mutually_exclusive_group()
    axes.add_argument("--batch-only", action="store_true",
                      help="only the batch axis is symbolic (spatial sizes as built)")
    axes.add_argument("--static", action="store_true",
                      help="every axis fixed, the batch at --batch-size")
    p.add_argument("--batch-size", type=int, default=1,
                   help="the fixed batch size with --static (default 1)")
    p.set_defaults(func=run_export)
    return p


def run_export(args):
    from . import io

    output = args.output or os.path.splitext(args.model)[0] + ".onnx"
    dynamic = False if args.static else "batch" if args.batch_only else True
    try:
        if args.batch_size < 1:
            raise ValueError(f"--batch-size must be >= 1, got {args.batch_size}")
        if not os.path.isfile(args.model):
            raise FileNotFoundError(f"no saved model at {args.model!r}")
        net = io.load(args.model)
        io.export_onnx(net, output, opset=args.opset, dynamic_axes=dynamic,
                       batch_size=args.batch_size)
    except (ValueError, OSError, ImportError, LookupError) as exc:
        message = " ".join(str(exc).split())   # one line, whatever the exception holds
        print(f"cconv export: error: {message}", file=sys.stderr)
        return 1
    print(f"wrote {output}")
    return 0
