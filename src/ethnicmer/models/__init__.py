"""Backbones and the dual-context network (paper III-C, Eq. 1-4 and 8)."""
