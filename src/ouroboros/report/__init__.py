"""A read-only view of a run directory: tables, plots and a self-contained HTML report.

Nothing here imports the experiment package: a report is made from the run directory alone.
"""
