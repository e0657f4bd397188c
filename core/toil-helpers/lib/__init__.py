"""Toil's ``toil.lib`` helpers that workflow scripts import, under ``flow.lib``."""
