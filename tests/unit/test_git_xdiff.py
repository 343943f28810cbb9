"""Line merges make git's decisions: adjacent edits conflict, identical edits do not,
binary files are never merged line by line; and git's rename similarity score."""

from shared.gitops.renames import MAX_SCORE, detect_renames, similarity
from shared.gitops.linemerge import merge_lines
from shared.gitops.xdiff import diff_hunks, is_binary

BASE = b"a\nb\nc\nd\ne\nf\n"


def test_separate_edits_merge():
    r = merge_lines(BASE, b"A\nb\nc\nd\ne\nf\n", b"a\nb\nc\nd\ne\nF\n")
    assert r.conflicts == [] and r.content == b"A\nb\nc\nd\ne\nF\n"


def test_adjacent_edits_conflict_like_git():
    r = merge_lines(BASE, b"a\nB\nc\nd\ne\nf\n", b"a\nb\nC\nd\ne\nf\n")
    assert len(r.conflicts) == 1
    assert r.conflicts[0]["ours"] == "B\nc\n" and r.conflicts[0]["theirs"] == "b\nC\n"
    assert b"<<<<<<< ours\n" in r.content and b">>>>>>> theirs\n" in r.content


def test_identical_edits_are_not_a_conflict():
    r = merge_lines(BASE, b"a\nX\nY\nd\ne\nf\n", b"a\nX\nY\nd\ne\nf\n")
    assert r.conflicts == [] and r.content == b"a\nX\nY\nd\ne\nf\n"


def test_overlapping_edits_that_end_the_same_are_resolved():
    ours = b"a\nX\nc\nZ\ne\nf\n"   # two separate hunks
    theirs = b"a\nX\nc\nZ\ne\nf\n"
    assert merge_lines(BASE, ours, theirs).conflicts == []


def test_insertions_at_the_same_place_conflict():
    r = merge_lines(BASE, b"a\nb\nc\nours\nd\ne\nf\n", b"a\nb\nc\ntheirs\nd\ne\nf\n")
    assert [c["base"] for c in r.conflicts] == [""]


def test_missing_final_newline_is_kept():
    r = merge_lines(b"a\nb\nc", b"A\nb\nc", b"a\nb\nC")
    assert r.content == b"A\nb\nC" and r.conflicts == []


def test_diff_slides_groups_down_like_xdiff():
    # deleting one of two identical blocks: git reports the later one as removed
    assert diff_hunks([1, 2, 1, 2, 3], [1, 2, 3]) == [(2, 2, 2, 0)]


def test_binary_detection():
    assert is_binary(b"abc\0def") and not is_binary(b"plain text\n")
    assert not is_binary(b"x" * 9000 + b"\0")  # git only looks at the first 8000 bytes


def test_similarity_and_rename_pairing():
    text = b"".join(b"line %d of the original file\n" % i for i in range(40))
    edited = text.replace(b"line 3 ", b"LINE 3 ")
    assert similarity(text, text) == MAX_SCORE
    assert MAX_SCORE // 2 < similarity(text, edited) < MAX_SCORE
    assert similarity(text, b"completely different\n" * 40) < MAX_SCORE // 2
    blobs = {b"s1": text, b"d1": edited, b"d2": b"unrelated\n" * 40}
    renames = detect_renames({"old.txt": (0o100644, b"s1")},
                             {"new.txt": (0o100644, b"d1"), "other.txt": (0o100644, b"d2")},
                             relevant={"old.txt"}, read_blob=blobs.__getitem__)
    assert renames == {"old.txt": "new.txt"}
    # not relevant to the merge and not identical: git does not look for it either
    assert detect_renames({"old.txt": (0o100644, b"s1")}, {"new.txt": (0o100644, b"d1")},
                          relevant=set(), read_blob=blobs.__getitem__) == {}
