"""Listening history (seed 003): player reports become time ranges; history, stats, pages."""
