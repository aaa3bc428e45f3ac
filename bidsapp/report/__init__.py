"""Visual reports: one HTML page per subject and the group report."""
