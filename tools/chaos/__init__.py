"""`make chaos`: a bounded fault suite of real processes on loopback.

Routers, demo agents, replayers and a throwaway Postgres cluster run as real processes; each
scenario injects one fault, records every client answer and every agent receipt, and checks the
invariants in ``chaos.invariants``. ``python -m chaos --help`` for the command line.
"""
