"""Triggers of the scheduled-jobs operators."""
