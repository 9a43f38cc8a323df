"""``python -m manual_bp`` is the ``manual-bp`` command."""

import sys

from .cli import main

sys.exit(main())
