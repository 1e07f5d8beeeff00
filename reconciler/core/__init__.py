"""Core: what every part shares: typed object views, keys, selectors, kinds, clock, back-off.

Imports nothing of Reconciler's; every other package may import it."""
