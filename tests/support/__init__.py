"""The harness that the functional tests and the tools share.

``daemon``: one iscsiattachd process (its config file, start, readiness,
stop, restart); ``scratch``: ext4 scratch filesystems, sparse files and loop
devices; ``wait``: the one polling wait. Used by ``tests/functional``,
``tools/demo.py``, ``tools/benchlib`` and the suites under ``tools/``.
Nothing here asserts about iscsiattach's behaviour: the callers do.
"""
