"""Training jobs: the scheduler (``scheduler``), the training process it spawns for each job
(``training``), its heartbeat and /proc checks (``procs``), the quality gate of a finished run
(``quality_gate``), the ETA (``eta``) and ``n2n worker`` (``cli``). The jobs themselves live in the
shared store (``app.store``)."""
