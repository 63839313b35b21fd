import pytest
import torch
import torch._inductor.config as inductor_config

import runtime.compile
from runtime.compile import compile_training_forward, mix_order_reduction_is_safe


@pytest.mark.parametrize("version, safe", [("2.11.0+cu130", False), ("2.12.1", False), ("2.9.1+cpu", False),
                                           ("2.13.0+cpu", True), ("2.14.1", True), ("3.0.0a0", True)])
def test_mix_order_reduction_is_safe_from_2_13(version, safe):
    assert mix_order_reduction_is_safe(version) is safe


def test_unparseable_version_is_refused():
    with pytest.raises(ValueError, match="'nightly'"):
        mix_order_reduction_is_safe("nightly")


@pytest.mark.parametrize("version, fusion_after", [("2.11.0+cu130", False), ("2.13.0+cpu", True)])
def test_compile_turns_the_fusion_off_on_older_torch_only(monkeypatch, version, fusion_after):
    monkeypatch.setattr(runtime.compile.torch, "__version__", version)
    model = torch.nn.Linear(3, 2)
    with inductor_config.patch({"triton.mix_order_reduction": True}):  # restored on leaving
        forward = compile_training_forward(model, "default")  # lazy: nothing compiles until it is called
        assert inductor_config.triton.mix_order_reduction is fusion_after
    x = torch.randn(4, 3)
    torch.testing.assert_close(forward(x), model(x))
