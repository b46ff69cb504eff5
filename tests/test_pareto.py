"""The one Pareto rule that the search's and the ablation's reports share."""
import pandas as pd

from nas.pareto import pareto_front


def test_the_front_keeps_what_nothing_else_is_both_as_accurate_and_as_fast_as():
    frame = pd.DataFrame({"acc": [0.5, 0.6, 0.6, 0.7, None, 0.65], "ms": [1.0, 1.0, 2.0, 3.0, 0.5, 3.0]},
                         index=list("abcdef"))
    front = pareto_front(frame, "acc", "ms")
    # b beats a (as fast, more accurate) and c (faster, as accurate); d beats f; e has no accuracy
    assert list(front.index) == ["b", "d"]
