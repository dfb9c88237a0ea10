"""The tag store: scanned tags kept per ImageRepository, behind the ``TagStore`` protocol."""
