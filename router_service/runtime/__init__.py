"""The composition root: the one place that builds the router's components (``services.py``),
starts and stops them (``startup.py``), runs the server (``server.py``, ``supervisor.py``) and
reloads the routing file (``reload.py``). ``serve``, ``worker`` and the CLI's commands all get
their components here; ``api/`` only speaks HTTP."""
