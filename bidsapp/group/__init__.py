"""Group level: collect -> join -> statistics -> report."""
