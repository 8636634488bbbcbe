"""`python -m tenfold.cli` (and `torchrun -m tenfold.cli`) runs the command line."""

import sys

from tenfold.cli import main

sys.exit(main())
