"""Benchmarks for iscsiattach (tools/bench): run inside the VM, rendered on the host.

Not tests: nothing here is collected by pytest, and no time is asserted.
Every figure is a measurement taken side by side with its baseline in one
VM boot, reported as a ratio.
"""
