"""End to end: the real API server, the built kubectl and flux CLIs, the controller process."""
