"""The explained score the CAM function differentiates: picked by a mask, one per image."""

from __future__ import annotations

import keras
import numpy as np

from cam_callback.core.engine import pick_scores


def test_pick_scores_sums_the_chosen_scores_and_ignores_the_others():
    probs = np.array([[0.1, 0.7, 0.2], [0.5, 0.3, 0.2], [0.2, 0.2, 0.6]], np.float32)
    # NaN and inf in classes that are not explained must not reach the sum (a mask
    # multiplied by the scores would turn 0 * NaN into NaN).
    scores = np.array([[1.5, -2.0, np.nan], [np.inf, 4.25, 0.5], [0.125, -np.inf, 3.0]], np.float32)
    targets = np.array([-1, 1, 0], np.int32)  # -1: the predicted class
    chosen, total = pick_scores(probs, scores, targets)
    np.testing.assert_array_equal(keras.ops.convert_to_numpy(chosen), [1, 1, 0])
    assert float(keras.ops.convert_to_numpy(total)) == -2.0 + 4.25 + 0.125
