import sys
import types

from runtime.wandb_run import start_wandb_run


def test_unreachable_service_falls_back_to_offline(tmp_path, monkeypatch):
    calls = []

    def init(**kwargs):
        calls.append(kwargs)
        if kwargs.get("mode") != "offline":
            raise ConnectionError("no network")
        return "offline-run"

    monkeypatch.setitem(sys.modules, "wandb", types.SimpleNamespace(init=init))
    assert start_wandb_run("proj", {"lr": "0.1"}, tmp_path, "rqvae-amazon-beauty") == "offline-run"
    assert [c.get("mode") for c in calls] == [None, "offline"]
    assert all(c["project"] == "proj" and c["dir"] == str(tmp_path) and c["name"] == "rqvae-amazon-beauty" for c in calls)


def test_reachable_service_logs_online(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "wandb", types.SimpleNamespace(init=lambda **kw: kw))
    run = start_wandb_run("proj", {}, tmp_path, "decoder-amazon-beauty")
    assert run["resume"] == "allow" and "mode" not in run
