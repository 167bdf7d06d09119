"""Explore: the public images of every team, for everyone."""
