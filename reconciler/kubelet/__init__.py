"""The kubelet's role: the node agent that runs a node's pods through its container engine."""
