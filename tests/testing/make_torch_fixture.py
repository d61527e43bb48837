"""Writes torch_assert_close.jsonl: pairs of tensors and what `torch.testing.assert_close` says
of each — the fixture `tests/it/testing.rs` checks ferry::testing against, pair by pair.

Run with the provisioned PyTorch (`cargo xtask` puts it in ~/.cache/ferry):
    python tests/testing/make_torch_fixture.py > tests/testing/torch_assert_close.jsonl
Deterministic (fixed seed): rerunning it with the same PyTorch writes the same file.
"""

import json
import math
import random
import sys

import torch

random.seed(20261206)
torch.manual_seed(20261206)

FLOATS = [torch.float16, torch.bfloat16, torch.float32, torch.float64]
COMPLEX = [torch.complex64, torch.complex128]
INTS = [torch.uint8, torch.int8, torch.int16, torch.int32, torch.int64]
ALL = FLOATS + COMPLEX + INTS + [torch.bool]
NAMES = {
    torch.float16: "f16", torch.bfloat16: "bf16", torch.float32: "f32", torch.float64: "f64",
    torch.complex64: "c64", torch.complex128: "c128", torch.uint8: "u8", torch.int8: "i8",
    torch.int16: "i16", torch.int32: "i32", torch.int64: "i64", torch.bool: "bool",
}
DEFAULTS = {
    torch.float16: (1e-3, 1e-5), torch.bfloat16: (1.6e-2, 1e-5), torch.float32: (1.3e-6, 1e-5),
    torch.float64: (1e-7, 1e-7), torch.complex64: (1.3e-6, 1e-5), torch.complex128: (1e-7, 1e-7),
}


def encode(t):
    flat = t.contiguous().reshape(-1)
    if t.dtype.is_complex:
        raw = torch.view_as_real(flat).reshape(-1).view(torch.uint8)
    elif t.dtype == torch.bool:
        raw = flat.to(torch.uint8)
    else:
        raw = flat.view(torch.uint8)
    return {"dtype": NAMES[t.dtype], "shape": list(t.shape), "hex": bytes(raw.flatten().tolist()).hex()}


def random_shape():
    ndim = random.choice([0, 1, 1, 2, 2, 2, 3, 4])
    return [random.choice([0, 1, 2, 3, 4, 5]) if random.random() < 0.05 else random.randint(1, 5)
            for _ in range(ndim)]


def special_floats(dtype):
    info = torch.finfo(dtype)
    return [0.0, -0.0, math.inf, -math.inf, math.nan, info.tiny, info.tiny / 4, info.max, -info.max,
            info.eps, 1.0, -1.0, 1e-5, 1e-7]


def base_values(dtype, shape):
    n = math.prod(shape)
    if dtype == torch.bool:
        return torch.rand(shape) < 0.5
    if dtype in INTS:
        info = torch.iinfo(dtype)
        v = torch.randint(max(info.min, -1000), min(info.max, 1000) + 1, shape, dtype=torch.int64)
        if n and random.random() < 0.3:
            flat = v.view(-1)
            flat[random.randrange(n)] = random.choice([info.min, info.max])
        return v.to(dtype)
    if dtype.is_complex:
        scale = 10 ** random.uniform(-3, 3)
        return (torch.randn(shape, dtype=torch.float64) + 1j * torch.randn(shape, dtype=torch.float64)).mul(scale).to(dtype)
    scale = 10 ** random.uniform(-6, 4)
    v = (torch.randn(shape, dtype=torch.float64) * scale).to(dtype)
    if n and random.random() < 0.3:
        flat = v.view(-1)
        for _ in range(random.randint(1, 2)):
            flat[random.randrange(n)] = random.choice(special_floats(dtype))
    return v


def put(flat, i, value):
    """flat[i] = value, rounded (and overflowed to inf) as a cast to flat's dtype does."""
    if isinstance(value, torch.Tensor):
        flat[i] = value.to(flat.dtype)
    else:
        wide = torch.complex128 if flat.dtype.is_complex else torch.float64
        flat[i] = torch.tensor(value, dtype=wide).to(flat.dtype)


