"""Data-quality commands over published tables: `clickscore dq run` validates a partition on
demand with its table's suite (the stages' own defaults as parameters, which is why it sits
with the stages and not in the `dq` engine), `clickscore dq report` summarizes ops.dq_results.
"""
