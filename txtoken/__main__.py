"""``python -m txtoken``: the same as the ``txtoken`` command."""

import sys

from txtoken.cli import main

sys.exit(main())
