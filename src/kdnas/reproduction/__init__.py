"""The paper's tables and figures, recomputed from its tabular benchmark.

- ``kdnas.reproduction.table2``: Algorithm 1 on each low fidelity (Table 2).
- ``kdnas.reproduction.table3``: Algorithm 1 on ImageNet, no KD vs KD (Table 3).
- ``kdnas.reproduction.table4``: seconds to the optimum per optimizer (Table 4): the paper's
  rows, then every optimizer of ``kdnas.search.registry``.
- ``kdnas.reproduction.figures``: Figures 1, 3, 4, 5 and anytime curves.

Built on ``kdnas.replay``; nothing below this package imports it. Table 1 (correlations of the
benchmark's columns) is ``kdnas.bench.correlation``.
"""
