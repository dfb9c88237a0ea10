"""The reconcile logic of ImageRepository and ImagePolicy, on top of the kube runtime."""
