"""``unetbench compare``: several submissions on one ground truth, ranked, with how sure the ranking is:
the methods as read (:mod:`~unetbench.leaderboard.inputs`), their scores, cached (:mod:`~.scores`), the
statistics (:mod:`~.ranking`) and the report (:mod:`~.report`)."""
