"""`python -m a4ps` entry point."""

import sys

from a4ps.cli import main

sys.exit(main())
