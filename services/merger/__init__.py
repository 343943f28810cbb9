"""Merger: merges finished branches into the target branch, reports conflicts, cleans up."""
