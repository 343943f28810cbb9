"""Branch and worktree names can never become paths or bad refs."""

import re

import pytest
from hypothesis import given, strategies as st

from shared.gitops import branch_name, slugify
from shared.gitops.names import worktree_dir_name

SAFE = re.compile(r"^[a-z0-9]+(-[a-z0-9]+)*$")


@pytest.mark.parametrize("text, slug", [
    ("Add login page", "add-login-page"),
    ("../../etc/passwd", "etc-passwd"),
    ("a/b\\c", "a-b-c"),
    ("tab\there\x00nul\x1bescape", "tab-here-nul-escape"),
    ("Crème brûlée", "creme-brulee"),
    ("...", "x"),
    ("", "x"),
    ("--x--", "x"),
])
def test_slugify_examples(text, slug):
    assert slugify(text) == slug


def test_slug_length_is_bounded_without_trailing_dash():
    s = slugify("word " * 50, max_len=12)
    assert len(s) <= 12 and not s.endswith("-")


@given(st.text(), st.integers(min_value=1, max_value=80))
def test_slug_is_always_safe(text, max_len):
    s = slugify(text, max_len=max_len)
    assert SAFE.match(s) and len(s) <= max_len
    assert ".." not in s and "/" not in s


@given(st.text(), st.text())
def test_branch_name_is_kind_slash_one_safe_component(ident, title):
    name = branch_name("task", ident, title)
    kind, rest = name.split("/", 1)
    assert kind == "task" and SAFE.match(rest) and "/" not in rest


def test_branch_name_shape():
    assert branch_name("epic", "E-3", "User accounts & auth") == "epic/e-3-user-accounts-auth"
    assert branch_name("task", "12", "") == "task/12"
    assert branch_name("task", "../x", "../../y") == "task/x-y"
    with pytest.raises(ValueError):
        branch_name("feature", "1", "x")


def test_worktree_dir_name_is_one_component():
    assert worktree_dir_name("../../outside") == "outside"
    assert "/" not in worktree_dir_name("a/b/c")
