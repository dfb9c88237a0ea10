"""Cloud registry login plugins (AWS ECR, Azure ACR, Google GCR/Artifact Registry)."""
