"""``python -m snowg``: the same as the ``snowg`` command."""

import sys

from .cli import main

sys.exit(main())
