"""Log lines in Flux's JSON and console shapes, with reconcile context."""

from __future__ import annotations

import io
import json

import pytest

from imagereflector.log import TRACE, get_logger, log_context, setup_logging


def test_json_line_has_zap_keys_and_context() -> None:
    out = io.StringIO()
    setup_logging(level="info", encoding="json", stream=out)
    with log_context(controller="imagerepository", name="podinfo", namespace="flux"):
        get_logger("test").info("scanned", extra={"fields": {"tags": 3}})
    line = json.loads(out.getvalue())
    assert line["level"] == "info"
    assert line["msg"] == "scanned"
    assert line["ts"].endswith("Z")
    assert (line["controller"], line["name"], line["namespace"], line["tags"]) == (
        "imagerepository", "podinfo", "flux", 3)


def test_levels_filter_and_trace() -> None:
    out = io.StringIO()
    setup_logging(level="info", encoding="json", stream=out)
    get_logger().log(TRACE, "hidden")
    get_logger().debug("hidden too")
    assert out.getvalue() == ""
    setup_logging(level="trace", encoding="json", stream=out)
    get_logger().log(TRACE, "shown")
    assert json.loads(out.getvalue())["level"] == "trace"


def test_console_encoding() -> None:
    out = io.StringIO()
    setup_logging(level="info", encoding="console", stream=out)
    with log_context(name="x"):
        get_logger().error("boom")
    fields = out.getvalue().rstrip("\n").split("\t")
    assert fields[1:3] == ["ERROR", "boom"]
    assert json.loads(fields[3]) == {"name": "x"}


@pytest.mark.parametrize(("level", "encoding"), [("verbose", "json"), ("info", "xml")])
def test_bad_settings_are_clear_errors(level: str, encoding: str) -> None:
    with pytest.raises(ValueError, match="unknown log"):
        setup_logging(level=level, encoding=encoding)
