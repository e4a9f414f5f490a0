"""``preserved``: a measurement inside the block leaves the random stream, the BN statistics and the modes as found."""

import pytest
import torch
import torch.nn as nn

from robustdarts.preserve import preserved


def net() -> nn.Module:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4), nn.ReLU(), nn.Sequential(nn.BatchNorm2d(4)))
    model.train()
    model[3].eval()  # a mixed tree: every flag must come back as it was
    with torch.no_grad():  # statistics that a forward pass would move
        model[1].running_mean.uniform_(-1, 1)
        model[1].running_var.uniform_(0.5, 2)
    return model


def test_rng_is_restored():
    torch.manual_seed(1)
    expected = torch.rand(5)
    torch.manual_seed(1)
    with preserved():
        torch.rand(1000)
        torch.randn(3)
    assert torch.equal(torch.rand(5), expected)


def test_rng_left_alone_when_not_asked():
    torch.manual_seed(1)
    torch.rand(5)
    second = torch.rand(5)
    torch.manual_seed(1)
    with preserved(rng=False):
        torch.rand(5)
    assert torch.equal(torch.rand(5), second)


def test_bn_buffers_and_modes_are_restored_after_a_train_forward():
    model = net()
    buffers = {k: v.clone() for k, v in model.named_buffers()}
    bn_mean = model[1].running_mean  # a reference held elsewhere must see the restored values
    with preserved(model):
        model.train()
        model(torch.randn(2, 3, 8, 8))
        assert not torch.equal(model[1].running_mean, buffers["1.running_mean"])  # the forward did write
        assert int(model[1].num_batches_tracked) == 1
        model[1].running_var = torch.zeros(4)  # replaced, not written in place
        model.eval()
    assert all(torch.equal(v, buffers[k]) for k, v in model.named_buffers())
    assert model[1].running_mean is bn_mean and torch.equal(bn_mean, buffers["1.running_mean"])
    assert model.training and model[1].training and not model[3].training and not model[3][0].training


def test_restores_also_on_an_exception():
    model = net()
    buffers = {k: v.clone() for k, v in model.named_buffers()}
    torch.manual_seed(2)
    expected = torch.rand(3)
    torch.manual_seed(2)
    with pytest.raises(RuntimeError, match="boom"):
        with preserved(model):
            torch.rand(7)
            model(torch.randn(2, 3, 8, 8))
            model.eval()
            raise RuntimeError("boom")
    assert torch.equal(torch.rand(3), expected)
    assert all(torch.equal(v, buffers[k]) for k, v in model.named_buffers())
    assert model.training and not model[3].training


def test_the_block_sees_the_same_stream_as_without_it():
    # Inside the block the draws continue the caller's stream; only the state after the block is rolled back.
    torch.manual_seed(3)
    direct = torch.rand(4)
    torch.manual_seed(3)
    with preserved():
        inside = torch.rand(4)
    assert torch.equal(inside, direct)
