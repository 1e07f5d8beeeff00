"""`python -m reconciler` is the `reconciler` command."""
import sys

from reconciler.kubectl.cli import main

sys.exit(main())
