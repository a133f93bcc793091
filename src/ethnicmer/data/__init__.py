"""Data sources, label mappings, demographics and the composite database (paper III-A)."""
