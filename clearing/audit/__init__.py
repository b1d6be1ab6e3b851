"""The audit: the one log reader, the hash chain, the snapshot check, the invariants, the
decision re-checks, and ``verify``, the service that runs them over one read of the log.
"""
