"""Mining a model's tells: which listed phrases its candidates use, literal senses aside."""

from loadtests.mine_tells import count_tells


def test_tells_are_ranked_by_the_share_of_candidates_using_them_and_literal_senses_do_not_count():
    texts = ["A vibrant, vibrant market.", "The vibrant square.", "Perhaps it rains.",
             "The miners delve for ore in the lode.", "Plain words."]
    rows = {r["phrase"]: r for r in count_tells(texts)}
    assert rows["vibrant"] == {"phrase": "vibrant", "kind": "slop", "candidates_using": 2, "share": 0.4,
                               "occurrences": 3}
    assert rows["perhaps"]["kind"] == "hedge" and rows["perhaps"]["share"] == 0.2
    assert "delve" not in rows  # digging for ore is what delving is
    assert list(rows)[0] == "vibrant"
