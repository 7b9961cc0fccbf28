"""`cconv finetune`: adapt a saved model to a new digits task with few labels.

    cconv finetune digits.safetensors --classes 5-9 --per-class 10 \\
        --freeze-to 5_maxpool2d --lr 3e-4 --epochs 40 -o digits59.safetensors
    cconv finetune digits.safetensors --list      # the nodes, to pick --freeze-to

Loads the model, gives it a new head for the chosen classes (freshly
initialised from --seed), freezes what --freeze-to / --freeze select, trains
on --per-class images of each class (Adam, with an optional layer-wise
learning-rate decay), reports the held-out accuracy and saves the result
with its class list in the metadata. The data are scikit-learn's bundled
digits (pip install 'cconv[examples]').
"""
import sys


def add_parser(subparsers):
    p = subparsers.add_parser(
        "finetune", help="fine-tune a saved model on a digits class subset",
        description="Replace the head of a saved model, freeze its lower layers and train "
                    "it on a few labelled images of chosen digits.")
    p.add_argument("model", help="a .safetensors file written by cconv.save (cconv train)")
    p.add_argument("--classes", default="5-9",
                   help="digits of the new task, e.g. '5-9' or '0,3,8' (default 5-9)")
    p.add_argument("--per-class", type=int, default=10,
                   help="labelled training images per class (default 10; 0 = all)")
    p.add_argument("--test-fraction", type=float, default=0.3,
                   help="share of each class held out for the accuracy (default 0.3)")
    p.add_argument("--freeze-to", metavar="NODE",
                   help="freeze this node and everything upstream of it")
    p.add_argument("--freeze", nargs="+", metavar="PATTERN", default=[],
                   help="also freeze parameters whose name or node matches these globs")
    p.add_argument("--keep-head", action="store_true",
                   help="keep the current head (it must already have one output per class)")
    p.add_argument("--epochs", type=int, default=40)
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--lr", type=float, default=3e-4,
                   help="learning rate of the head (default 3e-4: 10x below `cconv train`)")
    p.add_argument("--lr-decay", type=float, default=1.0,
                   help="layer-wise decay: each block below the head trains at this "
                        "times the lr of the block above (default 1: one lr)")
    p.add_argument("--weight-decay", type=float, default=0.0, help="AdamW weight decay")
    p.add_argument("--seed", type=int, default=0, help="seeds the head, the data split "
                                                       "and the batch order")
    p.add_argument("--threads", type=int, default=None)
    p.add_argument("-o", "--out", default="finetuned.safetensors",
                   help="where to save the fine-tuned model ('' to skip)")
    p.add_argument("--list", action="store_true",
                   help="print the model's nodes and exit")
    p.add_argument("--no-progress", action="store_true")
    p.set_defaults(func=run_finetune, command="finetune")
    return p


def _fail(message):
    raise SystemExit(f"cconv finetune: {message}")


def _check_args(args):
    if args.per_class < 0:
        _fail(f"--per-class must be >= 0, got {args.per_class}")
    if args.epochs < 1 or args.batch_size < 1:
        _fail(f"--epochs and --batch-size must be >= 1, got {args.epochs}, {args.batch_size}")
    if not args.lr > 0 or not args.lr_decay > 0 or args.weight_decay < 0:
        _fail(f"--lr and --lr-decay must be > 0 and --weight-decay >= 0, got {args.lr}, "
              f"{args.lr_decay}, {args.weight_decay}")


def _node_table(net):
    frozen, weights = set(net.frozen()), set(net.select(None))
    lines = []
    for name, layer in net.layers():
        params = [f"{name}.{p}" for p in layer.params if f"{name}.{p}" in weights]
        state = ("frozen" if params and all(p in frozen for p in params)
                 else "trainable" if params else "")
        lines.append(f"  {name:<20} {layer.type_name:<14} {state}")
    return "\n".join(lines)


def run_finetune(args):
    from . import threads as thread_count
    from . import transfer
    from ._threads import get_num_threads
    from .examples.digit_tasks import load_task, parse_classes
    from .io import WeightFileError, load, read_safetensors, save
    from .optim import Adam, AdamW
    from .train import evaluate, fit

    _check_args(args)
    try:
        net = load(args.model)
        _, metadata = read_safetensors(args.model)
    except (OSError, WeightFileError) as exc:
        _fail(str(exc))
    if args.list:
        print(_node_table(net))
        return 0
    try:
        classes = parse_classes(args.classes)
    except ValueError as exc:
        _fail(f"--classes: {exc}")
    if tuple(net.input_shapes[0]) != (1, 8, 8):
        _fail(f"the digits task has 8x8 images (1, 8, 8) but {args.model} takes "
              f"{tuple(net.input_shapes[0])}")
    try:
        x_tr, y_tr, x_te, y_te = load_task(classes, per_class=args.per_class or None,
                                           test_fraction=args.test_fraction, seed=args.seed)
    except ValueError as exc:
        _fail(str(exc))
    try:
        if args.keep_head:
            head = transfer.find_head(net)
            outs = net.infer_shapes(net.input_shapes)[net.output_names[0]]
            if outs[-1] != len(classes):
                _fail(f"--keep-head: the model has {outs[-1]} outputs, the task "
                      f"{len(classes)} classes")
        else:
            head = transfer.replace_head(net, len(classes), seed=args.seed)
        if args.freeze_to:
            transfer.freeze_to(net, args.freeze_to)
        if args.freeze:
            transfer.freeze(net, args.freeze)
        groups = transfer.layerwise_groups(net, args.lr, decay=args.lr_decay)
    except (KeyError, ValueError) as exc:
        _fail(str(exc.args[0]) if isinstance(exc, KeyError) else str(exc))
    opt = (AdamW(groups, net=net, weight_decay=args.weight_decay) if args.weight_decay
           else Adam(groups, net=net))
    n_threads = args.threads or get_num_threads()
    trainable = net.parameter_count(trainable_only=True)
    print(f"finetune: digits {classes}, {len(x_tr)} training and {len(x_te)} held-out "
          f"images; head {head!r}; {trainable} of {net.parameter_count()} parameters "
          f"trainable; {n_threads} thread(s)")
    with thread_count(n_threads):
        before = evaluate(net, x_te, y_te)["accuracy"]
        fit(net, x_tr, y_tr, epochs=args.epochs, batch_size=args.batch_size, optimizer=opt,
            seed=args.seed, progress=not args.no_progress)
        after = evaluate(net, x_te, y_te)
    print(f"held-out accuracy {after['accuracy']:.4f} (loss {after['loss']:.4f}); "
          f"{before:.4f} with the new head before training")
    if args.out:
        meta = {k: v for k, v in metadata.items() if k != "cconv_config"}
        meta.update(classes=",".join(map(str, classes)), finetuned_from=str(args.model))
        save(net, args.out, metadata=meta)
        print(f"saved {args.out} (output i is digit classes[i]: {classes})")
    sys.stdout.flush()
    return 0
