"""pyarrow baseline for `cargo xtask bench`'s Arrow group: `pq.write_table` of the same tensor
column ferry's `parquet_write_file` writes (rows of 32x32 f32 holding i * 1e-3) with ferry's
settings (uncompressed, no dictionary and no statistics for the tensor column), timed on this
machine. Prints `name median_ns` lines (medians of 9 after a
warm-up), one `pyarrow_write_table_<N>mib` line per size given in MiB (default 64)."""
import os
import sys
import tempfile

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from timing import median_ns

def write_time(mib):
    rows = mib * 256  # 4 KiB a row
    values = np.arange(rows * 1024, dtype=np.float64).astype(np.float32) * np.float32(1e-3)
    column = pa.FixedShapeTensorArray.from_numpy_ndarray(values.reshape(rows, 32, 32))
    table = pa.table({"x": column})
    path = os.path.join(tempfile.gettempdir(), "ferry-bench-pyarrow.parquet")

    def write():
        pq.write_table(table, path, compression="none", use_dictionary=False, write_statistics=False)

    ns = median_ns(write, 9)
    os.remove(path)
    return ns


for mib in [int(a) for a in sys.argv[1:]] or [64]:
    print(f"pyarrow_write_table_{mib}mib {write_time(mib)}")
print(f"pyarrow_version {pa.__version__}")
