"""Scoring: metrics per case and region, and evaluating a run into its metrics table."""
