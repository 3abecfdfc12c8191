"""Many workers, one study: shared storage and claims, grid workers and the Optuna search.

``storage`` (URLs, ``open_store``), ``claims`` (atomic claims, heartbeats), ``pool`` (the one
claim-work-finish loop), ``grid`` (an experiment's cells over a pool), ``jobs`` (``ablate run
--jobs``: local worker processes over a grid), ``search_spec`` (search files), ``ledger`` (which
worker runs which trial, in which slot), ``search`` (the study and its workers) and
``search_report`` (trials table, report). ``ablate.common.faults`` names the
points where a worker can die, for the tests that kill one there.
"""
