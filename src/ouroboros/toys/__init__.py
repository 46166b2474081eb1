"""Analytic recursive-training loops checked against closed forms."""
