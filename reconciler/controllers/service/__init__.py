"""The Service controller: ClusterIP and NodePort allocation."""
