"""A caller of the example extension that `mypy --strict` checks against its stubs and ferry's."""

import numpy as np

import ferry
import ferry_example

matrix = np.ones((3, 4), dtype=np.float32)
norms: ferry.HostArray = ferry_example.row_norms(matrix)
soft: ferry.HostArray = ferry_example.softmax(ferry.from_dlpack(matrix))
centered: ferry.HostArray = ferry_example.center_rows(matrix)
batch: dict[str, ferry.HostArray] = ferry_example.embed_batch(matrix)
assert np.from_dlpack(norms).tolist() == [2.0, 2.0, 2.0]
assert np.from_dlpack(centered).tolist() == [[0.0] * 4] * 3
assert sorted(batch) == ["embedding", "norm"]
print("typed caller: ok")
