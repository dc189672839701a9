"""HTTP: the Cinder-compatible REST API. Nothing below this package knows HTTP."""
