"""The end-to-end benchmark: ``python -m bench`` (``make bench``) writes docs/performance.md.

One run compares, on this machine, a benchmark agent that answers at once (nginx with a static
JSON body) called directly, through nginx as a reverse proxy (the floor for one proxy hop),
through the router on Postgres and on SQLite, and with ``--peers`` through the Portkey gateway
and the LiteLLM proxy. Modules, in the order a run uses them:

- ``install``   the tools a run needs (nginx and wrk from Debian; the peers from npm and PyPI)
- ``targets``   start, readiness and stop of the upstream, nginx and the router
- ``peers``     the Portkey gateway and the LiteLLM proxy as targets
- ``probes``    what is read beside the load: /proc CPU and memory, /metrics histograms, rows
- ``wrk``       closed loop with wrk and ``post.lua``
- ``openloop``  fixed-rate open loop with the project's load generator (``run_load``)
- ``runner``    one target's session: its runs, the readings around them, the correctness check
- ``results``   what a whole run holds, and medians with their spread
- ``tables``, ``verdicts``, ``report``   the Markdown report: tables, the issue's targets
- ``raw``       the raw figures as JSON, so that a report can be rendered again
- ``environment``  the run's own Postgres database, the source snapshot, the machine

``python -m bench --soak`` (``make soak``) is the soak: the router alone on a fresh Postgres
database, a closed then an open loop, read window by window (``soak``), written into its own
delimited section of the report with a verdict on drift (``soak_report``).

One part alone, each its own ``python -m bench.<name>``: ``agent_client``, ``batch_cost``,
``console``, ``hedge``, ``log_cost``, ``outcome_plan``, ``shadow_cost``, ``store_cost`` (the
store's claim and outcome, per signal, on SQLite or Postgres) and ``wake_cost``.
"""
