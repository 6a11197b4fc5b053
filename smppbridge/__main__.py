import sys

from smppbridge.cli import main

sys.exit(main())
