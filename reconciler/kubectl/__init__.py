"""kubectl's role: the `reconciler` command, its API client and its printers."""
