"""diffaug."""
