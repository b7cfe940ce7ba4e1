"""`python -m tinybin ...`: see tinybin/cli/."""
import sys

from .cli import main

sys.exit(main())
