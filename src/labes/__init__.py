"""Labes: electronic data interchange for a national health-insurance fund."""

__version__ = "0.1.0"
