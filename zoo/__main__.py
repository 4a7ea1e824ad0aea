"""``python -m zoo ...``: the ``zoo`` command (what ``torchrun -m zoo run CONFIG`` starts)."""

import sys

from zoo.cli import main

sys.exit(main())
