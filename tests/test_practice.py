import itertools
import json
import math

import numpy as np
import pytest
from sklearn.metrics import balanced_accuracy_score, f1_score

from camtrap_ssl.train import metrics as M
from camtrap_ssl.train import practice as P


def onehot_probs(pred, conf, n_classes):
    """Probabilities whose argmax is ``pred`` with top probability ``conf`` (rest spread evenly)."""
    pred, conf = np.asarray(pred), np.asarray(conf, dtype=float)
    assert conf.min() > 1 / n_classes  # else the argmax would not be ``pred``
    p = np.tile(((1 - conf) / (n_classes - 1))[:, None], (1, n_classes))
    p[np.arange(pred.size), pred] = conf
    return p


# ------------------------------------------------------------------------------------- sequences

def test_mean_resists_one_confidently_wrong_frame_and_max_follows_it():
    # sequence "s": three frames of class 0 seen moderately, one confidently as class 1
    probs = np.array([[0.8, 0.2], [0.75, 0.25], [0.7, 0.3], [0.02, 0.98]])
    mean = P.aggregate_sequences(probs, [0, 0, 0, 0], ["s"] * 4, "mean")
    top = P.aggregate_sequences(probs, [0, 0, 0, 0], ["s"] * 4, "max")
    assert mean.probs[0] == pytest.approx([0.5675, 0.4325]) and mean.rule == "mean"
    assert top.probs[0] == pytest.approx(probs[3]) and top.rule == "max"
    # the max rule takes the most confident frame's vector, the earlier one on a tie
    probs = np.array([[0.1, 0.9], [0.9, 0.1], [0.5, 0.5]])
    assert P.aggregate_sequences(probs, [0, 0, 0], [7, 7, 7], "max").probs[0] == pytest.approx([0.1, 0.9])


def test_sequence_labels_majority_disagreement_ties_and_given_labels():
    ids = ["b", "b", "a", "a", "a", "c", "c", "d"]
    y = [1, 1, 0, 0, 2, 0, 1, 2]
    probs = np.full((8, 3), 1 / 3)
    s = P.aggregate_sequences(probs, y, ids)
    assert s.ids.tolist() == ["b", "a", "c", "d"]  # order of first appearance
    assert s.n_frames.tolist() == [2, 3, 2, 1]
    assert s.labels.tolist() == [1, 0, -1, 2]  # a: majority 0; c: tie
    assert s.agree.tolist() == [True, False, False, True]
    g = P.aggregate_sequences(probs, y, ids, sequence_labels={"a": 2, "zz": 0})
    assert g.labels.tolist() == [1, 2, -1, 2] and g.agree.tolist() == [True, True, False, True]
    with pytest.raises(ValueError, match="given label 5"):
        P.aggregate_sequences(probs, y, ids, sequence_labels={"a": 5})


def test_sequence_scores_report_disagreeing_sequences_apart():
    names = ["empty", "deer", "fox"]
    ids = [1, 1, 2, 2, 3, 3, 3, 4, 4]
    y = [1, 1, 2, 2, 1, 1, 0, 1, 0]  # 3: deer, deer, empty (walks out); 4: tie
    pred = [1, 1, 1, 2, 1, 1, 0, 0, 0]
    probs = onehot_probs(pred, [0.9, 0.8, 0.6, 0.7, 0.9, 0.9, 0.9, 0.9, 0.9], 3)
    r = P.sequence_scores(probs, y, ids, names)
    assert (r["unit"], r["n_images"], r["n_sequences"], r["n_scored"]) == ("sequence", 9, 4, 2)
    # seq 1 deer -> deer; seq 2 fox: mean of (deer .6, fox .7) picks fox -> right
    assert r["top1"] == pytest.approx(100.0)
    assert r["disagreeing"]["n"] == 2 and r["disagreeing"]["n_tied"] == 1
    assert r["disagreeing"]["ids"] == [3, 4]
    # seq 3 against its majority label deer: mean of (.9 deer, .9 deer, .9 empty) -> deer: right
    assert r["disagreeing"]["against_majority"]["n"] == 1
    assert r["disagreeing"]["against_majority"]["top1"] == pytest.approx(100.0)
    json.dumps(r)  # JSON-serialisable (ids as Python ints)


