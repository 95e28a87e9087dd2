import math

import pytest

from segmentation.wording import (
    representation_grade,
    representation_phrase,
    stability_label,
    structure_warning,
)


@pytest.mark.parametrize(
    ("ratio", "low", "high", "grade"),
    [
        (1.05, 0.90, 1.20, "in proportion"),  # interval covers 1
        (0.50, 0.20, 1.10, "in proportion"),  # large effect, but the interval covers 1
        (0.83, 0.78, 0.88, "slightly under"),
        (0.67, 0.60, 0.75, "slightly under"),  # the band's edge is still slight
        (0.66, 0.60, 0.72, "strongly under"),
        (0.18, 0.12, 0.25, "strongly under"),
        (1.20, 1.10, 1.30, "slightly over"),
        (1.50, 1.40, 1.60, "slightly over"),
        (1.51, 1.40, 1.62, "strongly over"),
        (2.40, 2.10, 2.70, "strongly over"),
        (math.inf, 2.0, math.inf, "in proportion"),  # empty in the population: nothing to say
        (0.0, 0.0, 0.0, "in proportion"),
    ],
)
def test_representation_grade_table(ratio, low, high, grade):
    assert representation_grade(ratio, low, high) == grade


def test_phrase_reads_as_a_sentence():
    assert representation_phrase(0.18, 0.12, 0.25) == "strongly under-represented among customers"
    assert representation_phrase(1.0, 0.9, 1.1) == "in proportion to the population"


@pytest.mark.parametrize(
    ("jaccard", "label"),
    [(0.95, "stable"), (0.85, "stable"), (0.84, "fuzzy"), (0.6, "fuzzy"), (0.59, "unstable"),
     (math.nan, "not measured")],
)  # fmt: skip
def test_stability_labels(jaccard, label):
    assert stability_label(jaccard) == label


@pytest.mark.parametrize(
    ("silhouette", "stabilities", "words"),
    [
        (0.25, [0.9, 0.7], None),
        (0.02, [0.9, 0.9], "mean silhouette 0.02"),
        (0.25, [0.9, 0.55], "1 segment would not"),
        (0.05, [0.5, 0.4], "2 segments would not"),
        (None, [], None),
    ],
)
def test_structure_warning(silhouette, stabilities, words):
    warning = structure_warning(silhouette, stabilities)
    if words is None:
        assert warning is None
    else:
        assert warning.startswith("Weak structure") and words in warning
