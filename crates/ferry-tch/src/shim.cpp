// ferry-tch's C++ shim: copy-on-write snapshots of a tensor's storage, libtorch's own DLPack
// import, and a few tensor facts tch does not expose. No C++ exception may cross into Rust
// (that aborts the process): every function catches everything and reports it through `err`
// (malloc'ed, freed by the Rust side).
#include <ATen/ATen.h>
#include <ATen/DLConvertor.h>
#include <ATen/detail/CUDAHooksInterface.h>
#include <c10/core/impl/COW.h>
#include <c10/core/impl/COWDeleter.h>
#include <atomic>
#include <cstdlib>
#include <algorithm>
#include <cstring>
#include <memory>
#include <mutex>

static char *dup_error(const char *what) {
  size_t n = std::strlen(what) + 1;
  char *out = static_cast<char *>(std::malloc(n));
  if (out) std::memcpy(out, what, n);
  return out;
}

// Writes the message of the exception being handled into `err`.
static void report(char **err) {
  try {
    throw;
  } catch (const std::exception &e) {
    *err = dup_error(e.what());
  } catch (...) {
    *err = dup_error("unknown C++ exception");
  }
}

// Refuses tensors that have no strided storage ferry could describe or share: undefined
// tensors, sparse and other non-strided layouts, storage-less tensors (functional wrappers,
// meta tensors without data, nested tensors).
static void check_strided(const at::Tensor &t) {
  TORCH_CHECK(t.defined(), "the tensor is undefined (tch::Tensor::new()); give it values first");
  TORCH_CHECK(t.layout() == at::kStrided, "the tensor's layout is ", t.layout(),
              ", not strided; call to_dense() first");
  TORCH_CHECK(t.has_storage(), "the tensor has no storage (a wrapper or nested tensor); "
              "materialise it with contiguous() or clone() first");
  TORCH_CHECK(!t.is_meta(), "the tensor is on the meta device and has no data");
}

