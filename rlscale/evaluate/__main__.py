"""``python -m rlscale.evaluate``."""

import sys

from rlscale.evaluate.cli import main

sys.exit(main())
