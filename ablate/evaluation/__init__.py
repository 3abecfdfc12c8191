"""The evaluation stage: metrics from accumulated counts (``metrics``), a model scored on a split
(``evaluate``), latency and peak memory (``timing``)."""
