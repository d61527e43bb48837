// ferry-tch's C++ shim: libtorch's own DLPack converters and a few tensor facts tch does not
// expose. Every function catches C++ exceptions and reports them through `err` (malloc'ed).
#include <ATen/ATen.h>
#include <ATen/DLConvertor.h>
#include <cstdlib>
#include <cstring>

static char *dup_error(const char *what) {
  size_t n = std::strlen(what) + 1;
  char *out = static_cast<char *>(std::malloc(n));
  if (out) std::memcpy(out, what, n);
  return out;
}

extern "C" {

// at::toDLPackVersioned: a versioned managed tensor that keeps `t` alive; NULL on error.
DLManagedTensorVersioned *ferry_tch_to_dlpack_versioned(at::Tensor *t, char **err) {
  try {
    return at::toDLPackVersioned(*t);
  } catch (const std::exception &e) {
    *err = dup_error(e.what());
    return nullptr;
  }
}

// at::fromDLPackVersioned: takes ownership of `m` on success (torch calls its deleter when the
// storage dies); on error returns NULL and the caller still owns `m`.
at::Tensor *ferry_tch_from_dlpack_versioned(DLManagedTensorVersioned *m, char **err) {
  try {
    return new at::Tensor(at::fromDLPackVersioned(m));
  } catch (const std::exception &e) {
    *err = dup_error(e.what());
    return nullptr;
  }
}

int64_t ferry_tch_storage_offset(at::Tensor *t) { return t->storage_offset(); }

// Everything ferry needs to view a tensor, in one call: returns ndim; sizes and strides are
// written when ndim <= cap. Flags: 1 requires grad, 2 conjugate bit, 4 negative bit.
struct FerryTchInfo {
  void *data;
  int32_t scalar_type;
  int32_t device_type;
  int32_t device_index;
  int32_t flags;
};

int64_t ferry_tch_describe(at::Tensor *t, FerryTchInfo *info, int64_t *sizes, int64_t *strides, int64_t cap) {
  int64_t ndim = t->dim();
  info->data = t->data_ptr();
  info->scalar_type = static_cast<int32_t>(t->scalar_type());
  info->device_type = static_cast<int32_t>(t->device().type());
  info->device_index = t->device().index();
  info->flags = (t->requires_grad() ? 1 : 0) | (t->is_conj() ? 2 : 0) | (t->is_neg() ? 4 : 0);
  if (ndim <= cap) {
    for (int64_t i = 0; i < ndim; ++i) {
      sizes[i] = t->size(i);
      strides[i] = t->stride(i);
    }
  }
  return ndim;
}

int ferry_tch_is_conj(at::Tensor *t) { return t->is_conj() ? 1 : 0; }

int ferry_tch_is_neg(at::Tensor *t) { return t->is_neg() ? 1 : 0; }

}  // extern "C"
