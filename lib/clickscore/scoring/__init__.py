"""Nightly scoring: gold.user_scores from the champion model (see `job`)."""
