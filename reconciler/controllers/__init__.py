"""Controllers: level-based reconcilers over the store, one per kind of work.

Each controller's ``reconcile(key)`` reads what it needs from the store, writes
only what differs, and returns a ``Result`` (maybe with ``requeue_after``). The
manager maps store changes to keys and feeds them to work queues.
"""
