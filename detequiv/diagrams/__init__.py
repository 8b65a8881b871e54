"""Stage 1, diagrams: non-crossing partitions, trace words and their planar diagrams.

No sympy here: pure combinatorics, with networkx as the graph boundary.

>>> from detequiv.diagrams import catalan, noncrossing_partitions
>>> sum(1 for _ in noncrossing_partitions(7)) == catalan(7)
True
"""

from .drawing import draw_blocks as draw_blocks
from .drawing import draw_diagram as draw_diagram
from .graphs import automorphism_count as automorphism_count
from .graphs import is_isomorphic as is_isomorphic
from .graphs import isomorphism_classes as isomorphism_classes
from .maps import Map as Map
from .partitions import NCPartition as NCPartition
from .partitions import catalan as catalan
from .partitions import crossing_pair as crossing_pair
from .partitions import is_noncrossing as is_noncrossing
from .partitions import iter_label_batches as iter_label_batches
from .partitions import iter_set_partitions as iter_set_partitions
from .partitions import kreweras_count as kreweras_count
from .partitions import moebius as moebius
from .partitions import narayana as narayana
from .partitions import noncrossing_partitions as noncrossing_partitions
from .words import Diagram as Diagram
from .words import Letter as Letter
from .words import TraceWord as TraceWord

__all__ = [
    "NCPartition",
    "noncrossing_partitions",
    "iter_label_batches",
    "catalan",
    "narayana",
    "kreweras_count",
    "moebius",
    "iter_set_partitions",
    "is_noncrossing",
    "crossing_pair",
    "Letter",
    "TraceWord",
    "Diagram",
    "Map",
    "isomorphism_classes",
    "is_isomorphic",
    "automorphism_count",
    "draw_blocks",
    "draw_diagram",
]
