"""Time-series writers, chosen by name from ``WRITERS`` and imported lazily."""
