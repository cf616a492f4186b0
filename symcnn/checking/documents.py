"""The five reference documents symcnn reproduces, by number, file name and a short title.

The documents (tutorials on the mathematics of CNNs) are not distributed with symcnn, so nothing
points a reader at a file: every page, command and report that discusses one names it by number
and title, with its file name, and quotes the formula or example it discusses.

Example:
    >>> DOCUMENTS["002"]
    '002_51c52be4557c38c6.txt'
    >>> describe("002_51c52be4557c38c6.txt")
    'document 002, “Convolution and pooling, worked by hand”'
    >>> reference("002").heading
    'Document 002: Convolution and pooling, worked by hand (002_51c52be4557c38c6.txt)'
"""

from __future__ import annotations

from typing import Callable, Iterable, NamedTuple, TypeVar

Item = TypeVar("Item")

__all__ = ["ReferenceDocument", "REFERENCE_DOCUMENTS", "DOCUMENTS", "reference", "describe", "by_document"]


class ReferenceDocument(NamedTuple):
    """One reference document: its number (``002``), file name and a short title of what it covers."""

    number: str
    file_name: str
    title: str
    covers: str  # what symcnn takes from it, in a phrase

    @property
    def label(self) -> str:
        """``document 002, “Convolution and pooling, worked by hand”``."""
        return f"document {self.number}, “{self.title}”"

    @property
    def cited(self) -> str:
        """The label with the file name, for a first mention."""
        return f"{self.label} ({self.file_name})"

    @property
    def heading(self) -> str:
        """``Document 002: Convolution and pooling, worked by hand (002_51c52be4557c38c6.txt)``."""
        return f"Document {self.number}: {self.title} ({self.file_name})"


#: The documents in order; the one table of their numbers, file names and titles.
REFERENCE_DOCUMENTS: tuple[ReferenceDocument, ...] = (
    ReferenceDocument("000", "000_0ff4e6a12fbebc4a.txt", "The convolutional layer, forward and backward",
                      "the general convolution with stride and padding, and its three gradients in index notation"),
    ReferenceDocument("001", "001_70dbc933047afc36.txt", "CNN theory: layers, output sizes, backpropagation",
                      "the output-size rule, pooling, parameter counts and backpropagation through each layer"),
    ReferenceDocument("002", "002_51c52be4557c38c6.txt", "Convolution and pooling, worked by hand",
                      "a 3×3 convolution with a 2×2 kernel and max, average and global pooling, every gradient "
                      "written out with the upstream gradient a b c d"),
    ReferenceDocument("003", "003_f833b9c4f4f72d5b.txt", "A collection of CNN formulas",
                      "convolution and cross-correlation, dilation, pooling (adaptive too), activations and their "
                      "derivatives, parameter counts, normalization forward and backward, initialization, dropout, "
                      "transposed and separable convolution, optimizers and learning-rate schedules, and more "
                      "(architectures, losses and metrics symcnn does not have)"),
    ReferenceDocument("004", "004_2c23774dca2d8cc5.txt", "A small CNN, forward and backward",
                      "a network for 32×32×3 images (conv, ReLU, max pool, flatten, dense, softmax cross-entropy), "
                      "its forward pass and its whole backward pass"),
)

#: Each document's file name by number: ``DOCUMENTS["002"]``.
DOCUMENTS: dict[str, str] = {document.number: document.file_name for document in REFERENCE_DOCUMENTS}

_BY_KEY = {key: document for document in REFERENCE_DOCUMENTS for key in (document.number, document.file_name)}


def reference(number_or_file_name: str) -> ReferenceDocument:
    """The document with this number (``"002"``) or file name."""
    try:
        return _BY_KEY[number_or_file_name]
    except KeyError:
        raise ValueError(f"document: no reference document {number_or_file_name!r}; "
                         f"choose from {', '.join(DOCUMENTS)}") from None


def describe(number_or_file_name: str) -> str:
    """``document 002, “Convolution and pooling, worked by hand”``: how text names a document."""
    return reference(number_or_file_name).label


def by_document(items: Iterable[Item], file_name: Callable[[Item], str]) -> list[tuple[ReferenceDocument, list[Item]]]:
    """``items`` grouped by their document (``file_name(item)``), in the order the documents first appear.

    >>> [(document.number, len(group)) for document, group in by_document(["a", "b", "c"], lambda item: "002"
    ...                                                                     if item != "b" else "001")]
    [('002', 2), ('001', 1)]
    """
    groups: dict[str, list] = {}
    for item in items:
        groups.setdefault(file_name(item), []).append(item)
    return [(reference(name), group) for name, group in groups.items()]
