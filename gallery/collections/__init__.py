"""Collections: named, ordered sets of a team's images, shared like images."""
