"""``python -m detequiv``: the same as the ``detequiv`` command."""

import sys

from .cli import main

sys.exit(main())
