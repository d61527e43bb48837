"""ferry's Python module with PyTorch CUDA tensors: the GPU bundle's stand-in for tch's CUDA
path (tch 0.22 cannot load the GPU machine's libtorch). Each check compares with PyTorch's own
`.cpu()`. Runs without pytest; prints 'N passed, N failed' and exits non-zero on a failure."""

import sys
import traceback

import ferry
import torch

DTYPES = [
    torch.float32, torch.float16, torch.bfloat16, torch.float64,
    torch.int8, torch.int16, torch.int32, torch.int64,
    torch.uint8, torch.uint16, torch.uint32, torch.uint64, torch.bool,
]


def views(base):
    return {
        "contiguous": base,
        "transposed": base.T,
        "narrowed rows": base.narrow(0, 2, 3),
        "narrowed columns": base.narrow(1, 3, 4),
        "broadcast": base.narrow(0, 4, 1).expand(5, 8),
        "flipped": base.flip(0),
    }


def check_every_dtype_and_layout_comes_to_host_equal_to_torch():
    for dtype in DTYPES:
        base = (torch.arange(48, device="cuda") % 7).reshape(6, 8).to(dtype)
        for name, view in views(base).items():
            h = ferry.from_dlpack(view)
            assert tuple(h.shape) == tuple(view.shape), (dtype, name, h.shape)
            back = torch.from_dlpack(h)
            assert back.device.type == "cpu", (dtype, name, back.device)
            assert torch.equal(back, view.cpu()), (dtype, name)


def check_work_on_a_side_stream_is_finished_before_the_read():
    side = torch.cuda.Stream()
    for _ in range(4):
        with torch.cuda.stream(side):
            a = torch.ones(2048, 2048, device="cuda")
            product = a @ a
            h = ferry.from_dlpack(product)
        assert torch.equal(torch.from_dlpack(h), torch.full((2048, 2048), 2048.0))


def check_host_arrays_go_back_to_the_gpu():
    t = torch.randn(64, 32, device="cuda")
    h = ferry.from_dlpack(t.T)
    up = torch.from_dlpack(h).cuda()
    assert torch.equal(up, t.T)
    pinned = torch.randn(16, 16).pin_memory()
    hp = ferry.from_dlpack(pinned)
    assert torch.equal(torch.from_dlpack(hp), pinned)
    assert torch.equal(torch.from_dlpack(hp).cuda().cpu(), pinned)


def check_imports_outlive_the_cuda_tensor_and_its_exports():
    for _ in range(3):
        t = torch.arange(1024.0, device="cuda")
        h = ferry.from_dlpack(t)
        del t
        torch.cuda.empty_cache()
        assert torch.equal(torch.from_dlpack(h), torch.arange(1024.0))


def main():
    if not torch.cuda.is_available():
        print(f"torch {torch.__version__} (CUDA {torch.version.cuda}) sees no CUDA device")
        print("python-cuda: 0 passed, 1 failed")
        return 1
    print(f"torch {torch.__version__} (CUDA {torch.version.cuda}), {torch.cuda.get_device_name()}")
    checks = [v for k, v in sorted(globals().items()) if k.startswith("check_")]
    passed = failed = 0
    for check in checks:
        try:
            check()
            passed += 1
            print(f"ok   {check.__name__}")
        except Exception:
            failed += 1
            print(f"FAIL {check.__name__}")
            traceback.print_exc()
    print(f"python-cuda: {passed} passed, {failed} failed")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
