"""Features and labels that live on a GPU (what ``prior.encode`` returns there) go into the probes as they are."""

import torch

from tl_glp.probing import probe_1d, probe_ksparse


class OnDevice(torch.Tensor):
    """Stands in for a CUDA tensor on a CPU-only machine: like one, it refuses ``.numpy()`` until moved with
    ``.cpu()``, which returns a plain tensor. Every other operation keeps it "on the device"."""

    @classmethod
    def __torch_function__(cls, func, types, args=(), kwargs=None):
        if func is torch.Tensor.numpy:
            raise TypeError("can't convert cuda:0 device type tensor to numpy. Use Tensor.cpu() first.")
        out = super().__torch_function__(func, types, args, kwargs or {})
        return out.as_subclass(torch.Tensor) if func is torch.Tensor.cpu else out


def _data(n=400, f=40, seed=0):
    g = torch.Generator().manual_seed(seed)
    y = torch.randint(0, 2, (n,), generator=g)
    x = torch.randn(n, f, generator=g)
    x[:, 7] += 1.0 * y
    return x, y


def test_the_stand_in_refuses_numpy_like_a_cuda_tensor():
    x = torch.ones(3).as_subclass(OnDevice)
    try:
        (x * 2).numpy()
    except TypeError as err:
        assert "cuda" in str(err)
    else:
        raise AssertionError("the stand-in converted to numpy")
    assert (x * 2).cpu().numpy().tolist() == [2.0, 2.0, 2.0]


def test_probe_1d_and_ksparse_take_device_tensors_and_give_the_cpu_results():
    x, y = _data()
    tr, te = slice(0, 300), slice(300, None)
    on = lambda t: t.as_subclass(OnDevice)  # noqa: E731
    plain = probe_1d(x[tr], y[tr], x[te], y[te], top_k=10)
    moved = probe_1d(on(x[tr]), on(y[tr]), on(x[te]), on(y[te]), top_k=10)
    assert plain.feature == 7  # the planted feature
    assert (moved.feature, moved.val_auc, moved.test_auc) == (plain.feature, plain.val_auc, plain.test_auc)
    sparse = probe_ksparse(on(x[tr]), on(y[tr]), on(x[te]), on(y[te]), ks=(1, 2))
    assert [r.k for r in sparse] == [1, 2]
