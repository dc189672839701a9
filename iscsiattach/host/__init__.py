"""The host side: os-brick login and device identity confirmation."""
