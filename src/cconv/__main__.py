"""`python -m cconv ...`: the same command line as `cconv ...`.

`python -m cconv --cflags --libs` (and the other flags of cconv._embed.FLAGS)
prints the compiler flags of the C API instead (docs/c-api.md).
"""
import sys

from ._embed import FLAGS

if sys.argv[1:] and sys.argv[1] in FLAGS:
    from ._embed import main as _flags_main

    sys.exit(_flags_main(sys.argv[1:]))

from .cli import main

sys.exit(main())
