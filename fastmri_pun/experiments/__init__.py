"""Experiment drivers: ``python -m fastmri_pun.experiments.paper`` reproduces the PUN paper's
comparison (training, robustness evaluation, REPORT.md) on the demo data."""
