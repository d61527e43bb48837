"""pyarrow baseline for `cargo xtask bench`'s Arrow group: `pq.write_table` of the same tensor
column ferry's `parquet_write_file` writes (rows of 32x32 f32 holding i * 1e-3) with ferry's
settings (uncompressed, no dictionary and no statistics for the tensor column), timed on this
machine. Prints `name median_ns` lines (medians of 9 after a
warm-up)."""
import os
import sys
import tempfile

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from timing import median_ns

mib = int(sys.argv[1]) if len(sys.argv) > 1 else 64
rows = mib * 256  # 4 KiB a row
values = np.arange(rows * 1024, dtype=np.float64).astype(np.float32) * np.float32(1e-3)
column = pa.FixedShapeTensorArray.from_numpy_ndarray(values.reshape(rows, 32, 32))
table = pa.table({"x": column})
path = os.path.join(tempfile.gettempdir(), "ferry-bench-pyarrow.parquet")

def write():
    pq.write_table(table, path, compression="none", use_dictionary=False, write_statistics=False)


print(f"pyarrow_write_table {median_ns(write, 9)}")
print(f"pyarrow_version {pa.__version__}")
os.remove(path)
