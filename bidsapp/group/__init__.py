"""Group level, one module per step: collect -> join -> stats -> figures -> report, run by run.run_group(config)."""