def perturb(dtype, expected, rtol, atol):
    """An `actual` near `expected`: some elements equal, some at the boundary, some off."""
    actual = expected.clone()
    n = expected.numel()
    if n == 0:
        return actual
    flat = actual.view(-1)
    e = expected.reshape(-1)
    for i in range(n):
        r = random.random()
        if r < 0.5:
            continue
        if dtype == torch.bool:
            flat[i] = ~flat[i] if r < 0.7 else flat[i]
            continue
        if dtype in INTS:
            info = torch.iinfo(dtype)
            step = random.choice([1, -1, 2, 100, info.max])
            val = int(e[i]) + step
            flat[i] = max(info.min, min(info.max, val))
            continue
        if dtype.is_complex:
            part = e[i]
            choice = random.random()
            if choice < 0.3:
                put(flat, i, part + complex(random.uniform(-1, 1), random.uniform(-1, 1)) * (atol + rtol * abs(part)))
            elif choice < 0.5:
                put(flat, i, part * (1 + random.choice([1e-3, 1e-6, 1e-8])))
            elif choice < 0.6:
                put(flat, i, complex(math.nan, 0) if random.random() < 0.5 else complex(math.inf, 1))
            else:
                put(flat, i, part + complex(random.uniform(-1, 1), 0) * 10 ** random.uniform(-8, 1))
            continue
        ev = float(e[i])
        allowed = atol + rtol * abs(ev)
        choice = random.random()
        if choice < 0.25:
            # Exactly at the boundary, as the dtype's arithmetic rounds it, and one ulp either side.
            t = torch.tensor(ev, dtype=dtype)
            bound = t + (torch.tensor(atol, dtype=dtype) + (torch.tensor(rtol, dtype=dtype) * t).abs())
            if random.random() < 0.33:
                bound = torch.nextafter(bound.double(), torch.tensor(math.inf, dtype=torch.float64)).to(dtype)
            elif random.random() < 0.5:
                bound = torch.nextafter(bound.to(torch.float32), torch.tensor(-math.inf)).to(dtype) if dtype != torch.float64 else torch.nextafter(bound, torch.tensor(-math.inf, dtype=torch.float64))
            put(flat, i, bound)
        elif choice < 0.45:
            put(flat, i, ev + random.uniform(-1, 1) * allowed * random.choice([0.5, 0.99, 1.01, 2, 10]))
        elif choice < 0.55:
            put(flat, i, random.choice(special_floats(dtype)))
        elif choice < 0.65:
            # One ulp away.
            t = torch.tensor(ev, dtype=dtype)
            put(flat, i, torch.nextafter(t.double(), torch.tensor(random.choice([math.inf, -math.inf]), dtype=torch.float64)).to(dtype) if dtype in (torch.float16, torch.bfloat16) else torch.nextafter(t, torch.tensor(random.choice([math.inf, -math.inf]), dtype=dtype)))
        else:
            put(flat, i, ev * (1 + random.uniform(-1, 1) * 10 ** random.uniform(-9, 0)))
    return actual


def verdict(actual, expected, **kwargs):
    try:
        torch.testing.assert_close(actual, expected, **kwargs)
        return {"close": True, "message": None}
    except AssertionError as e:
        return {"close": False, "message": str(e)}


def case(actual, expected, rtol=None, atol=None, equal_nan=False, check_dtype=True):
    kwargs = {"equal_nan": equal_nan, "check_dtype": check_dtype}
    if rtol is not None:
        kwargs.update(rtol=rtol, atol=atol)
    try:
        out = verdict(actual, expected, **kwargs)
    except (RuntimeError, TypeError, ValueError):
        return None  # a pair torch itself cannot compare
    return {"actual": encode(actual), "expected": encode(expected), "rtol": rtol, "atol": atol,
            "equal_nan": equal_nan, "check_dtype": check_dtype, "torch": out}


def cases():
    # Random pairs of one dtype, default and explicit tolerances.
    while True:
        dtype = random.choice(ALL)
        shape = random_shape()
        expected = base_values(dtype, shape)
        explicit = random.random() < 0.3 and dtype != torch.bool
        if explicit:
            rtol, atol = random.choice([(0.0, 0.0), (1e-3, 1e-3), (0.0, 1e-2), (1e-2, 0.0), (0.1, 0.5)])
        else:
            rtol = atol = None
        r, a = (rtol, atol) if explicit else DEFAULTS.get(dtype, (0.0, 0.0))
        actual = perturb(dtype, expected, r, a)
        equal_nan = random.random() < 0.3
        yield case(actual, expected, rtol, atol, equal_nan)


