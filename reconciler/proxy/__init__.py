"""kube-proxy's role: the service data plane of a node."""
