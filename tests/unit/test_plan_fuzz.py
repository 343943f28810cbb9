"""Bad input, generated: random plan structures (wrong types, unicode, cycles, odd sizes) through
`yokeflow plan check` end in a verdict and an exit code, never a traceback or a hang."""

from __future__ import annotations

import contextlib
import io
import json

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from yokeflow.cli import main

scalars = st.one_of(st.none(), st.booleans(), st.integers(-10**6, 10**6), st.floats(allow_nan=True),
                    st.text(max_size=20))
junk = st.recursive(scalars, lambda inner: st.one_of(st.lists(inner, max_size=4),
                                                    st.dictionaries(st.text(max_size=8), inner, max_size=4)),
                    max_leaves=12)
ids = st.one_of(st.text(min_size=0, max_size=6), st.integers(0, 5), st.sampled_from(["a", "b", "c", "一", "二"]))
task = st.fixed_dictionaries({"id": ids}, optional={
    "title": st.one_of(st.text(max_size=30), junk), "depends_on": st.one_of(st.lists(ids, max_size=3), junk),
    "dependency_type": st.one_of(st.sampled_from(["hard", "soft"]), junk), "tests": st.one_of(
        st.lists(st.text(max_size=10), max_size=2), junk), "priority": junk, "complexity": junk, "files": junk,
    "domain": junk, "estimate_minutes": junk, "description": st.text(max_size=50)})
epic = st.fixed_dictionaries({"id": ids, "tasks": st.one_of(st.lists(task, max_size=5), junk)},
                             optional={"name": st.text(max_size=10), "depends_on": st.one_of(st.lists(ids), junk)})
plans = st.one_of(junk, st.fixed_dictionaries({"name": st.one_of(st.text(max_size=10), junk),
                                               "epics": st.one_of(st.lists(epic, max_size=4), junk)}))


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(plan=plans)
def test_plan_check_gives_a_verdict_for_any_structure(tmp_path, plan):
    path = tmp_path / "plan.json"
    path.write_text(json.dumps(plan))
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main(["plan", "check", str(path), "--json"])
    assert code in (0, 2), (code, err.getvalue())
    verdict = json.loads(out.getvalue())
    assert verdict["valid"] is (code == 0)
    assert "Traceback" not in err.getvalue()
