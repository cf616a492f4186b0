"""Teaching from symbolic outputs: randomized exercise sheets with answer keys, and grading.

- :mod:`~symcnn.teaching.model`: the typed exercise, answer and sheet objects;
- :mod:`~symcnn.teaching.topics`: the topics, each a kind of registry op (read from the registry when
  asked, so that a newly registered op joins its topic), and the levels;
- :mod:`~symcnn.teaching.layer`, :mod:`~symcnn.teaching.normalization`, :mod:`~symcnn.teaching.more` (sizes,
  spot the wrong formula, a network): exercise makers, every answer and its working derived by symcnn's own
  machinery (``derive``, ``steps``, the registry's shapes, the checker);
- :mod:`~symcnn.teaching.statistics`: a normalization's statistics named (document 003's μ and σ²), and the
  chain rule back through them;
- :mod:`~symcnn.teaching.sheet`: a sheet from a recipe (seed, count, topics, level), reproducible;
- :mod:`~symcnn.teaching.documents`: the sheet and its key as reports (LaTeX, PDF, Markdown);
- :mod:`~symcnn.teaching.grading`: a student's answers file graded against the key;
- :mod:`~symcnn.teaching.moodle`: a sheet as Moodle XML.
"""
