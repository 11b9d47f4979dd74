"""Compilation targets. Each sub-package imports only the core (edgec.*) and its own SDK, lazily."""
