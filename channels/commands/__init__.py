"""The `flows` commands, one module per subject; cli.py gathers them into the `flows` group."""
