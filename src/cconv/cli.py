"""The `cconv` command (also `python -m cconv`).

Subcommands live in their own modules, listed in SUBCOMMANDS as
"module:function": the function takes argparse's subparsers object, adds
its parser(s) and sets `func` (args -> exit code) on each with set_defaults.
A command whose module does not exist (yet) is left out; only the module of
the command being run is imported, so `cconv plugins` stays fast.
"""
import argparse
import contextlib
import importlib
import importlib.util
import json
import os
import sys
import time

__all__ = ["main", "SUBCOMMANDS", "build_parser"]

#: command name -> "module:function" that adds it (one function may add several).
SUBCOMMANDS = {
    "plugins": "cconv.cli:add_plugins_parser",
    "train": "cconv.cli_train:add_parser",
    "predict": "cconv.cli_train:add_parser",
    "hessian": "cconv.cli_hessian:add_parser",
    "summary": "cconv.cli_hessian:add_parser",
    "filter": "cconv.cli_filter:add_parser",
    "gallery": "cconv.cli_gallery:add_parser",
    "convert": "cconv.cli_convert:add_parser",
    "import": "cconv.cli_import:add_parser",
    "export": "cconv.cli_export:add_parser",
    "finetune": "cconv.cli_finetune:add_parser",
}


def _module_exists(module):
    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):
        return False


def build_parser(commands=None):
    """The argument parser with the given commands (default: all that are installed)."""
    from . import __version__

    parser = argparse.ArgumentParser(
        prog="cconv", description="cconv: a lightweight CPU engine for convolutional networks.")
    parser.add_argument("--version", action="version", version=f"cconv {__version__}")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    added = set()
    for name in commands or SUBCOMMANDS:
        target = SUBCOMMANDS[name]
        module, _, function = target.partition(":")
        if target in added or not _module_exists(module):
            continue
        added.add(target)
        getattr(importlib.import_module(module), function)(subparsers)
    return parser


def main(argv=None):
    """Run the command line; returns the exit code."""
    argv = sys.argv[1:] if argv is None else list(argv)
    # Import only what the chosen command needs; help and errors list them all.
    first = next((a for a in argv if not a.startswith("-")), None)
    commands = [first] if first in SUBCOMMANDS else None
    parser = build_parser(commands)
    args = parser.parse_args(argv)
    if getattr(args, "func", None) is None:
        parser.print_help()
        return 2
    try:
        return args.func(args) or 0
    except (ValueError, LookupError, OSError, ImportError, MemoryError) as exc:
        # bad files, paths and arguments: one line, not a traceback
        if os.environ.get("CCONV_TRACEBACK") == "1":
            raise
        print(f"cconv {args.command}: {one_line(exc)}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print(f"cconv {args.command}: interrupted", file=sys.stderr)
        return 130


@contextlib.contextmanager
def stage(command, text, quiet=False):
    """'cconv COMMAND: text... 1.2s' on stderr around a long step of a command."""
    t0 = time.perf_counter()
    if not quiet:
        print(f"cconv {command}: {text}...", end="", file=sys.stderr, flush=True)
    try:
        yield
    finally:
        if not quiet:
            print(f" {time.perf_counter() - t0:.1f}s", file=sys.stderr, flush=True)


def check_output_path(path):
    """Refuse, before any long work, an output path whose folder does not exist."""
    folder = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(folder):
        raise FileNotFoundError(2, f"cannot write: the folder {folder!r} does not exist",
                                path)


def one_line(exc):
    """The exception as one line: its message, or its type where it has none."""
    text = " ".join(str(exc).split())
    if isinstance(exc, OSError) and exc.filename is not None:
        text = f"{exc.filename}: {exc.strerror or text}"
    return text or type(exc).__name__


# ---------------------------------------------------------------- cconv plugins

def add_plugins_parser(subparsers):
    p = subparsers.add_parser(
        "plugins", help="list plugins, layers, kernels, optimizers and weight loaders",
        description="List every registered layer, kernel (op, name, priority), optimizer "
                    "and weight loader with the package it came from.")
    p.add_argument("--json", action="store_true", help="print JSON instead of tables")
    p.set_defaults(func=run_plugins)
    return p


def _table(rows, columns):
    """Left-aligned text table of dicts: one line per row, the given columns."""
    cells = [[str(r[c]) for c in columns] for r in rows]
    widths = [max([len(c)] + [len(line[i]) for line in cells]) for i, c in enumerate(columns)]
    lines = ["  " + "  ".join(c.ljust(w) for c, w in zip(columns, widths)).rstrip()]
    lines += ["  " + "  ".join(v.ljust(w) for v, w in zip(line, widths)).rstrip()
              for line in cells]
    return "\n".join(lines)


def run_plugins(args):
    from . import plugins

    listing = plugins.describe()
    if args.json:
        print(json.dumps(listing, indent=2, default=str))
        return 0
    for row in listing["kernels"]:
        row["kernel"] = row["name"] + (" (forced)" if row["forced"] else "")
    for row in listing["weight_loaders"]:
        row["suffixes"] = " ".join(row["suffixes"])
    sections = [
        ("plugins", ["name", "package", "status"]),
        ("layers", ["name", "package", "plugin"]),
        ("kernels", ["op", "kernel", "priority", "package"]),
        ("optimizers", ["name", "package", "object"]),
        ("weight_loaders", ["name", "suffixes", "package"]),
    ]
    blocks = [f"{key.replace('_', ' ').capitalize()} ({len(listing[key])})\n"
              f"{_table(listing[key], columns)}" for key, columns in sections]
    print("\n\n".join(blocks))
    for row in listing["plugins"]:
        if row["status"] == "failed":
            print(f"\nplugin {row['name']!r} failed: {row['error']}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
