"""The render farm core. Nothing in this package imports Flask."""
