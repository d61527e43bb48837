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

int ferry_tch_is_conj(at::Tensor *t) { return t->is_conj() ? 1 : 0; }

int ferry_tch_is_neg(at::Tensor *t) { return t->is_neg() ? 1 : 0; }

}  // extern "C"
