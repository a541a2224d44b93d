"""Indicators and dashboards."""
