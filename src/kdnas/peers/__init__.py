"""The field's multi-fidelity optimizers behind kdnas's ask/tell, and their leaderboard.

- ``kdnas.peers.adapters``: Optuna, SMAC, DEHB and Syne Tune optimizers (each library imported
  only when its adapter is built: extras ``kdnas[field]``, ``kdnas[syne-tune]``,
  ``kdnas[dehb]``), and the zero-cost + successive-halving baseline.
- ``kdnas.peers.leaderboard``: the peers against kdnas's registered optimizers on the paper's
  benchmark (``kdnas reproduce field``).
"""
