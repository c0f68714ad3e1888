"""Release bodies stored by an earlier version read back as they were answered.

``data/stored_bodies_0304dd8.json`` holds, for eight releases (pure and zCDP; count,
unit_count, sum, mean, quantile; explicit costs, accuracy-first and automatic bounds), the
body that commit 0304dd8 (before the typed release model) stored, the fresh answer it gave
and its answer to a re-read. Reading the stored body with today's model and answering it
again must give exactly the JSON that version gave for the re-read.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from api.release_body import QueryResponse, QuerySummary
from privacy.amount import PrivacyAmount

RECORDS: list[dict[str, Any]] = json.loads(
    (Path(__file__).parent / "data" / "stored_bodies_0304dd8.json").read_text()
)


def _ids(record: dict[str, Any]) -> str:
    fresh = record["fresh"]
    return f"{fresh['statistic']}-{fresh['cost']['model']}-{fresh['query']['privacy']}"


@pytest.mark.parametrize("record", RECORDS, ids=[_ids(r) for r in RECORDS])
def test_an_old_stored_body_is_re_read_as_it_was(record: dict[str, Any]) -> None:
    before = record["reread"]
    remaining = PrivacyAmount.from_document(before["budget_remaining"], before["cost"]["model"])
    again = QueryResponse.stored(record["stored"]).answered_again(remaining)
    # a body stored before dataset versions existed is a release on version 1
    assert json.loads(again.model_dump_json()) == {**before, "dataset_version": 1}


@pytest.mark.parametrize("record", RECORDS, ids=[_ids(r) for r in RECORDS])
def test_an_old_stored_body_is_listed_and_its_rows_are_the_fresh_ones(
    record: dict[str, Any],
) -> None:
    summary = json.loads(QuerySummary.stored(record["stored"]).model_dump_json())
    assert summary.pop("dataset_version") == 1  # stored before versions existed
    fresh = record["fresh"]
    assert summary == {key: fresh[key] for key in summary}
    assert QueryResponse.stored(record["stored"]).rows == fresh["rows"]
