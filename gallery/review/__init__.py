"""Team review of images: approve or reject, and comments."""
