"""The basicseg BIDS App: command line, discovery, participant and group orchestration, derivatives, reports.

``bidsapp`` imports the science library ``basicseg``; the library never imports the app.
"""
from basicseg import __version__

__all__ = ["__version__"]
