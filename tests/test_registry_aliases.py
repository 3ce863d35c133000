"""Registry aliases on local disk, a moto S3 server and the GCS emulator: promotion and history.

The race tests force the interleaving that a plain read-modify-write of the alias gets wrong:
both promoters read the alias before either swaps it.
"""

from __future__ import annotations

import json
import re
import signal
import subprocess
import sys
import textwrap
import threading

import pytest

from tlt.errors import RegistryError, StorageError
from tlt.gates.promotion import decide_promotion
from tlt.io import registry_alias_records, registry_aliases, storage
from tlt.io.registry import Registry, aliases, current, history, promote, resolve

BACKENDS = ["local", "s3_bucket", "gcs_bucket"]


def _root(request, backend: str, tmp_path) -> str:
    if backend == "local":
        return str(tmp_path / "reg")
    return f"{request.getfixturevalue(backend)}/models"


def _publish(reg: Registry, tmp_path, version: str, m_ap: float, counts=None):
    src = tmp_path / f"src{version}"
    src.mkdir(exist_ok=True)
    (src / "model.tlt").write_bytes(f"weights-{version}".encode())
    meta = {"metrics": {"mAP": m_ap},
            "lineage": {"dataset": f"s3://data/{version}", "class_counts": counts or {"car": 7}}}
    return reg.publish("m", version, src, metadata=meta)


@pytest.fixture
def alias_barrier(monkeypatch):
    """Hold each racing thread right after its first read of an alias, until two are there."""
    barrier = threading.Barrier(2, timeout=20)
    seen: set[int] = set()
    real = storage.read_with_token

    def read_with_token(uri):
        found = real(uri)
        me = threading.get_ident()
        if threading.current_thread() is not threading.main_thread() and me not in seen:
            seen.add(me)
            barrier.wait()
        return found

    monkeypatch.setattr(storage, "read_with_token", read_with_token)
    return barrier


