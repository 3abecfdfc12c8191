"""Plumbing that imports nothing else of ablate: registries, input checks, atomic files, the
environment (device, commit), fault points for the kill tests."""
