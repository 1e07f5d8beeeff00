"""The Deployment controller: one module per concern, as in Kubernetes' pkg/controller/deployment."""
