"""The multi-process broker: a supervisor, its workers and what they share.

* :mod:`sente.cluster.supervisor`: creates the shared memory, starts and restarts the workers, drains on SIGTERM
  (``sente serve APP --workers N``); :class:`~sente.cluster.supervisor.ClusterStats` holds its counters.
* :mod:`sente.cluster.worker`: one serving process; :func:`sente.cluster.worker.current` gives app code the
  worker's index and its :class:`csente.shm.SharedState` (None when one process serves alone).
"""
