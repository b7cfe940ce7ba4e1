"""`python -m tinybin ...`: see tinybin/cli.py."""
import sys

from .cli import main

sys.exit(main())
