"""Demographic annotation (paper III-A, Fig. 1): estimators, aggregation, correction."""
