"""The attach flow across two VMs joined by a private virtual link (tools/two-vm).

Not a pytest suite: each module here is the program one guest runs.
``storage`` serves LIO and iscsiattachd on 10.213.0.1; ``host`` attaches
from 10.213.0.2 with open-iscsi and the ``iscsiattach`` CLI. They meet
through marker files in the shared results folder (``common``).
"""
