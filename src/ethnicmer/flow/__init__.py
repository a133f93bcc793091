"""Onset→apex optical-flow images from raw frames (paper III-C, Eq. 5-7)."""
