"""The training bar says once, early, when the steps left are estimated to take long."""
import runtime.progress as progress


class FakeClock:
    now = 0.0

    def __call__(self) -> float:
        return self.now


def run_bar(monkeypatch, capsys, total: int, seconds_per_step: float, steps: int, first_step_s: float = 60.0) -> str:
    clock = FakeClock()
    monkeypatch.setattr(progress.tqdm, "clock", staticmethod(clock))
    monkeypatch.setattr(progress, "device_description", lambda: "the CPU (no CUDA GPU found)")
    bar = progress.tqdm(total=total, disable=False)
    for i in range(steps):
        clock.now += first_step_s if i == 0 else seconds_per_step  # the first step carries start-up costs
        bar.update(1)
    bar.close()
    return capsys.readouterr().err


def test_paper_config_on_a_cpu_is_announced_with_its_estimate(monkeypatch, capsys):
    err = run_bar(monkeypatch, capsys, total=200_000, seconds_per_step=24.0, steps=4)
    # timed from step 1: after 2 more steps 48 s >= MIN_SECONDS; 199,997 steps left at 24 s
    notes = [line for line in err.splitlines() if "note:" in line]
    assert len(notes) == 1
    assert ("note: the 199,997 steps left are estimated to take 1,333.3 h (56 days) at 24.00 s/step on the CPU "
            "(no CUDA GPU found) (timed over 2 steps).") in notes[0]


def test_a_short_run_says_nothing_and_the_estimate_is_made_once(monkeypatch, capsys):
    assert "note:" not in run_bar(monkeypatch, capsys, total=2_500, seconds_per_step=0.3, steps=200)
    err = run_bar(monkeypatch, capsys, total=100_000, seconds_per_step=1.0, steps=200)
    assert err.count("note:") == 1 and "timed over 20 steps" in err


def test_a_disabled_bar_never_estimates(capsys):  # ranks other than 0
    bar = progress.tqdm(total=200_000, disable=True)
    for _ in range(50):
        bar.update(1)
    assert "note:" not in capsys.readouterr().err
