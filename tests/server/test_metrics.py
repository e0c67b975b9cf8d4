"""``/metrics`` through prometheus_client's own parser, against a real server after real work:
HTTP requests by route template, a job, a SQL query, stored objects. Endpoints' metrics are
tested with a real endpoint in tests/serving/test_endpoints.py; the dashboard that reads all
of them in tests/test_grafana.py."""

from __future__ import annotations

import json
import re
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.samples import Sample

from tests.services import Cumulo, start_cumulo


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cumulo]:
    cumulo = start_cumulo(tmp_path_factory.mktemp("metrics") / ".cumulo")
    yield cumulo
    cumulo.stop()


def scrape(server: Cumulo, token: str | None = None) -> dict[str, list[Sample]]:
    """Every sample of /metrics, by family name, as Prometheus would read them."""
    answer = httpx.get(f"{server.url}/metrics",
                       headers={"Authorization": f"Bearer {token or server.token}"})
    assert answer.status_code == 200, answer.text
    assert answer.headers["content-type"].startswith("text/plain; version=0.0.4")
    return {family.name: family.samples
            for family in text_string_to_metric_families(answer.text)}


def value(samples: list[Sample], name: str, **labels: str) -> float:
    """The one sample ``name`` with these labels (among others), or 0 if none yet."""
    found = [s.value for s in samples
             if s.name == name and all(s.labels.get(k) == v for k, v in labels.items())]
    assert len(found) <= 1, (name, labels, found)
    return found[0] if found else 0.0


def test_http_requests_are_counted_by_route_template_and_timed(server: Cumulo) -> None:
    auth = {"Authorization": f"Bearer {server.token}"}
    route = "/api/v1/jobs/{job_id}"
    before = scrape(server)
    for _ in range(3):  # three different paths, one route
        job = uuid.uuid4().hex[:12]
        assert httpx.get(f"{server.url}/api/v1/jobs/{job}", headers=auth).status_code == 404
    after = scrape(server)
    http = "cumulo_http_requests"
    assert value(after[http], f"{http}_total", method="GET", route=route, status="404") - \
        value(before[http], f"{http}_total", method="GET", route=route, status="404") == 3
    # never a raw path: the number of series stays that of the routes
    assert not [s for s in after[http] if "/api/v1/jobs/" in s.labels["route"]
                and "{" not in s.labels["route"]]
    seconds = "cumulo_http_request_duration_seconds"
    count = value(after[seconds], f"{seconds}_count", method="GET", route=route)
    assert count - value(before[seconds], f"{seconds}_count", method="GET", route=route) == 3
    buckets = [s for s in after[seconds] if s.name == f"{seconds}_bucket"
               and s.labels["route"] == route]
    assert buckets[-1].labels["le"] == "+Inf" and buckets[-1].value == count
    assert [b.value for b in buckets] == sorted(b.value for b in buckets)  # cumulative
    assert value(after[seconds], f"{seconds}_sum", method="GET", route=route) > 0
    # a path no route knows is one series, whatever the path
    httpx.get(f"{server.url}/nothing/{uuid.uuid4().hex}", headers=auth)
    assert value(scrape(server)[http], f"{http}_total", route="unmatched", status="404") >= 1


def test_a_job_and_a_sql_query_move_their_metrics(server: Cumulo) -> None:
    c = server.client()
    before = scrape(server)
    job = c.jobs.run(command=["python", "-c", "pass"]).wait(120)
    assert job["state"] == "succeeded"
    db = "m_" + uuid.uuid4().hex[:6]
    c.tables.create_database(db)
    c.tables.load(f"{db}.t", b"id,v\n1,a\n2,b\n3,c\n", format="csv")
    result = c.sql(f"select count(*) n from {db}.t")
    assert result.page == [{"n": 3}] and result.bytes_scanned
    with pytest.raises(Exception, match=r"does not exist|no table"):
        c.sql(f"select * from {db}.missing")
    after = scrape(server)
    ended = "cumulo_jobs_ended"
    assert value(after[ended], f"{ended}_total", cluster="local", state="succeeded") - \
        value(before.get(ended, []), f"{ended}_total", cluster="local", state="succeeded") == 1
    duration = "cumulo_job_duration_seconds"
    assert value(after[duration], f"{duration}_count", state="succeeded") == 1 + value(
        before[duration], f"{duration}_count", state="succeeded")
    assert value(after[duration], f"{duration}_bucket", state="succeeded", le="+Inf") >= 1
    # the queue now: every unfinished state shows, at 0 when empty
    assert {s.labels["state"] for s in after["cumulo_jobs"]} == {"queued", "starting",
                                                                 "running"}
    queries = "cumulo_sql_queries"
    assert value(after[queries], f"{queries}_total", state="succeeded") - value(
        before[queries], f"{queries}_total", state="succeeded") >= 1
    assert value(after[queries], f"{queries}_total", state="failed") - value(
        before[queries], f"{queries}_total", state="failed") == 1
    scanned = "cumulo_sql_bytes_scanned"
    assert value(after[scanned], f"{scanned}_total") - value(
        before[scanned], f"{scanned}_total") >= result.bytes_scanned
    sql_seconds = "cumulo_sql_query_duration_seconds"
    assert value(after[sql_seconds], f"{sql_seconds}_count") - value(
        before[sql_seconds], f"{sql_seconds}_count") >= 2
    c.tables.drop_database(db, cascade=True)


