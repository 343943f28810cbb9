"""The one table of who publishes what, and the cluster's NATS configuration that must match it."""

from __future__ import annotations

import json
import re

from shared import events as ev
from shared import identities
from tests.support.k8s import find, render


def test_every_event_type_has_an_owner_and_types_are_named_in_permissions():
    owned = {t for types in identities.PUBLISHES.values() for t in types}
    assert owned == set(ev.EVENT_TYPES.values())
    assert identities.publish_allow("planner").count("*.evt.*.task.*.TaskReady") == 1
    assert not any("TaskReady" in s for who in identities.PUBLISHES if who != "planner"
                   for s in identities.publish_allow(who))
    assert identities.may_publish("merger", "BranchMerged") and not identities.may_publish("executor", "BranchMerged")


def test_connection_names_map_to_identities():
    assert identities.identity_of("yokeflow-planner") == "planner"
    assert identities.identity_of("yokeflow-admin") == "admin"
    assert identities.identity_of("yokeflow-cli") == "cli"
    assert identities.identity_of("yokeflow") == "cli"
    assert identities.identity_of("anything") == "cli"


def test_the_cluster_grants_each_service_exactly_the_table():
    for overlay in ("local", "production"):
        conf = find(render(overlay), "ConfigMap", "nats-config")[0]["data"]["nats.conf"]
        for who in identities.SERVICE_IDENTITIES:
            if who == "cli":
                continue  # people and tools use the cluster's operator identity
            line = re.search(rf"\{{user: {who}, .*\}}", conf)
            assert line, f"{overlay}: no user {who}"
            allow = re.search(r"allow: \[([^\]]*)\]", line.group(0)).group(1)
            assert json.loads(f"[{allow}]") == identities.publish_allow(who), f"{overlay}: {who}"
