"""``python -m ouroboros``: the same as the ``ouroboros`` command."""

import sys

from ouroboros.cli import main

sys.exit(main())
