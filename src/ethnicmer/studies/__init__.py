"""Studies: each a function from a config to result tables."""
