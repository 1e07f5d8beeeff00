"""The cluster store (etcd's role): objects, resource versions, watches, indexes."""
