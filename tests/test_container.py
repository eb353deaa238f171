"""``imgscope container`` against real containers, with the container itself as the oracle.

A container of ``imgscope-test/layers`` runs a scripted set of writes whose
change kinds are known in advance; the report must give exactly those kinds,
sizes equal to ``stat -c %s`` inside the container, and a writable-layer total
equal to Docker's own ``SizeRw``.  Running and stopped containers both work.
"""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
from typing import Any

import pytest

from imgscope import stack as stacking
from imgscope.analysis import container as analysis
from imgscope.errors import ImgscopeError
from imgscope.sources import daemon
from imgscope.sources.common import LoadOptions

pytestmark = pytest.mark.daemon

IMAGE = "imgscope-test/layers:latest"
SCRIPT = """
set -e
echo new > /srv/app/new.txt
echo more >> /srv/app/conf/app.conf
chmod 640 /srv/app/greeting.txt
touch /srv/app/keep.txt
rm /srv/app/blob.bin
rm -r /srv/app/empty
mkdir -p /srv/new/a/b
echo deep > /srv/new/a/b/f.txt
ln -s a/b/f.txt /srv/new/link
ln -sf /elsewhere /srv/app/hello-link
printf 'a\\0c' > /srv/app/binary.dat
echo 'in the volume' > /srv/vol/data
"""
EXPECTED = {
    "/srv/app/new.txt": ("added", "A"),
    "/srv/app/conf/app.conf": ("modified", "C"),
    "/srv/app/greeting.txt": ("metadata", "C"),
    "/srv/app/keep.txt": ("re-shipped", "C"),
    "/srv/app/blob.bin": ("removed", "D"),
    "/srv/app/empty": ("removed", "D"),
    "/srv/new": ("added", "A"),
    "/srv/new/a": ("added", "A"),
    "/srv/new/a/b": ("added", "A"),
    "/srv/new/a/b/f.txt": ("added", "A"),
    "/srv/new/link": ("added", "A"),
    "/srv/app/hello-link": ("modified", "C"),
    "/srv/app/binary.dat": ("modified", "C"),
    "/srv/vol": ("added", "A"),
    "/srv": ("parent", "C"),
    "/srv/app": ("parent", "C"),
    "/srv/app/conf": ("parent", "C"),
}


@pytest.fixture(scope="module")
def written(docker_client: Any, daemon_images: dict[str, str]) -> Iterator[Any]:
    """A running container that has made the scripted writes (and a named volume)."""
    suffix = uuid.uuid4().hex[:8]
    volume = docker_client.volumes.create(f"imgscope-test-vol-{suffix}")
    box = docker_client.containers.run(
        IMAGE,
        ["sleep", "3600"],
        name=f"imgscope-test-{suffix}",
        detach=True,
        network_mode="none",
        volumes={volume.name: {"bind": "/srv/vol", "mode": "rw"}},
    )
    try:
        code, output = box.exec_run(["sh", "-c", SCRIPT])
        assert code == 0, output
        yield box
    finally:
        box.remove(force=True)
        volume.remove(force=True)


def report_of(name: str, batched: bool = True) -> analysis.ContainerReport:
    engine = daemon.connect()
    try:
        image_id = engine.container_attrs(name)["Image"]
        stacked = stacking.build(engine.load(image_id, image_id, LoadOptions()))
        snapshot = engine.container(name, analysis.bytes_below(stacked) if batched else None)
    finally:
        engine.close()
    return analysis.analyse(snapshot, stacked)


def run_cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "imgscope", *args], capture_output=True, text=True, env=dict(os.environ), timeout=300
    )


def test_kinds_are_exactly_the_scripted_ones(written: Any) -> None:
    report = report_of(written.name)
    got = {c.path: (c.kind, c.engine_kind) for c in report.changes}
    assert got == EXPECTED
    vol = report.change("/srv/vol")
    assert vol is not None and "mount point" in vol.note
    assert [m.destination for m in report.mounts] == ["/srv/vol"]


def test_batched_reads_give_the_same_report(written: Any) -> None:
    """Reading changed directories whole (fewer requests) must not change a single fact."""
    assert report_of(written.name, batched=True) == report_of(written.name, batched=False)


def test_sizes_equal_stat_inside_the_container(written: Any) -> None:
    report = report_of(written.name)
    files = [c for c in report.changes if c.current is not None and c.current.type != "dir"]
    code, output = written.exec_run(["stat", "-c", "%s %n", *[c.path for c in files]])
    assert code == 0, output
    stat = {line.split(" ", 1)[1]: int(line.split(" ", 1)[0]) for line in output.decode().splitlines()}
    assert {c.path: c.size for c in files} == stat
    # Image-side sizes of what was removed, from the image's own layers.
    blob = report.change("/srv/app/blob.bin")
    assert blob is not None and blob.size == 65536 and blob.layer == 2  # ENV stores no layer


