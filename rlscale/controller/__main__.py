"""``python -m rlscale.controller``: run the in-cluster controller (see :mod:`.cli`)."""

import sys

from rlscale.controller.cli import main

if __name__ == "__main__":
    sys.exit(main())
