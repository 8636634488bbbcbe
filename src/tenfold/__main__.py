"""`python -m tenfold` runs the command line."""

import sys

from tenfold.cli import main

sys.exit(main())
