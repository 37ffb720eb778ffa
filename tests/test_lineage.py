"""The weights fingerprint and the rule for continuing a record, on hand-made ledgers."""

from __future__ import annotations

import re

import keras
import numpy as np
import pytest
from conftest import small_cnn

from cam_callback.core import fingerprint
from cam_callback.core.fingerprint import weights_fingerprint
from cam_callback.tracker.lineage import decide, final_weights_epoch


def test_fingerprint_is_the_weights_bit_for_bit():
    model = small_cnn(3, bn=True)
    twin = small_cnn(3, bn=True)
    first = weights_fingerprint(model)
    assert first == weights_fingerprint(model) and len(first) == 16
    assert weights_fingerprint(twin) != first  # another initialisation
    twin.set_weights(model.get_weights())  # what a checkpoint restores
    assert weights_fingerprint(twin) == first
    # One sampled value of one array, and a non-trainable statistic, each change it.
    weights = model.get_weights()
    weights[0].reshape(-1)[0] += np.float32(1e-6)
    twin.set_weights(weights)
    assert weights_fingerprint(twin) != first
    stats = model.get_layer("bn").moving_variance
    twin.set_weights(model.get_weights())
    twin.get_layer("bn").moving_variance.assign(stats.numpy() * 2)
    assert weights_fingerprint(twin) != first


def test_fingerprint_reads_every_value_of_a_kernel(monkeypatch):
    inp = keras.Input((64,))
    model = keras.Model(inp, keras.layers.Dense(128)(inp))  # a 64x128 kernel: 8192 values
    first = weights_fingerprint(model)
    original = model.get_weights()
    w = [a.copy() for a in original]
    w[0].reshape(-1)[1] += 123.0  # off the old stride of ceil(8192 / 4096) = 2: never read
    model.set_weights(w)
    assert weights_fingerprint(model) != first
    model.set_weights(original)  # back, bit for bit
    assert weights_fingerprint(model) == first
    # Hashed in slices (CHUNK bytes), the digest is the same as in one piece.
    monkeypatch.setattr(fingerprint, "CHUNK", 1000)
    assert weights_fingerprint(model) == first


LEDGER = {-1: "w_init", 0: "w0", 1: "w1", 2: "w2"}
RECORDED = [-1, 0, 1, 2]


def test_decide_continues_from_the_last_epoch():
    plan = decide("w2", LEDGER, RECORDED, 3, log_dir="r")
    assert (plan.kind, plan.after, plan.set_aside, plan.next_epoch) == ("continue", 2, (), 3)
    assert decide("x", {}, [], 0, log_dir="r").kind == "new"


def test_decide_sets_later_epochs_aside_from_an_earlier_epoch():
    plan = decide("w0", LEDGER, RECORDED, 1, log_dir="r")
    assert (plan.kind, plan.after, plan.set_aside, plan.next_epoch) == ("continue", 0, (1, 2), 1)
    # Seen but not recorded (every_n_epochs): the fingerprints still place the weights.
    plan = decide("w1", LEDGER, [-1, 2], 2, log_dir="r")
    assert (plan.after, plan.set_aside) == (1, (2,))
    # The seeded script run again: the state before training, every epoch set aside.
    plan = decide("w_init", LEDGER, RECORDED, 0, log_dir="r")
    assert (plan.after, plan.set_aside, plan.next_epoch) == (-1, (0, 1, 2), 0)


@pytest.mark.parametrize(
    ("weights", "start", "pattern"),
    [
        ("fresh", 3, "not those of any epoch.*overwrite=True.*new `log_dir`"),
        ("w2", 2, r"already holds epochs up to 2 .*initial_epoch=3"),
        ("w0", 0, r"already holds epochs up to 0 .*initial_epoch=1"),
        ("w0", 3, r"claim 2 epoch\(s\) of training that did not happen.*initial_epoch=1"),
    ],
)
def test_decide_refuses_with_the_fix(weights, start, pattern):
    plan = decide(weights, LEDGER, RECORDED, start, log_dir="r")
    assert plan.kind == "refuse" and plan.set_aside == ()
    assert re.search(pattern, plan.message), plan.message


def test_decide_for_the_same_tracker_renumbers_and_knows_its_own_weights():
    plan = decide("w2", LEDGER, RECORDED, 0, log_dir="r", renumber=True)
    assert (plan.kind, plan.next_epoch) == ("continue", 3)
    # Trained on after recording stopped (a full disk): the tracker saw those weights.
    plan = decide("w9", LEDGER, RECORDED, 0, log_dir="r", own=(9, "w9"), renumber=True)
    assert (plan.kind, plan.after, plan.set_aside, plan.next_epoch) == ("continue", 9, (), 10)
    assert decide("w8", LEDGER, RECORDED, 0, log_dir="r", own=(9, "w9"), renumber=True).kind == (
        "refuse"
    )


def test_decide_on_a_record_without_fingerprints_checks_the_numbering_only():
    plan = decide("any", {}, [-1, 0, 1], 2, log_dir="r")
    assert (plan.kind, plan.after, plan.next_epoch) == ("continue", 1, 2)
    assert "not checked" in plan.message
    assert decide("any", {}, [-1, 0, 1], 1, log_dir="r").kind == "refuse"


def test_final_weights_epoch_follows_a_later_early_stopping():
    seen = {0: "a", 1: "b", 2: "c"}
    assert final_weights_epoch("b", seen, [], 0) == 1
    assert final_weights_epoch("z", seen, [], 0) is None
    stopper = keras.callbacks.EarlyStopping(restore_best_weights=True)
    stopper.best_weights, stopper.best_epoch = ["w"], 0
    # Listed after the tracker, it restores epoch 0 once the tracker's on_train_end is done.
    assert final_weights_epoch("c", seen, [stopper], 5) == 5
    stopper.restore_best_weights = False
    assert final_weights_epoch("c", seen, [stopper], 5) == 2
