"""The index-notation checker: a claim such as ``Y_{i,j} = \\sum_{m}\\sum_{n} X_{i+m,j+n} W_{m,n}``
checked against an op's derivation at small configurations of increasing size.

- :mod:`~symcnn.checking.index.vocabulary`: the names a claim may use per op (tensors, roles,
  layouts, shape parameters) and the op-name tables;
- :mod:`~symcnn.checking.index.plan`: the evaluation plan, decided once per claim;
- :mod:`~symcnn.checking.index.search`: which configurations to evaluate it at, smallest first;
- :mod:`~symcnn.checking.index.derivation`: the op's derivation at one configuration;
- :mod:`~symcnn.checking.index.evaluate`: the claim interpreter and the entry point ``check_claim``.
"""
