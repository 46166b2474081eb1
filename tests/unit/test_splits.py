"""Grouped splits: duplicate texts and given groups on one side, labels spread over folds."""

import numpy as np

from ouroboros.splits import duplicate_groups, duplicate_key, grouped_folds


def test_duplicate_key_ignores_who_posted_and_how():
    tweet = "These hoes ain't loyal"
    variants = ["RT @someone: these hoes ain't loyal", "these hoes ain't loyal http://t.co/x1",
                '"@other: These hoes ain\'t loyal."', "THESE HOES AIN'T LOYAL!!"]
    assert {duplicate_key(v) for v in variants} == {duplicate_key(tweet)}
    assert duplicate_key("these hoes are loyal") != duplicate_key(tweet)
    assert duplicate_key("art is long") == "art is long"  # "rt" only as a leading word


def test_duplicate_groups_merge_keys_and_given_groups_transitively():
    texts = ["a dog runs", "A dog runs!", "a cat", "a cow", "a cow"]
    ids = duplicate_groups(texts, groups=[0, 1, 1, 2, 3])
    assert ids[0] == ids[1] == ids[2] != ids[3] == ids[4]
    pairs = [("x", "ein Hund"), ("X!", "Ein Hund"), ("x", "eine Katze")]
    ids = duplicate_groups(pairs)
    assert ids[0] == ids[1] != ids[2]


def test_grouped_folds_keep_groups_whole_and_spread_each_label():
    groups = np.repeat(np.arange(120), 3)             # 120 groups of 3 rows
    labels = np.repeat((np.arange(120) < 20).astype(int), 3)  # 20 groups labelled 1
    fold = grouped_folds(groups, 5, np.random.default_rng(0), strata=labels)
    assert all(len(set(fold[groups == g])) == 1 for g in range(120))
    assert [int((fold[labels == 1] == f).sum()) for f in range(5)] == [12] * 5  # 4 groups each
    assert np.bincount(fold).tolist() == [72] * 5
    assert (fold == grouped_folds(groups, 5, np.random.default_rng(0), strata=labels)).all()
    assert (fold != grouped_folds(groups, 5, np.random.default_rng(1), strata=labels)).any()
