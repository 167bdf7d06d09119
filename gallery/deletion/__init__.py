"""Soft deletion of images: hidden at once, restorable for the undo window, then purged."""
