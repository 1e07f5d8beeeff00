"""Template keys are built without deep copies (issue 16: the copies were a third of a Deployment's
first reconcile at start-up); they must equal the keys of the deep-copying definitions exactly,
and never change the template they read."""
from __future__ import annotations

import copy
import json

import pytest

from reconciler.controllers.deployment.templates import _with_digest, template_key
from reconciler.core import objects as o
from reconciler.core.keys import ANN_CONFIG_HASH, LABEL_TEMPLATE_HASH


def reference_key(template: dict) -> str:
    return json.dumps(o.template_without_hash(template), sort_keys=True, separators=(",", ":"))


def reference_effective(template: dict, digest: str | None) -> dict:
    t = copy.deepcopy(template)
    if digest:
        t.setdefault("metadata", {}).setdefault("annotations", {})[ANN_CONFIG_HASH] = digest
    return t


TEMPLATES = [
    {},
    {"spec": {"containers": [{"name": "a", "image": "x"}]}},
    {"metadata": {"labels": {"app": "web", LABEL_TEMPLATE_HASH: "abc"}}, "spec": {"containers": []}},
    {"metadata": {"labels": {LABEL_TEMPLATE_HASH: "abc"}, "annotations": {"k": "v"}}},
    {"metadata": {"labels": {}, "annotations": {ANN_CONFIG_HASH: "old"}}},
    {"metadata": {"name": "x"}},
]


@pytest.mark.parametrize("template", TEMPLATES)
@pytest.mark.parametrize("digest", [None, "", "d1"])
def test_keys_equal_the_deep_copying_definition_and_leave_the_template_alone(template, digest):
    before = copy.deepcopy(template)
    assert template_key(_with_digest(template, digest)) == reference_key(reference_effective(template, digest))
    assert template_key(template) == reference_key(template)
    assert template == before
