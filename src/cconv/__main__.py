"""`python -m cconv ...`: the same command line as `cconv ...`."""
import sys

from .cli import main

sys.exit(main())
