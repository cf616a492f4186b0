"""The errata of the reference documents: each claim transcribed (:mod:`~symcnn.checking.errata.transcriptions`,
data only, in the terms of :mod:`~symcnn.checking.errata.model`), checked at run time and shown as text,
Markdown or JSON (:mod:`~symcnn.checking.errata.run`). ``symcnn errata`` prints them; docs/errata.md is
their Markdown.
"""

from symcnn.checking.errata.model import STATUSES, Convention, Erratum, Transcription
from symcnn.checking.errata.run import collect, errata_markdown, errata_text, run, summary
from symcnn.checking.errata.transcriptions import NOT_CHECKED, TRANSCRIPTIONS

__all__ = ["Convention", "Transcription", "Erratum", "TRANSCRIPTIONS", "NOT_CHECKED", "run", "collect",
           "errata_text", "errata_markdown", "summary", "STATUSES"]
