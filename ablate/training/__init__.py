"""The training stage: losses, optimizers and schedules, the step, the one-run loop
(``loop.train``), encoder inits (recipes in ``inits``, made by ``pretrain``) and convergence.

Nothing is imported here, so that ``ablate.config`` can read the registries it validates
against (``losses``, ``optim``, ``inits``) without loading the loop that imports the config.
"""
