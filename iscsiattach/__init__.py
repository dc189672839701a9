"""iscsiattach: the attach/detach v2 workflow on Linux LIO, and its host side."""
