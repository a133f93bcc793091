"""Explaining the benchmark's models: Grad-CAM, action-unit regions, between-group tests."""