def _race(*jobs):
    """Run the jobs in threads at once; each one's result or exception."""
    outcome: list = [None] * len(jobs)

    def run(i: int) -> None:
        try:
            outcome[i] = jobs[i]()
        except BaseException as err:  # noqa: BLE001 - reported to the test
            outcome[i] = err

    threads = [threading.Thread(target=run, args=(i,)) for i in range(len(jobs))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    return outcome


@pytest.mark.parametrize("backend", BACKENDS)
def test_first_promotion_then_challenger_moves_production(request, tmp_path, backend):
    root = _root(request, backend, tmp_path)
    reg = Registry(root)
    _publish(reg, tmp_path, "1", 0.61, {"car": 7, "person": 3})
    _publish(reg, tmp_path, "2", 0.65)
    with pytest.raises(RegistryError) as err:
        resolve(reg, "m", "production")
    assert str(err.value) == (f"registry {root} has no production model 'm'; run the retraining "
                              f"pipeline once or promote a version with tlt-pull --promote")
    assert current(reg, "m") is None and history(reg, "m") == [] and aliases(reg, "m") == {}

    first = decide_promotion({"mAP": 0.61}, None, margin=0.01)
    rec1 = promote(reg, "m", "1", decision=first.to_dict(), who="pipeline-run-1")
    assert (rec1.seq, rec1.from_version, rec1.to_version) == (1, None, "1")
    assert rec1.reason.startswith("no production model yet (first run)")
    info = resolve(reg, "m", "production")
    assert info.version == "1"
    assert info.metadata["lineage"]["class_counts"] == {"car": 7, "person": 3}

    second = decide_promotion({"mAP": 0.65}, {"mAP": 0.61}, margin=0.01)
    rec2 = promote(reg, "m", "2", decision=second, who="pipeline-run-2")
    assert resolve(reg, "m", "production").version == "2"
    assert aliases(reg, "m") == {"production": "2"}
    assert [v.version for v in reg.list_versions("m")] == ["1", "2"]  # nothing deleted
    assert resolve(reg, "m", "1").metadata["metrics"] == {"mAP": 0.61}

    assert history(reg, "m") == [rec1, rec2]
    assert (rec2.seq, rec2.from_version, rec2.to_version, rec2.who) == (2, "1", "2",
                                                                        "pipeline-run-2")
    assert (rec2.metric, rec2.from_metric, rec2.to_metric, rec2.margin) == ("mAP", 0.61, 0.65,
                                                                            0.01)
    assert rec2.from_metrics == {"mAP": 0.61} and rec2.to_metrics == {"mAP": 0.65}
    assert rec2.reason == second.reason and rec2.decision["action"] == "promote"
    stored = json.loads(storage.read_text(storage.join(root, "_aliases", "m", "production",
                                                       "history", "000002.json")))
    assert stored["from_version"] == "1" and stored["to_version"] == "2"
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\+00:00", stored["when"])


@pytest.mark.parametrize("backend", BACKENDS)
def test_racing_promoters_exactly_one_wins(request, tmp_path, backend, alias_barrier):
    reg = Registry(_root(request, backend, tmp_path))
    for version, m_ap in (("1", 0.5), ("2", 0.6), ("3", 0.7)):
        _publish(reg, tmp_path, version, m_ap)
    promote(reg, "m", "1", who="setup")
    outcome = _race(lambda: promote(reg, "m", "2", who="a"),
                    lambda: promote(reg, "m", "3", who="b"))
    assert not alias_barrier.broken  # both had read the alias before either swapped
    [loser] = [o for o in outcome if isinstance(o, BaseException)]
    [won] = [o for o in outcome if not isinstance(o, BaseException)]
    assert isinstance(loser, RegistryError)
    assert str(loser) == (f"production alias of 'm' was moved by someone else meanwhile "
                          f"(now v{won.to_version}); decide again")
    assert resolve(reg, "m", "production").version == won.to_version
    assert [(r.seq, r.from_version, r.to_version, r.who) for r in history(reg, "m")] == [
        (1, None, "1", "setup"), (2, "1", won.to_version, won.who)]
    assert len(storage.list_files(storage.join(reg.root, "_aliases", "m", "production",
                                               "history"))) == 2


@pytest.mark.parametrize("backend", BACKENDS)
def test_racing_first_promotions_exactly_one_wins(request, tmp_path, backend, alias_barrier):
    reg = Registry(_root(request, backend, tmp_path))
    _publish(reg, tmp_path, "1", 0.5)
    _publish(reg, tmp_path, "2", 0.6)
    outcome = _race(lambda: promote(reg, "m", "1"), lambda: promote(reg, "m", "2"))
    assert not alias_barrier.broken
    errors = [o for o in outcome if isinstance(o, BaseException)]
    assert len(errors) == 1 and "was moved by someone else meanwhile" in str(errors[0])
    [record] = history(reg, "m")
    assert record.seq == 1 and resolve(reg, "m", "production").version == record.to_version


@pytest.mark.parametrize("backend", BACKENDS)
def test_reader_always_sees_a_committed_champion(request, tmp_path, backend):
    reg = Registry(_root(request, backend, tmp_path))
    for version in ("1", "2", "3"):
        _publish(reg, tmp_path, version, 0.5)
    promote(reg, "m", "1")
    seen: list[str] = []
    failures: list[BaseException] = []
    stop = threading.Event()

    def poll() -> None:
        reader = Registry(reg.root)
        while not stop.is_set():
            try:
                seen.append(resolve(reader, "m", "production").version)
            except BaseException as err:  # noqa: BLE001 - the test reports it
                failures.append(err)

    thread = threading.Thread(target=poll)
    thread.start()
    try:
        for version in ("2", "3", "1", "2", "3"):
            promote(reg, "m", version)
    finally:
        stop.set()
        thread.join(60)
    assert failures == []
    assert seen and set(seen) <= {"1", "2", "3"}
    assert [r.to_version for r in history(reg, "m")] == ["1", "2", "3", "1", "2", "3"]


def test_decision_against_an_old_champion_is_refused(tmp_path):
    reg = Registry(tmp_path / "reg")
    for version in ("1", "2", "3"):
        _publish(reg, tmp_path, version, 0.5)
    promote(reg, "m", "1")
    with pytest.raises(RegistryError, match=re.escape(
            "production alias of 'm' was moved by someone else meanwhile (now v1; the decision "
            "was made against no champion); decide again")):
        promote(reg, "m", "2", expected=None)
    promote(reg, "m", "2", expected="1")
    assert [r.to_version for r in history(reg, "m")] == ["1", "2"]


def test_promote_refuses_keep_decisions_and_unknown_versions(tmp_path):
    reg = Registry(tmp_path / "reg")
    _publish(reg, tmp_path, "1", 0.5)
    keep = decide_promotion({"mAP": 0.5}, {"mAP": 0.5})
    with pytest.raises(RegistryError, match=r"^the decision was to keep the champion \(tie: "):
        promote(reg, "m", "1", decision=keep.to_dict())
    with pytest.raises(RegistryError, match=r"^version 9 of 'm' not found; available: 1$"):
        promote(reg, "m", "9")
    with pytest.raises(RegistryError, match=r"^invalid alias '\.\./x'"):
        promote(reg, "m", "1", alias="../x")
    assert current(reg, "m") is None
    assert not (tmp_path / "reg" / "_aliases" / "m" / "production.json").exists()


def test_promoting_the_current_version_again_changes_nothing(tmp_path):
    reg = Registry(tmp_path / "reg")
    _publish(reg, tmp_path, "1", 0.5)
    first = promote(reg, "m", "1")
    assert promote(reg, "m", "1") == first
    assert history(reg, "m") == [first]


def test_killed_between_swap_and_history_the_record_is_restored(tmp_path, monkeypatch):
    reg = Registry(tmp_path / "reg")
    for version in ("1", "2", "3"):
        _publish(reg, tmp_path, version, 0.5)
    promote(reg, "m", "1")
    real = storage.write_new

    def killed(uri, data):
        if str(uri).endswith("000002.json"):
            raise StorageError(f"{uri}: write failed: connection reset")
        return real(uri, data)

    monkeypatch.setattr(storage, "write_new", killed)
    with pytest.raises(StorageError):
        promote(reg, "m", "2")
    monkeypatch.setattr(storage, "write_new", real)
    history_dir = tmp_path / "reg" / "_aliases" / "m" / "production" / "history"
    assert sorted(p.name for p in history_dir.iterdir()) == ["000001.json"]
    # The alias moved (one put); history shows the record the alias holds ...
    assert [r.to_version for r in history(reg, "m")] == ["1", "2"]
    promote(reg, "m", "3")
    # ... and the next promotion writes it down.
    assert sorted(p.name for p in history_dir.iterdir()) == [
        "000001.json", "000002.json", "000003.json"]
    assert [r.to_version for r in history(reg, "m")] == ["1", "2", "3"]


def test_aliased_version_cannot_be_overwritten(tmp_path):
    reg = Registry(tmp_path / "reg")
    _publish(reg, tmp_path, "1", 0.5)
    _publish(reg, tmp_path, "2", 0.5)
    promote(reg, "m", "1")
    with pytest.raises(RegistryError, match=re.escape(
            f"version 1 of 'm' is its production version in registry {reg.root} and cannot be "
            f"overwritten; publish a new version and promote it")):
        reg.publish("m", "1", tmp_path / "src2", overwrite=True)
    reg.publish("m", "2", tmp_path / "src1", overwrite=True)  # not aliased: allowed
    assert reg.pull("m", "1", tmp_path / "out")[0].read_bytes() == b"weights-1"


def test_publish_metadata_must_be_json(tmp_path):
    reg = Registry(tmp_path / "reg")
    src = tmp_path / "src"
    src.mkdir()
    (src / "model.tlt").write_bytes(b"w")
    with pytest.raises(RegistryError, match=r"^metadata cannot be stored as JSON: .*set"):
        reg.publish("m", "1", src, metadata={"classes": {"car", "person"}})
    assert not (tmp_path / "reg" / "_versions").exists()
    info = reg.publish("m", "1", src, metadata={"metrics": {"mAP": 0.5, "per_class": [0.4, 0.6]},
                                                "lineage": {"class_counts": {"car": 3}}})
    assert resolve(reg, "m", "1").metadata == info.metadata == {
        "metrics": {"mAP": 0.5, "per_class": [0.4, 0.6]}, "lineage": {"class_counts": {"car": 3}}}


def test_other_aliases_and_errors(tmp_path):
    reg = Registry(tmp_path / "reg")
    _publish(reg, tmp_path, "1", 0.5)
    _publish(reg, tmp_path, "2", 0.5)
    promote(reg, "m", "1")
    promote(reg, "m", "2", alias="staging")
    assert aliases(reg, "m") == {"production": "1", "staging": "2"}
    assert resolve(reg, "m", "staging").version == "2"
    assert [r.to_version for r in history(reg, "m", "staging")] == ["2"]
    with pytest.raises(RegistryError, match=re.escape(
            f"'canary' is neither an alias nor a version of 'm' in registry {reg.root}; "
            f"aliases: production, staging; versions: 1, 2")):
        resolve(reg, "m", "canary")
    alias_file = tmp_path / "reg" / "_aliases" / "m" / "staging.json"
    record = json.loads(alias_file.read_text())
    alias_file.write_text(json.dumps({**record, "to_version": "7"}))
    with pytest.raises(RegistryError, match=r"^staging alias of 'm' names version 7, which "
                                            r"registry .* does not hold"):
        resolve(reg, "m", "staging")
    alias_file.write_text(json.dumps({**record, "to_version": "../x"}))
    with pytest.raises(RegistryError, match=r"staging\.json: invalid version in to_version"):
        resolve(reg, "m", "staging")


def test_record_keys_are_the_dataclass_fields():
    """The stored JSON is the dataclass: a new field cannot be forgotten by the parser."""
    record = registry_aliases.PromotionRecord("m", "production", 1, None, "1", "w", "t", "r")
    parsed = registry_alias_records.parse_record("x", record.to_bytes(), "m", "production")
    assert parsed == record


# Promotes m:2 in registry argv[1] and kill -9s itself at the point argv[2] names: just before
# the new alias content is renamed into place, or after the swap, before the history write.
_KILLED_PROMOTE = textwrap.dedent("""
    import os, signal, sys
    from tlt.io import storage
    from tlt.io.registry import Registry, promote

    root, where = sys.argv[1:]
    real_replace, real_write_new = os.replace, storage.write_new

    def replace(src, dst, *args, **kwargs):
        if where == "swap" and str(dst).endswith("production.json"):
            os.kill(os.getpid(), signal.SIGKILL)
        return real_replace(src, dst, *args, **kwargs)

    def write_new(uri, data):
        if where == "history" and str(uri).endswith("000002.json"):
            os.kill(os.getpid(), signal.SIGKILL)
        return real_write_new(uri, data)

    os.replace, storage.write_new = replace, write_new
    promote(Registry(root), "m", "2", who="killed")
""")


@pytest.mark.parametrize("where, champion", [("swap", "1"), ("history", "2")])
def test_promoter_killed_midway_leaves_a_committed_champion(tmp_path, where, champion):
    reg = Registry(tmp_path / "reg")
    for version in ("1", "2", "3"):
        _publish(reg, tmp_path, version, 0.5)
    promote(reg, "m", "1", who="setup")
    job = subprocess.run([sys.executable, "-c", _KILLED_PROMOTE, reg.root, where],
                         capture_output=True, text=True, timeout=120)
    assert job.returncode == -signal.SIGKILL, job.stderr
    assert resolve(reg, "m", "production").version == champion
    assert [r.to_version for r in history(reg, "m")] == ["1", "2"][:int(champion)]
    # The dead promoter's lock went with it: the next promotion is not blocked.
    promote(reg, "m", "3", who="next")
    assert [(r.to_version, r.who) for r in history(reg, "m")] == [
        ("1", "setup"), *([("2", "killed")] if champion == "2" else []), ("3", "next")]
    history_dir = tmp_path / "reg" / "_aliases" / "m" / "production" / "history"
    assert len([p for p in history_dir.iterdir() if not p.name.startswith(".")]) == (
        3 if champion == "2" else 2)


def test_swap_whose_answer_was_lost_counts_as_won(tmp_path, monkeypatch):
    """A retried swap whose first attempt landed finds its own record, not a rival's."""
    reg = Registry(tmp_path / "reg")
    _publish(reg, tmp_path, "1", 0.5)
    _publish(reg, tmp_path, "2", 0.5)
    promote(reg, "m", "1")
    real = storage.write_if_unchanged

    def landed_but_reported_lost(uri, data, token):
        assert real(uri, data, token)
        return False

    monkeypatch.setattr(storage, "write_if_unchanged", landed_but_reported_lost)
    record = promote(reg, "m", "2")
    assert resolve(reg, "m", "production").version == "2"
    assert history(reg, "m")[-1] == record
