"""Exit codes of the BIDS App execution spec (bids-standard/execution-spec) and sysexits.h."""
OK = 0
FAILURE = 1            # at least one image failed; the others were processed
INVALID_BIDS = 16      # bids_dir is not a valid BIDS dataset
UNKNOWN_LEVEL = 17     # analysis level not participant/group
NO_MATCH = 18          # participant/session labels or filters matched nothing
USAGE = 64             # bad command line
DATA_ERR = 65          # input data unreadable or not usable
NO_INPUT = 66          # bids_dir or a named input file does not exist
CANT_CREATE = 73       # output_dir / work_dir cannot be created or written
IO_ERR = 74            # I/O error while writing


class BasicsegError(Exception):
    """An error with an exit code and a message meant for the user."""

    def __init__(self, message: str, code: int = FAILURE):
        super().__init__(message)
        self.code = code
