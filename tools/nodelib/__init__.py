"""tools/node-vm: a storage node booted as a real machine.

image: the Debian 12 disk image (mmdebstrap), cached by a hash of its recipe.
qemu: one node under qemu (TCG), its command channel, power cut and reboot.
deb: the project's .deb the node installs.
suite: the checks, run on the node, with the evidence each one found.
"""
