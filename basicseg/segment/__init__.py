"""Segment one axial volume: load -> centreline -> crop -> infer -> back-project -> postprocess.

Each step is the module named after it; ``pipeline.segment`` runs them in that order.
"""