def test_storage_bytes_and_objects_by_bucket(server: Cumulo) -> None:
    c = server.client()
    bucket = "metrics-" + uuid.uuid4().hex[:8]
    c.files.create_bucket(bucket)
    assert value(scrape(server)["cumulo_storage_objects"], "cumulo_storage_objects",
                 bucket=bucket) == 0
    c.files.upload(b"x" * 1000, f"{bucket}/a.bin")
    c.files.upload(b"y" * 24, f"{bucket}/b/c.bin")
    after = scrape(server)
    assert value(after["cumulo_storage_objects"], "cumulo_storage_objects", bucket=bucket) == 2
    assert value(after["cumulo_storage_bytes"], "cumulo_storage_bytes", bucket=bucket) == 1024


def test_every_family_is_declared_with_its_type(server: Cumulo) -> None:
    """Counters, histograms and gauges, as the dashboard's queries expect them; the services'
    counters show even before anything moved them."""
    answer = httpx.get(f"{server.url}/metrics",
                       headers={"Authorization": f"Bearer {server.token}"})
    types = {f.name: f.type for f in text_string_to_metric_families(answer.text)}
    for name, kind in {
        "cumulo_http_requests": "counter", "cumulo_http_request_duration_seconds": "histogram",
        "cumulo_jobs": "gauge", "cumulo_jobs_ended": "counter",
        "cumulo_job_duration_seconds": "histogram", "cumulo_sql_queries": "counter",
        "cumulo_sql_bytes_scanned": "counter", "cumulo_sql_query_duration_seconds": "histogram",
        "cumulo_storage_bytes": "gauge", "cumulo_storage_objects": "gauge",
        "cumulo_endpoint_requests": "counter", "cumulo_endpoint_errors": "counter",
        "cumulo_endpoint_latency_seconds": "histogram", "cumulo_endpoint_replicas": "gauge",
        "cumulo_endpoint_scaling_decisions": "counter", "cumulo_pipeline_runs": "counter",
    }.items():
        assert types.get(name) == kind, (name, types.get(name))


def test_metrics_need_a_token_allowed_to_read_them(server: Cumulo) -> None:
    assert httpx.get(f"{server.url}/metrics").status_code == 401
    bad = httpx.get(f"{server.url}/metrics", headers={"Authorization": "Bearer cml_nope"})
    assert bad.status_code == 401
    server.add_user("prom-dev", "cml_prom-dev-0123456789abcdef0123", role="developer")
    refused = httpx.get(f"{server.url}/metrics",
                        headers={"Authorization": "Bearer cml_prom-dev-0123456789abcdef0123"})
    assert refused.status_code == 403 and "metrics:Read" in refused.text
    # a viewer reads everything, metrics included: what Prometheus' token should be
    server.add_user("prometheus", "cml_prometheus-0123456789abcdef01", role="viewer")
    assert "cumulo_http_requests" in scrape(server, "cml_prometheus-0123456789abcdef01")


DASHBOARD = Path(__file__).parents[2] / "docs" / "grafana" / "cumulo.json"


def test_the_grafana_dashboard_reads_only_what_the_server_exports(server: Cumulo) -> None:
    dashboard = json.loads(DASHBOARD.read_text())
    assert dashboard["title"] and dashboard["uid"] and isinstance(dashboard["schemaVersion"], int)
    variables = {v["name"]: v for v in dashboard["templating"]["list"]}
    assert variables["datasource"]["type"] == "datasource"
    assert variables["datasource"]["query"] == "prometheus"
    panels = dashboard["panels"]
    assert len({p["id"] for p in panels}) == len(panels)  # ids unique
    exprs = []
    for panel in panels:
        box = panel["gridPos"]
        assert box["x"] + box["w"] <= 24 and box["h"] > 0, panel["title"]
        if panel["type"] == "row":
            continue
        assert panel["type"] in ("timeseries", "stat"), panel["title"]
        assert panel["datasource"] == {"type": "prometheus", "uid": "${datasource}"}
        refs = [t["refId"] for t in panel["targets"]]
        assert refs and len(set(refs)) == len(refs), panel["title"]
        exprs += [t["expr"] for t in panel["targets"]]
    # What /metrics has: each family's series names, by its type.
    answer = httpx.get(f"{server.url}/metrics",
                       headers={"Authorization": f"Bearer {server.token}"})
    exported = set()
    for family in text_string_to_metric_families(answer.text):
        exported |= {family.name} if family.type == "gauge" else \
            {f"{family.name}_total"} if family.type == "counter" else \
            {f"{family.name}_{end}" for end in ("bucket", "sum", "count")}
    used = {name for expr in exprs for name in re.findall(r"\bcumulo_[a-z0-9_]+", expr)}
    assert used and used <= exported, used - exported
    # Counters only through rate() or increase(); histograms only through histogram_quantile.
    for expr in exprs:
        for match in re.finditer(r"\bcumulo_[a-z0-9_]+_(total|bucket)\b", expr):
            assert re.search(r"(rate|increase)\($", expr[:match.start()]), expr
            if match.group(1) == "bucket":
                assert expr.startswith("histogram_quantile("), expr
    # Every family the server exports is on the dashboard but the few kept for scripts.
    shown = {re.sub(r"_(total|bucket|sum|count)$", "", name) for name in used}
    families = {f.name for f in text_string_to_metric_families(answer.text)
                if f.name.startswith("cumulo_")}
    assert families - shown == set(), families - shown


def test_a_pipeline_run_is_counted_by_its_final_state(server: Cumulo) -> None:
    from tests.pipelines.test_definition import DOC

    c = server.client()
    name = "metrics-" + uuid.uuid4().hex[:6]
    c.pipelines.create({**DOC, "name": name})
    runs = "cumulo_pipeline_runs"
    assert value(scrape(server)[runs], f"{runs}_total", pipeline=name) == 0
    run = c.pipelines.run(name, wait=True, timeout=180)  # its source files do not exist
    assert run["state"] == "failed", run
    assert value(scrape(server)[runs], f"{runs}_total", pipeline=name, state="failed") == 1
