"""The service: volumes, the attach/detach v2 workflow, and the reconciler."""