def edge_cases():
    f = torch.float32
    yield case(torch.tensor(1.0), torch.tensor(1.5))
    yield case(torch.tensor(2, dtype=torch.int64), torch.tensor(3, dtype=torch.int64))
    yield case(torch.tensor(True), torch.tensor(False))
    yield case(torch.tensor(1 + 2j, dtype=torch.complex64), torch.tensor(1 + 3j, dtype=torch.complex64))
    yield case(torch.tensor(0.5), torch.tensor(0.0))
    yield case(torch.tensor([math.nan]), torch.tensor([math.nan]))
    yield case(torch.tensor([math.nan]), torch.tensor([math.nan]), equal_nan=True)
    yield case(torch.tensor([math.inf, -math.inf]), torch.tensor([math.inf, math.inf]))
    yield case(torch.tensor([-0.0]), torch.tensor([0.0]))
    yield case(torch.zeros(2, 3), torch.zeros(3, 2))
    yield case(torch.zeros(2, 3), torch.zeros(2, 3, dtype=torch.float64))
    yield case(torch.zeros(0, 3), torch.zeros(0, 3))
    yield case(torch.zeros(2, 0, 3, dtype=torch.int8), torch.zeros(2, 0, 3, dtype=torch.int8))
    yield case(torch.tensor([torch.iinfo(torch.int64).min]), torch.tensor([torch.iinfo(torch.int64).max]))
    yield case(torch.tensor([-128, 127], dtype=torch.int8), torch.tensor([127, -128], dtype=torch.int8))
    yield case(torch.tensor([1, 2], dtype=torch.uint8), torch.tensor([2, 1], dtype=torch.uint8))
    # Dtypes that differ, compared in the promoted type (check_dtype=False).
    for a_dtype, e_dtype in [(torch.float16, torch.bfloat16), (torch.float32, torch.float64),
                             (torch.int32, torch.float32), (torch.bool, torch.int8),
                             (torch.uint8, torch.int8), (torch.float64, torch.complex64),
                             (torch.int64, torch.float16), (torch.float16, torch.float32)]:
        for _ in range(6):
            shape = random_shape()
            e = base_values(e_dtype, shape)
            a = perturb(e_dtype, e, *DEFAULTS.get(e_dtype, (0.0, 0.0)))
            if a_dtype.is_floating_point and not a.dtype.is_complex or a_dtype.is_complex:
                a = a.to(a_dtype)
            elif not a.dtype.is_floating_point and not a.dtype.is_complex:
                a = a.to(a_dtype)
            else:
                a = a.real.to(a_dtype) if a.dtype.is_complex else a.clamp(-100, 100).to(a_dtype)
            yield case(a, e, check_dtype=False)
            yield case(a, e)
    # f16 and bf16 values around rounding boundaries.
    for dtype in (torch.float16, torch.bfloat16):
        for _ in range(40):
            e = (torch.rand(6, dtype=torch.float64) * 10 ** random.uniform(-5, 4)).to(dtype)
            a = e.double() * (1 + torch.tensor(DEFAULTS[dtype][0]) * torch.tensor([0.5, 0.999, 1.0, 1.001, 1.5, 3.0]))
            yield case(a.to(dtype), e)
    # Subnormals.
    for dtype in FLOATS:
        tiny = torch.finfo(dtype).tiny
        e = torch.tensor([tiny / 2, tiny / 8, 0.0, tiny], dtype=dtype)
        yield case(e * 2, e)
        yield case(e * 2, e, rtol=0.0, atol=0.0)


def main():
    out = []
    for c in edge_cases():
        if c is not None:
            out.append(c)
    gen = cases()
    while len(out) < 2400:
        c = next(gen)
        if c is not None:
            out.append(c)
    meta = {"torch": torch.__version__, "cases": len(out)}
    sys.stdout.write(json.dumps(meta) + "\n")
    for i, c in enumerate(out):
        c["id"] = i
        sys.stdout.write(json.dumps(c) + "\n")


if __name__ == "__main__":
    main()
