"""Tracking, optional and outside the spec: TensorBoard event files and MLflow runs of unetbench runs
(:mod:`unetbench.tracking.trackers`)."""