extern "C" {

// at::fromDLPackVersioned, given ferry's own deleter so ownership is never in doubt: libtorch
// calls the deleter it is given instead of `m->deleter`, and ours records that it ran before
// releasing `m`. libtorch can throw after it wrapped the deleter into the new storage (an
// unsupported device's dispatch key, a numel overflow), and unwinding then runs it: `released`
// tells the caller whether `m` is already gone (1) or still its own (0). NULL on error.
at::Tensor *ferry_tch_from_dlpack_versioned(DLManagedTensorVersioned *m, int *released,
                                            char **err) {
  *released = 0;
  try {
    // Inside the `try`: a `bad_alloc` here must not cross `extern "C"` either.
    auto ran = std::make_shared<std::atomic<bool>>(false);
    try {
      at::Tensor t = at::fromDLPackVersioned(m, [m, ran](void *) {
        ran->store(true);
        if (m->deleter) m->deleter(m);
      });
      return new at::Tensor(std::move(t));
    } catch (...) {
      *released = ran->load() ? 1 : 0;
      throw;
    }
  } catch (...) {
    report(err);
    return nullptr;
  }
}

// One copy of the `len` elements of `t`'s storage from element `offset` (a CUDA tensor's
// viewed span) into a new pinned host tensor of `t`'s dtype, after the work queued on `t`'s
// device; any dtype, including those tch's `Kind` cannot name (uint16/32/64,
// float8_e8m0fnu). NULL on error.
at::Tensor *ferry_tch_pinned_span(at::Tensor *t, int64_t offset, int64_t len, char **err) {
  try {
    at::Tensor span = t->as_strided({len}, {1}, offset);
    at::Tensor host = at::empty({len}, span.options().device(at::kCPU).pinned_memory(true));
    // Waits for the device: a tensor produced on another stream or thread is complete.
    at::detail::getCUDAHooks().deviceSynchronize(t->get_device());
    host.copy_(span, /*non_blocking=*/false);
    return new at::Tensor(std::move(host));
  } catch (...) {
    report(err);
    return nullptr;
  }
}

// Waits for the work queued on CUDA device `device` (DLPack in Rust carries no stream: a
// consumer may read on any). 0, or -1 on error.
int32_t ferry_tch_device_synchronize(int32_t device, char **err) {
  try {
    at::detail::getCUDAHooks().deviceSynchronize(static_cast<c10::DeviceIndex>(device));
    return 0;
  } catch (...) {
    report(err);
    return -1;
  }
}

// The storage offset in elements; -1 on error.
int64_t ferry_tch_storage_offset(at::Tensor *t, char **err) {
  try {
    check_strided(*t);
    return t->storage_offset();
  } catch (...) {
    report(err);
    return -1;
  }
}

// What ferry_tch_describe reports. With a snapshot, `storage_data`/`storage_bytes` and the
// layout are the snapshot's; without, the tensor's own.
struct FerryTchInfo {
  void *data;
  int32_t scalar_type;
  int32_t device_type;
  int32_t device_index;
  int32_t flags;
  int64_t storage_bytes;
  int64_t storage_offset;
  // The storage's first byte (`storage_bytes` bytes from here), so ferry checks a view against
  // the storage without deriving the storage from `data`.
  void *storage_data;
};

// `flags` bits of FerryTchInfo.
enum : int32_t {
  FERRY_REQUIRES_GRAD = 1,
  FERRY_CONJ = 2,
  FERRY_NEG = 4,
  // The snapshot is a copy of the tensor (its storage cannot be shared copy-on-write), which
  // nobody but ferry's handle reaches.
  FERRY_COPIED = 8,
};

// `snapshot` bits of ferry_tch_describe.
enum : int32_t {
  // Take a snapshot of a CPU tensor that has no conjugate or negative bit and is not quantized.
  FERRY_SNAPSHOT = 1,
  // Where the storage cannot be shared copy-on-write (memory libtorch did not allocate, or a
  // storage reached through another handle too), copy the tensor (contiguous) instead.
  FERRY_SNAPSHOT_OR_COPY = 2,
  // A tensor on any device, not only the CPU (an export: device memory is never read here).
  FERRY_ANY_DEVICE = 4,
};

// The bytes a copy-on-write reference keeps alive: `impl`'s data and size, read while the
// reference is held.
struct CowBytes {
  void *data;
  int64_t nbytes;
};

// Whether nothing but `t` reaches its storage: no other handle on its TensorImpl and no weak
// reference to it, no other TensorImpl (a view, a shallow clone, a Python alias, autograd's
// saved tensors) and no weak reference on its StorageImpl — except, for a view, the base
// tensor autograd keeps for it (`_base()`), when only the view holds that. Only then may the storage be made
// copy-on-write: libtorch converts and materialises copy-on-write storages without a lock,
// so a writer on another thread (through a shallow clone, which tch's `Tensor: Send` allows)
// materialising the storage while ferry takes its reference frees the context under ferry
// (an abort in COWDeleter, or a use-after-free), and a write in flight keeps going into bytes
// the snapshot then shares. With `t` the only handle — which the caller holds by `&Tensor`,
// not `Sync`, so no other thread uses it — nothing else can write the storage meanwhile or
// make a new handle to it.
static bool sole_owner(const at::Tensor &t) {
  if (t.use_count() != 1 || t.weak_use_count() != 1) return false;
  uint32_t impls = 1;
  if (t.is_view()) {
    const at::TensorBase &base = t._base();  // a reference into t's autograd data: no count
    // The base counts only while it is the other holder: `set_`/`set_data` may have moved the
    // view or the base to another storage, and the second holder would be someone else.
    if (base.use_count() != 1 || base.weak_use_count() != 1 ||
        base.storage().unsafeGetStorageImpl() != t.storage().unsafeGetStorageImpl()) {
      return false;
    }
    impls = 2;
  }
  auto weak = t.storage().getWeakStorageImpl();  // one more weak reference: its own
  return weak.use_count() == impls && weak.weak_use_count() == 2;
}

// A reference of ferry's own on `impl`'s copy-on-write context, after making the storage
// copy-on-write if it is not yet (c10::impl::cow::lazy_clone_storage, what torch._lazy_clone
// uses; the clone it returns is dropped at once): the reference is what every storage sharing
// the bytes holds, so the bytes stay allocated while it lives, and every writer to those
// storages copies them for itself first. NULL where the storage's DataPtr has a context of its
// own (memory libtorch did not allocate), which cannot be shared copy-on-write. The caller
// checked `sole_owner` (no other thread can reach the storage).
//
// libtorch makes a storage copy-on-write without a lock (`lazy_clone_storage` swaps its DataPtr
// and leaves synchronisation to its caller): two threads snapshotting tensors that share a
// storage would both move the original context into a copy-on-write context of their own, and
// the bytes would be freed twice. Every snapshot ferry takes goes through this one mutex. (An
// earlier snapshot shares the bytes through the context, not the StorageImpl, so a tensor
// viewed before is still its storage's sole owner.)
static std::mutex cow_mutex;

static c10::impl::cow::COWDeleterContext *cow_reference(c10::StorageImpl &impl, CowBytes *bytes) {
  std::lock_guard<std::mutex> lock(cow_mutex);
  if (!c10::impl::cow::is_cow_data_ptr(impl.data_ptr()) &&
      !c10::impl::cow::lazy_clone_storage(impl)) {
    return nullptr;
  }
  auto *ctx = impl.data_ptr().cast_context<c10::impl::cow::COWDeleterContext>(
      &c10::impl::cow::cow_deleter);
  TORCH_CHECK(ctx != nullptr, "a copy-on-write storage without its context");
  ctx->increment_refcount();
  bytes->data = const_cast<void *>(impl.data());
  bytes->nbytes = static_cast<int64_t>(impl.nbytes());
  return ctx;
}

// Everything ferry needs to view or export a tensor, in one call: returns ndim (-1 on error,
// with `err` set); sizes and strides are written when ndim <= cap.
//
// With FERRY_SNAPSHOT (and `snapshot_out` not NULL), `*snapshot_out` receives a snapshot of the
// tensor's values that nothing done to the tensor later can free or change (release it with
// ferry_tch_snapshot_free), and `storage_data`/`storage_bytes` describe its bytes:
// - a reference on the copy-on-write context of the tensor's storage (`cow_reference`): the
//   storage and ferry share the bytes until the storage is written through a mutable data
//   pointer, which first copies them for the writer (libtorch materialises a copy-on-write
//   storage in `mutable_data()`, and every in-place op, `set_`, `resize_`, `share_memory_` and
//   the DLPack export go through it). ferry reads the bytes only; `data()` and
//   `const_data_ptr()`, which this function uses, never materialise;
// - where the storage's memory is not libtorch's own, or the storage is reached through
//   another handle too (`sole_owner`): with FERRY_SNAPSHOT_OR_COPY, the same of a contiguous
//   copy of the tensor, which nothing else reaches (flag FERRY_COPIED; the layout reported is
//   the copy's), else NULL.
// Without a snapshot `*snapshot_out` is NULL.
int64_t ferry_tch_describe(at::Tensor *t, FerryTchInfo *info, int64_t *sizes, int64_t *strides,
                           int64_t cap, int32_t snapshot, void **snapshot_out, char **err) {
  if (snapshot_out) *snapshot_out = nullptr;
  try {
    check_strided(*t);
    bool quantized = t->is_quantized();
    info->scalar_type = static_cast<int32_t>(t->scalar_type());
    info->device_type = static_cast<int32_t>(t->device().type());
    info->device_index = t->device().index();
    info->flags = (t->requires_grad() ? FERRY_REQUIRES_GRAD : 0) |
                  (t->is_conj() ? FERRY_CONJ : 0) | (t->is_neg() ? FERRY_NEG : 0);
    bool wanted = snapshot_out && (snapshot & FERRY_SNAPSHOT) && !t->is_conj() &&
                  !t->is_neg() && !quantized &&
                  (t->device().is_cpu() || (snapshot & FERRY_ANY_DEVICE));
    // The tensor whose layout is reported: `*t`, or the copy made for the snapshot.
    at::Tensor copy;
    const at::Tensor *described = t;
    // Released (`cow_deleter`) if anything below throws; handed over at the end.
    std::unique_ptr<void, void (*)(void *)> held(nullptr, &c10::impl::cow::cow_deleter);
    CowBytes bytes{nullptr, 0};
    if (wanted) {
      if (sole_owner(*t)) {
        held.reset(cow_reference(*t->storage().unsafeGetStorageImpl(), &bytes));
      }
      if (!held && (snapshot & FERRY_SNAPSHOT_OR_COPY)) {
        copy = t->clone(at::MemoryFormat::Contiguous);
        described = &copy;
        held.reset(cow_reference(*copy.storage().unsafeGetStorageImpl(), &bytes));
        TORCH_CHECK(held != nullptr, "libtorch's copy of the tensor is not copy-on-write");
        info->flags |= FERRY_COPIED;
      }
    }
    const c10::StorageImpl &own = *described->storage().unsafeGetStorageImpl();
    int64_t ndim = described->dim();
    info->storage_offset = described->storage_offset();
    // Quantized tensors are refused by scalar type before their data is looked at. Only
    // `const` accessors: a mutable one would materialise a copy-on-write storage (a copy).
    info->data = quantized ? nullptr : const_cast<void *>(described->const_data_ptr());
    if (held) {
      // The bytes the snapshot holds, as read while it was held (`cow_reference`).
      info->storage_bytes = bytes.nbytes;
      info->storage_data = bytes.data;
    } else {
      info->storage_bytes = static_cast<int64_t>(own.nbytes());
      info->storage_data = quantized ? nullptr : const_cast<void *>(own.data());
    }
    if (ndim <= cap) {
      at::IntArrayRef dims = described->sizes(), steps = described->strides();
      std::copy(dims.begin(), dims.end(), sizes);
      std::copy(steps.begin(), steps.end(), strides);
    }
    if (held) *snapshot_out = held.release();  // ferry's own reference
    return ndim;
  } catch (...) {
    report(err);
    return -1;
  }
}

// Releases a snapshot from ferry_tch_describe: ferry's reference on the copy-on-write context,
// which frees the bytes when it is the last (libtorch's deleters run on any thread). Never
// throws.
void ferry_tch_snapshot_free(void *snapshot) { c10::impl::cow::cow_deleter(snapshot); }

}  // extern "C"
