"""Where registry credentials come from: docker config Secrets, service accounts, clouds."""
