"""A failed night says so in its model's own group: one gauge, POSTed beside the last good
night's, best effort, and cleared by the next good night's PUT."""

from __future__ import annotations

import urllib.request
from collections.abc import Callable
from datetime import date
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from core.errors import InputError, PushError, RunError, UnknownModelError
from core.settings import PushSettings
from tasks.day.failure import Attempt, push_failure, reason_of
from tasks.export import pushgateway
from tasks.export.catalogue import RunStamp
from tests import builders, procs
from tests.pushgateway_recorder import FAILURE, failure_labels

DAY = date(2026, 3, 2)
GATEWAY = PushSettings(url="http://127.0.0.1:9091")


def recording(requests: list[tuple[str, str, bytes]]) -> Callable[..., Callable[[], None]]:
    """The `handler=` seam: keeps each request as (method, path, body) and sends nothing."""

    def handler(url, method, timeout, headers, data):
        path = url.removeprefix(GATEWAY.url)
        return lambda: requests.append((method, path, data))

    return handler


def storage_failure() -> RunError:
    try:
        raise OSError("Input/output error")
    except OSError as exc:
        try:
            raise RunError("the data lake or registry kept failing after 4 attempts") from exc
        except RunError as failed:
            return failed


@pytest.mark.parametrize(
    "error, reason",
    [
        (InputError("batch 2026-03-02 lacks column 'carat'"), "input"),
        (InputError("model 'gem' has no version or alias 'production'"), "input"),
        (OSError("Input/output error"), "storage"),  # the fleet's, after its retries
        (storage_failure(), "storage"),  # the nightly flow's one line for it
        (RunError("no scored batch for model=gem batch_date=2026-03-02"), "error"),
        (ZeroDivisionError("division by zero"), "error"),
    ],
)
def test_a_failed_night_pushes_exactly_its_failure_gauge_with_a_fixed_reason(
    error: BaseException, reason: str
) -> None:
    assert reason_of(error) == reason
    requests: list[tuple[str, str, bytes]] = []
    attempt = Attempt("gem", DAY, model_version="v3")
    assert push_failure(GATEWAY, attempt, error, handler=recording(requests)) is None
    (request,) = requests
    assert failure_labels(*request) == {"model": "gem", "model_version": "v3", "reason": reason}


def test_a_failure_before_the_card_was_read_has_an_unknown_version() -> None:
    requests: list[tuple[str, str, bytes]] = []
    error = InputError("model 'gem' has no version or alias 'production'")
    push_failure(GATEWAY, Attempt("gem", DAY), error, handler=recording(requests))
    assert failure_labels(*requests[0])["model_version"] == "unknown"


def test_a_model_the_registry_has_never_heard_of_pushes_no_failure() -> None:
    """A mistyped name would start a group, and a critical alert, for a model that is not."""
    requests: list[tuple[str, str, bytes]] = []
    typo = UnknownModelError("model 'diamond-price' has no version or alias 'production'")
    attempt = Attempt("diamond-price", DAY)
    assert push_failure(GATEWAY, attempt, typo, handler=recording(requests)) is None
    assert requests == []


def test_a_failed_push_or_a_name_not_allowed_pushes_no_failure() -> None:
    requests: list[tuple[str, str, bytes]] = []
    refused = PushError("could not push to the Pushgateway at http://pg:9091 after 4 attempts")
    assert push_failure(GATEWAY, Attempt("gem", DAY), refused, handler=recording(requests)) is None
    bad_name = InputError("model name 'a b' is not allowed")
    push_failure(GATEWAY, Attempt("a b", DAY), bad_name, handler=recording(requests))
    assert requests == []


def test_an_unreachable_pushgateway_is_a_warning_never_an_error_of_its_own() -> None:
    gone = PushSettings(url="http://user:s3cret@127.0.0.1:9")
    warning = push_failure(gone, Attempt("gem", DAY), InputError("bad batch"))
    assert warning is not None
    assert warning.startswith("the failure of gem 2026-03-02 could not be pushed to the ")
    assert "http://***@127.0.0.1:9" in warning and "s3cret" not in warning
    assert warning.endswith("the run's own error follows")


def group(url: str, model: str) -> dict[str, list[dict[str, str]]]:
    """The model's group as the Pushgateway exposes it: metric name -> each sample's labels."""
    with urllib.request.urlopen(f"{url}/metrics", timeout=10) as response:
        text = response.read().decode()
    exposed: dict[str, list[dict[str, str]]] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.labels.get("model") == model:
                exposed.setdefault(sample.name, []).append(sample.labels)
    return exposed


@pytest.mark.e2e
def test_a_real_pushgateway_keeps_the_good_nights_gauges_beside_the_failure_until_the_next_put(
    tmp_path: Path,
) -> None:
    good = builders.result()
    with procs.pushgateway(tmp_path) as gateway:
        settings = PushSettings(url=gateway.url)
        pushgateway.push(good, RunStamp(1.0, 2.0), gateway=gateway.url)
        before = group(gateway.url, good.model)
        assert FAILURE not in before

        attempt = Attempt(good.model, DAY, model_version=good.model_version)
        assert push_failure(settings, attempt, InputError("bad batch")) is None
        after = group(gateway.url, good.model)
        (failure,) = after.pop(FAILURE)
        assert (failure["model_version"], failure["reason"]) == (good.model_version, "input")
        # the good night's gauges are all still there; the POST refreshed push_time_seconds
        assert {n: s for n, s in after.items() if n != "push_time_seconds"} == {
            n: s for n, s in before.items() if n != "push_time_seconds"
        }

        pushgateway.push(good, RunStamp(3.0, 2.0), gateway=gateway.url)
        assert FAILURE not in group(gateway.url, good.model)
