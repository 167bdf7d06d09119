"""Likes and favourites."""
