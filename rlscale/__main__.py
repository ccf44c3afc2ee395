"""``python -m rlscale`` is the ``rlscale`` command."""

import sys

from rlscale.cli import main

sys.exit(main())
