"""Metrics per generation and cell; every value carries its signature."""
