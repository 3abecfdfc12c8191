"""Many workers, one study: shared storage and claims, grid workers and the Optuna search."""
