"""``python -m smppbridge.bench``: see :mod:`smppbridge.bench.runner`."""

import sys

from smppbridge.bench.runner import main

sys.exit(main())
