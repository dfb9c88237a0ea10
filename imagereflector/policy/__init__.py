"""ImagePolicy selection: semver ranges, alphabetical and numerical order, tag filters."""
