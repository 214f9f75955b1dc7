"""Benchmarks of recbole-gtc, run from the repository root (they are not part of the wheel).

* ``python -m benchmarks.speed``: seconds per training epoch and per full evaluation of GTC,
  its ablations and variants against LightGCN and BPR, and the TC loss in matmul-equivalents.
* ``python -m benchmarks.memory``: peak memory of graph building and of one GTC training step
  over catalogue sizes, and one whole epoch at a given size.

``--help`` lists each one's options; docs/performance.md holds the measurements and their commands.
"""
