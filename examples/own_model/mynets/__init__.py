"""A user's own package: nothing here knows about sparsearch."""
