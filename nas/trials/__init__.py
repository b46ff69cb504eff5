"""Trials, whatever the job: the one way an architecture is evaluated, recorded and told to its study.

Every job (the search, ablations, the fidelity benchmark, the proving ground, a user's own study) keeps its
trials in an Optuna study and runs the same steps: enqueue fixed parameters or let a sampler propose, ask,
evaluate, tell. Modules: ``storage`` (journal, SQLite and RDB storages that ride out a database restart),
``study`` (trial statuses, heartbeat, recovery of a killed run's trials, opening a study with its identity),
``evaluate`` (one trial's evaluation: train through the engine, score a supernet, read a table; the outcome
classified and recorded alike), ``execution`` (workers, devices, threads, backend, storage: the options every job
shares), ``parallel`` and ``ray`` (``--workers`` processes and Ray Tune dispatch).
"""
