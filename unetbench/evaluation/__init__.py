"""Scoring with the official metrics, without a network: files on disk (``unetbench evaluate``,
:mod:`~unetbench.evaluation.files`) and a network's probability maps
(:mod:`~unetbench.evaluation.scoring`)."""
