"""``unetbench run``: the runner's stages (:mod:`unetbench.run.runner`), what comes before the first step
(:mod:`unetbench.run.preparation`), predicting a run's images and the progress a run shows."""