def test_sequence_scores_match_scikit_learn():
    rng = np.random.default_rng(0)
    for trial in range(10):
        k = int(rng.integers(2, 7))
        n_seq = 40
        seq_label = rng.integers(0, k, n_seq)
        frames = rng.integers(1, 5, n_seq)
        ids = np.repeat(np.arange(n_seq) * 7 + 3, frames)
        y = np.repeat(seq_label, frames)
        logits = rng.normal(size=(y.size, k)) + 1.5 * np.eye(k)[y] * rng.random((y.size, 1))
        probs = M.softmax(logits)
        for rule in P.RULES:
            r = P.sequence_scores(probs, y, ids, [f"c{i}" for i in range(k)], rule)
            s = P.aggregate_sequences(probs, y, ids, rule)
            assert r["n_scored"] == n_seq and r["disagreeing"]["n"] == 0
            pred = s.probs.argmax(1)
            assert s.labels.tolist() == seq_label.tolist()
            assert r["top1"] == pytest.approx(100 * (pred == seq_label).mean())
            assert r["macro_f1"] == pytest.approx(100 * f1_score(
                seq_label, pred, labels=np.unique(seq_label), average="macro", zero_division=0))
            assert r["balanced_acc"] == pytest.approx(100 * balanced_accuracy_score(seq_label, pred))
        # the mean rule by hand for the first sequence
        first = ids == ids[0]
        assert P.aggregate_sequences(probs, y, ids).probs[0] == pytest.approx(probs[first].mean(0))


# ------------------------------------------------------------------------------------ automation

def test_coverage_at_full_accuracy_is_exactly_the_correct_prefix():
    n, k = 50, 17
    conf = np.linspace(0.99, 0.40, n)  # distinct, decreasing
    y = np.zeros(n, dtype=int)
    pred = np.where(np.arange(n) < k, 0, 1)  # the k most confident right, then wrong
    pred[k + 5] = 0  # a later correct one must not extend the coverage at 100 %
    probs = onehot_probs(pred, conf, 3)
    r = P.coverage_at_accuracy(probs, y, target=1.0)
    assert r.reached and r.coverage == pytest.approx(k / n) and r.accuracy == 1.0
    assert r.threshold == pytest.approx(conf[k - 1])
    # shuffled input gives the same answer
    perm = np.random.default_rng(1).permutation(n)
    assert P.coverage_at_accuracy(probs[perm], y[perm], 1.0) == r
    curve = P.coverage_curve(probs, y)
    assert curve.coverage.tolist() == pytest.approx((np.arange(1, n + 1) / n).tolist())
    assert curve.accuracy[k - 1] == 1.0 and curve.accuracy[k] == pytest.approx(k / (k + 1))
    assert curve.risk[-1] == pytest.approx(1 - (k + 1) / n)


def test_exact_target_counts_and_not_reached():
    # 19 of 20 right at one confidence: exactly 0.95 passes a 0.95 target
    probs = onehot_probs([0] * 19 + [1], [0.8] * 20, 2)
    r = P.coverage_at_accuracy(probs, np.zeros(20, dtype=int), 0.95)
    assert r.reached and r.coverage == 1.0 and r.threshold == pytest.approx(0.8)
    # the most confident one is wrong, then 2 of 3 right: best accuracy 2/3 at coverage 1
    probs = onehot_probs([1, 0, 0, 1], [0.9, 0.8, 0.7, 0.6], 2)
    r = P.coverage_at_accuracy(probs, np.zeros(4, dtype=int), 0.95)
    assert not r.reached and r.threshold is None
    assert r.accuracy == pytest.approx(2 / 3) and r.coverage == pytest.approx(3 / 4)
    with pytest.raises(ValueError, match="share"):
        P.coverage_at_accuracy(probs, np.zeros(4, dtype=int), 95)


def test_uninformative_confidence_gives_a_flat_curve_at_the_base_accuracy():
    # every confidence level holds 3 right and 1 wrong: accuracy 0.75 at every threshold
    levels = np.linspace(0.9, 0.5, 10)
    conf = np.repeat(levels, 4)
    pred = np.tile([0, 1, 0, 0], 10)
    probs = onehot_probs(pred, conf, 3)
    y = np.zeros(40, dtype=int)
    curve = P.coverage_curve(probs, y)
    assert curve.thresholds.tolist() == pytest.approx(levels.tolist())
    assert curve.accuracy.tolist() == pytest.approx([0.75] * 10)
    assert curve.coverage.tolist() == pytest.approx((np.arange(1, 11) / 10).tolist())
    # a constant confidence is one point; its AURC is the error rate
    flat = onehot_probs(pred, np.full(40, 0.7), 2)
    assert P.coverage_curve(flat, y).coverage.tolist() == [1.0]
    assert P.aurc(flat, y) == pytest.approx(0.25)
    assert P.aurc(probs, y) == pytest.approx(0.25)


def _aurc_by_definition(conf, wrong):
    order = np.argsort(-conf, kind="stable")
    w = wrong[order]
    return np.mean(np.cumsum(w) / np.arange(1, w.size + 1))


