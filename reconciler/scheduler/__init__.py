"""The scheduler: binds pods to nodes and gives each a pod IP from its node's pod CIDR."""
