"""Volume backends: sparse files, LVM logical volumes, registered block devices."""