def test_aurc_perfect_ranking_equals_the_closed_form():
    n, e = 200, 30
    conf = np.linspace(0.99, 0.5, n)
    pred = np.r_[np.zeros(n - e, dtype=int), np.ones(e, dtype=int)]
    probs = onehot_probs(pred, conf, 4)
    y = np.zeros(n, dtype=int)
    assert P.aurc(probs, y) == pytest.approx(P.optimal_aurc(n, e))
    closed = sum((k - (n - e)) / k for k in range(n - e + 1, n + 1)) / n
    assert P.optimal_aurc(n, e) == pytest.approx(closed)
    # the large-n limit of Geifman et al. (2019): r + (1 - r) ln(1 - r)
    r = 0.15
    assert P.optimal_aurc(100_000, 15_000) == pytest.approx(r + (1 - r) * math.log(1 - r), abs=1e-4)
    assert P.optimal_aurc(10, 0) == 0.0 and P.optimal_aurc(10, 10) == 1.0
    # the worst ranking (errors first) is far worse
    worst = onehot_probs(pred[::-1], conf, 4)
    assert P.aurc(worst, y) == pytest.approx(_aurc_by_definition(conf, pred[::-1] == 1))
    assert P.aurc(worst, y) > 5 * P.aurc(probs, y)


def test_aurc_matches_the_definition_and_averages_ties():
    rng = np.random.default_rng(3)
    n = 30
    conf = rng.permutation(np.linspace(0.95, 0.3, n))
    pred = (rng.random(n) < 0.3).astype(int)
    y = np.zeros(n, dtype=int)
    assert P.aurc(onehot_probs(pred, conf, 4), y) == pytest.approx(_aurc_by_definition(conf, pred == 1))
    # ties: the mean over every order of the tied images
    conf = np.array([0.9, 0.8, 0.8, 0.8, 0.6, 0.6])
    pred = np.array([0, 1, 0, 1, 1, 0])
    # (the stable sort of the definition keeps the tied images in the order given)
    by_order = [_aurc_by_definition(conf, np.r_[pred[0], pred[1:4][list(pa)], pred[4:][list(pb)]] == 1)
                for pa in itertools.permutations(range(3)) for pb in itertools.permutations(range(2))]
    assert len(set(np.round(by_order, 9))) > 1  # the order of ties matters to a single ordering
    assert P.aurc(onehot_probs(pred, conf, 2), np.zeros(6, dtype=int)) == pytest.approx(np.mean(by_order))


def test_precision_and_recall_at_a_threshold_count_deferred_images_against_recall_only():
    names = ["empty", "deer", "fox"]
    y = np.array([1, 1, 1, 1, 2, 2, 0, 0])
    pred = np.array([1, 1, 2, 1, 2, 1, 0, 1])
    conf = np.array([.95, .9, .92, .5, .97, .4, .99, .93])
    probs = onehot_probs(pred, conf, 3)
    r = P.precision_recall_at_threshold(probs, y, names, 0.9)
    # automated: 0 (deer ok), 1 (deer ok), 2 (fox, wrong), 4 (fox ok), 6 (empty ok), 7 (deer, wrong)
    assert r["coverage"] == pytest.approx(6 / 8) and r["accuracy"] == pytest.approx(4 / 6)
    deer, fox, empty = (r["per_class"][c] for c in ("deer", "fox", "empty"))
    assert deer == {"precision": pytest.approx(2 / 3), "recall": 0.5, "automated": 0.75,
                    "support": 4, "predicted": 3}
    assert fox["precision"] == 0.5 and fox["recall"] == 0.5 and fox["automated"] == 0.5
    assert empty["precision"] == 1.0 and empty["recall"] == 0.5
    nothing = P.precision_recall_at_threshold(probs, y, names, 0.999)
    assert nothing["accuracy"] is None and nothing["per_class"]["deer"]["precision"] is None
    assert nothing["per_class"]["deer"]["recall"] == 0.0
    # empty vs animal among the automated: the fox called deer is still an animal; empty called deer is not
    ea = P.empty_vs_animal_at_threshold(probs, y, names, 0.9)
    assert ea["n_automated"] == 6 and ea["accuracy"] == pytest.approx(5 / 6)
    assert P.empty_vs_animal_at_threshold(probs, y, ["blank", "deer", "fox"], 0.9)["accuracy"] == \
        pytest.approx(5 / 6)
    assert P.empty_vs_animal_at_threshold(probs, y, ["cat", "deer", "fox"], 0.9) is None
    assert P.empty_vs_animal_at_threshold(probs, y, names, 0.999)["accuracy"] is None


# ------------------------------------------------------------------------------------- intervals

