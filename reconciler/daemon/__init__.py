"""The daemon: the composition root that wires every part, its config, systemd, metrics, logs."""
