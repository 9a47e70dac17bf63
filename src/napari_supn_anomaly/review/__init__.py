"""Reviewing candidates: decisions (statuses), parasitemia with intervals, results folders,
re-ranking from decisions, and the HTML report. No napari, no Qt: the review widget only shows it."""