def test_weighted_coverage_equals_coverage_on_the_repeated_images():
    rng = np.random.default_rng(5)
    n = 25
    conf = np.round(rng.uniform(0.4, 1, n), 1)  # with ties
    pred = (rng.random(n) < 0.2).astype(int)
    y = np.zeros(n, dtype=int)
    probs = onehot_probs(pred, conf, 3)
    order, ends = P._tie_blocks(probs.max(1))
    correct = (pred == 0).astype(float)
    for _ in range(5):
        w = rng.integers(0, 3, n)
        cov, _ = P._weighted_coverage(correct[order], ends, w[order][None].astype(float), 0.8)
        rep = np.repeat(np.arange(n), w)
        expect = P.coverage_at_accuracy(probs[rep], y[rep], 0.8)
        assert cov[0] == pytest.approx(expect.coverage if expect.reached else 0.0)


def test_bootstrap_interval_names_its_unit_and_resamples_whole_sequences():
    rng = np.random.default_rng(7)
    n = 120
    conf = rng.uniform(0.3, 1, n)
    correct = rng.random(n) < conf  # confident ones are more often right
    probs = onehot_probs(np.where(correct, 0, 1), conf, 5)
    y = np.zeros(n, dtype=int)
    one = P.coverage_at_accuracy_interval(probs, y, 0.9, n_boot=400, seed=0)
    assert one.unit == "image" and one.n_units == n and one.n_boot == 400
    assert one.coverage == pytest.approx(P.coverage_at_accuracy(probs, y, 0.9).coverage)
    assert one.low <= one.coverage <= one.high and one.high - one.low > 0.05
    assert P.coverage_at_accuracy_interval(probs, y, 0.9, n_boot=400, seed=0) == one  # seeded
    # each image repeated as 8 identical frames of one sequence: resampling frames pretends to
    # 8 times the data and narrows the interval; resampling sequences gives back the width
    rep = np.repeat(np.arange(n), 8)
    frames = P.coverage_at_accuracy_interval(probs[rep], y[rep], 0.9, n_boot=400, seed=1)
    seqs = P.coverage_at_accuracy_interval(probs[rep], y[rep], 0.9, sequences=rep, n_boot=400, seed=1)
    locs = P.coverage_at_accuracy_interval(probs[rep], y[rep], 0.9, locations=rep % 4, n_boot=50, seed=1)
    assert seqs.unit == "sequence" and seqs.n_units == n and locs.unit == "location" and locs.n_units == 4
    assert seqs.coverage == frames.coverage == one.coverage
    assert (seqs.high - seqs.low) > 1.8 * (frames.high - frames.low)
    assert (seqs.high - seqs.low) == pytest.approx(one.high - one.low, rel=0.35)
    # all right: coverage 1 in every resample
    sure = P.coverage_at_accuracy_interval(onehot_probs(np.zeros(n, int), conf, 5), y, 0.99, n_boot=50)
    assert (sure.low, sure.high, sure.reached_share) == (1.0, 1.0, 1.0)


def test_inputs_are_checked():
    with pytest.raises(ValueError, match="probabilities"):
        P.coverage_curve(np.array([[2.0, -1.0]]), [0])
    with pytest.raises(ValueError, match="shape"):
        P.coverage_curve(np.array([[0.5, 0.5]]), [0, 1])
    with pytest.raises(ValueError, match="class indices"):
        P.coverage_curve(np.array([[0.5, 0.5]]), [2])
    with pytest.raises(ValueError, match="rule"):
        P.aggregate_sequences(np.array([[0.5, 0.5]]), [0], ["s"], rule="median")
    with pytest.raises(ValueError, match="more than one empty"):
        P.empty_index(["empty", "Blank"])
    assert P.empty_index(["deer", " Blank "]) == 1 and P.empty_index(["deer"]) is None


def test_automation_report_uses_the_target_threshold_and_serialises():
    rng = np.random.default_rng(11)
    n = 200
    conf = rng.uniform(0.4, 1, n)
    correct = rng.random(n) < conf
    y = rng.integers(0, 3, n)
    pred = np.where(correct, y, (y + 1) % 3)
    probs = onehot_probs(pred, conf, 3)
    seqs = np.arange(n) // 4
    r = P.automation_report(probs, y, ["empty", "deer", "fox"], 0.9, sequences=seqs, n_boot=100)
    at = P.coverage_at_accuracy(probs, y, 0.9)
    assert at.reached and r["threshold"] == at.threshold
    assert r["coverage_at_target"]["coverage"] == at.coverage == r["at_threshold"]["coverage"]
    assert r["interval"]["unit"] == "sequence" and r["interval"]["n_units"] == 50
    assert 0 < r["excess_aurc"] < r["aurc"]
    assert r["empty_vs_animal"]["accuracy"] >= r["at_threshold"]["accuracy"] >= 0.9
    json.dumps(r)
    never = P.automation_report(onehot_probs(np.ones(n, int), conf, 3), np.zeros(n, int), ["a", "b", "c"],
                                n_boot=20)
    assert never["threshold"] is None and never["at_threshold"] is None
    assert never["coverage_at_target"]["reached"] is False and never["interval"]["high"] == 0.0
