"""Telling the outside world what happened to each commit: apprise notifications and forge commit statuses.

Both are ``CommitObserver``s (``reconciler.core.commitevents``): the commit record emits, they
listen, and each sends from a worker thread of its own (``outbox``), so a slow or dead
destination never holds up reconciling. ``drift`` turns the node agents' drift corrections
into rate-limited Drift events. Only ``reconciler.core`` is imported here; the daemon wires it.
(The modules are imported where used: apprise takes a while to load and only a daemon
configured with ``notify`` needs it.)
"""
