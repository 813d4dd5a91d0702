"""A self-contained demo: lethe is easier to trust once you have watched it work on data."""
