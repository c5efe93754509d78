"""`python -m cnncalc` runs the command line."""

import sys

try:
    from .cli import main
except KeyboardInterrupt:  # Ctrl-C while typer, rich and the commands load: exit as a command would, no traceback
    sys.exit(130)

main()