def test_totals_and_docker_size_rw(written: Any, docker_client: Any) -> None:
    report = report_of(written.name)
    t = report.totals
    assert (t.of("added").count, t.of("added").bytes) == (7, len("new\n") + len("deep\n") + len("a/b/f.txt"))
    assert t.of("modified").bytes == len("line one\nline two\nmore\n") + len("/elsewhere") + 3
    assert t.of("removed").count == 2
    assert t.of("metadata").bytes == len("hello\n")
    assert t.of("re-shipped").bytes == len("keep\n")
    listed = docker_client.api.containers(all=True, size=True, filters={"id": written.id})
    size_rw = listed[0]["SizeRw"]  # what `docker ps --size` shows
    assert t.writable_bytes == size_rw
    sizes = [c.size for c in report.changes]
    assert sizes == sorted(sizes, reverse=True)


def test_cli_json_validates_and_content_diff(written: Any) -> None:
    import jsonschema

    from imgscope.schemas import load_schema

    result = run_cli("container", written.name, "--json", "--content", "/srv/app/conf/app.conf")
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    jsonschema.validate(report, load_schema("container"))
    assert report["container"]["id"] == written.id
    assert report["mounts_excluded"] is True
    content = report["content"]
    assert content["binary"] is False
    assert content["diff"][:2] == ["--- image:/srv/app/conf/app.conf", "+++ container:/srv/app/conf/app.conf"]
    assert "+more" in content["diff"] and " line two" in content["diff"]


def test_content_of_a_binary_file(written: Any) -> None:
    result = run_cli("container", written.name, "--json", "--content", "srv/app/binary.dat")
    assert result.returncode == 0, result.stderr
    content = json.loads(result.stdout)["content"]
    assert content["binary"] is True and content["diff"] == []
    assert content["image"]["size"] == 3 and content["container"]["size"] == 3
    assert content["image"]["hash"] != content["container"]["hash"]


def test_content_errors(written: Any) -> None:
    unchanged = run_cli("container", written.name, "--content", "/bin/busybox")
    assert unchanged.returncode == 2
    assert "has not changed this path" in unchanged.stderr
    directory = run_cli("container", written.name, "--content", "/srv/new")
    assert directory.returncode == 2 and "is a directory" in directory.stderr


def test_console_report(written: Any) -> None:
    result = run_cli("container", written.name, "--no-color")
    assert result.returncode == 0, result.stderr
    out = result.stdout
    assert "re-shipped" in out and "metadata" in out and "removed" in out
    assert "Not included (mounts are outside the writable layer)" in out
    assert "/srv/vol" in out


def test_missing_container(docker_client: Any) -> None:
    result = run_cli("container", "imgscope-test-no-such-container")
    assert result.returncode == 2
    assert result.stderr.startswith(
        "imgscope: error: container imgscope-test-no-such-container not found in the docker"
    )


def test_stopped_container_gives_the_same_report(docker_client: Any, daemon_images: dict[str, str]) -> None:
    box = docker_client.containers.run(
        IMAGE,
        ["sh", "-c", "echo hi > /srv/app/new.txt && rm /srv/app/keep.hardlink"],
        detach=True,
        network_mode="none",
    )
    try:
        assert box.wait(timeout=60)["StatusCode"] == 0
        report = report_of(box.id)
        assert report.status == "exited"
        assert {c.path: c.kind for c in report.changes} == {
            "/srv": "parent",
            "/srv/app": "parent",
            "/srv/app/new.txt": "added",
            "/srv/app/keep.hardlink": "removed",
        }
        removed = report.change("/srv/app/keep.hardlink")
        assert removed is not None and removed.image is not None and removed.image.size == len("keep\n")
    finally:
        box.remove(force=True)


def test_container_without_changes(docker_client: Any, daemon_images: dict[str, str]) -> None:
    box = docker_client.containers.create(IMAGE, ["true"], network_mode="none")
    try:
        report = report_of(box.id)
        assert report.changes == ()
        assert report.totals.writable_bytes == 0
    finally:
        box.remove(force=True)


def test_container_removed_during_the_run(
    docker_client: Any, daemon_images: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    box = docker_client.containers.run(IMAGE, ["sh", "-c", "echo x > /srv/x"], detach=True, network_mode="none")
    box.wait(timeout=60)
    original = daemon.Daemon._read_path

    def remove_first(self: daemon.Daemon, cid: str, path: str, wanted: set[str], whole: bool) -> Any:
        docker_client.api.remove_container(cid, force=True)
        return original(self, cid, path, wanted, whole)

    monkeypatch.setattr(daemon.Daemon, "_read_path", remove_first)
    try:
        with pytest.raises(ImgscopeError, match=r"was removed from the docker daemon at .* during the run"):
            report_of(box.id)
    finally:
        monkeypatch.undo()
        with contextlib.suppress(Exception):
            box.remove(force=True)
