"""``python -m rlscale.twin``: run the simulated twin cluster (see :mod:`.cli`)."""

import sys

from rlscale.twin.cli import main

if __name__ == "__main__":
    sys.exit(main())
