"""The iscsiattach command: the devref's attachment and volume commands."""
