"""Markdown reports rendered from run records, and their figures."""
