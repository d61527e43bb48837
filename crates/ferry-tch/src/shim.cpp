// ferry-tch's C++ shim: libtorch's own DLPack converters and a few tensor facts tch does not
// expose. No C++ exception may cross into Rust (that aborts the process): every function
// catches everything and reports it through `err` (malloc'ed, freed by the Rust side).
#include <ATen/ATen.h>
#include <ATen/DLConvertor.h>
#include <ATen/detail/CUDAHooksInterface.h>
#include <atomic>
#include <cstdlib>
#include <algorithm>
#include <cstring>
#include <memory>

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

// at::toDLPackVersioned of a pinned alias: a new TensorImpl over `t`'s StorageImpl (so `set_`,
// `set_data` and `set_source_tensor_` on `t` change only `t`) whose storage is made
// non-resizable (so `resize_` on `t` or any alias cannot move or free the bytes: it raises
// "Trying to resize storage that is not resizable" instead, as after `tensor.numpy()`).
// Requires-grad tensors are detached (no copy). NULL on error.
DLManagedTensorVersioned *ferry_tch_to_dlpack_versioned(at::Tensor *t, char **err) {
  try {
    check_strided(*t);
    at::Tensor alias = t->detach();
    alias.storage().unsafeGetStorageImpl()->set_resizable(false);
    // A consumer may read on any stream (DLPack in Rust carries none): finish the work queued
    // on the tensor's device first, as candle's export does.
    if (t->is_cuda()) at::detail::getCUDAHooks().deviceSynchronize(t->get_device());
    return at::toDLPackVersioned(alias);
  } catch (...) {
    report(err);
    return nullptr;
  }
}

// at::fromDLPackVersioned, given ferry's own deleter so ownership is never in doubt: libtorch
// calls the deleter it is given instead of `m->deleter`, and ours records that it ran before
// releasing `m`. libtorch can throw after it wrapped the deleter into the new storage (an
// unsupported device's dispatch key, a numel overflow), and unwinding then runs it: `released`
// tells the caller whether `m` is already gone (1) or still its own (0). NULL on error.
at::Tensor *ferry_tch_from_dlpack_versioned(DLManagedTensorVersioned *m, int *released,
                                            char **err) {
  *released = 0;
  auto ran = std::make_shared<std::atomic<bool>>(false);
  try {
    at::Tensor t = at::fromDLPackVersioned(m, [m, ran](void *) {
      ran->store(true);
      if (m->deleter) m->deleter(m);
    });
    return new at::Tensor(std::move(t));
  } catch (...) {
    *released = ran->load() ? 1 : 0;
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

// Everything ferry needs to view a tensor, in one call: returns ndim (-1 on error, with `err`
// set); sizes and strides are written when ndim <= cap. Flags: 1 requires grad, 2 conjugate
// bit, 4 negative bit. When `storage` is not NULL and the tensor is a plain CPU tensor (no
// conjugate or negative bit, not quantized), `*storage` receives the tensor's StorageImpl with
// one reference of ferry's own taken on it (drop it with ferry_tch_storage_free), after it was made
// non-resizable: `set_`, `set_data` and `set_source_tensor_` on any tensor leave that
// StorageImpl alive, and `resize_` cannot move or free its bytes (it raises "Trying to resize
// storage that is not resizable" instead, as after `tensor.numpy()`). So a host view costs one
// call and one reference count, and no allocation here; otherwise `*storage` is set to NULL.
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

int64_t ferry_tch_describe(at::Tensor *t, FerryTchInfo *info, int64_t *sizes, int64_t *strides,
                           int64_t cap, c10::StorageImpl **storage, char **err) {
  if (storage) *storage = nullptr;
  try {
    check_strided(*t);
    const c10::Storage &own = t->storage();
    int64_t ndim = t->dim();
    bool quantized = t->is_quantized();
    info->scalar_type = static_cast<int32_t>(t->scalar_type());
    info->device_type = static_cast<int32_t>(t->device().type());
    info->device_index = t->device().index();
    info->flags = (t->requires_grad() ? 1 : 0) | (t->is_conj() ? 2 : 0) | (t->is_neg() ? 4 : 0);
    info->storage_bytes = static_cast<int64_t>(own.nbytes());
    info->storage_offset = t->storage_offset();
    // Quantized tensors are refused by scalar type before their data is looked at.
    info->data = quantized ? nullptr : t->data_ptr();
    info->storage_data = quantized ? nullptr : const_cast<void *>(own.data());
    if (ndim <= cap) {
      at::IntArrayRef dims = t->sizes(), steps = t->strides();
      std::copy(dims.begin(), dims.end(), sizes);
      std::copy(steps.begin(), steps.end(), strides);
    }
    if (storage && t->device().is_cpu() && !t->is_conj() && !t->is_neg() && !quantized) {
      c10::StorageImpl *impl = own.unsafeGetStorageImpl();
      impl->set_resizable(false);
      // ferry's own reference, released by ferry_tch_storage_free.
      c10::raw::intrusive_ptr::incref(impl);
      *storage = impl;
    }
    return ndim;
  } catch (...) {
    report(err);
    return -1;
  }
}

// Releases a handle from ferry_tch_describe (dropping ferry's reference to the StorageImpl,
// which may free it; libtorch's deleters run on any thread). Never throws.
void ferry_tch_storage_free(c10::StorageImpl *storage) { c10::raw::intrusive_ptr::decref(storage); }

}  // extern "C"
