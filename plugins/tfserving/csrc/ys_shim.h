/*
 * ys_shim.h - the Yellowstone TF Serving shim: a small C ABI over a boosted model.
 *
 * Conventions (after TVM's C runtime API): every function returns 0 (YS_OK) or a YS_ERR_* code,
 * handles are opaque, and ys_last_error() holds this thread's message for the last failure.
 * Two backends: OpenVINO (its C API, libopenvino_c.so.*) and ONNX Runtime (its C API,
 * libonnxruntime.so.*). A runtime loads one backend's C library with dlopen from a path the
 * caller gives, so the shim has no link-time dependency on any wheel. Nothing here touches Python.
 */
#ifndef YS_SHIM_H_
#define YS_SHIM_H_

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define YS_API __attribute__((visibility("default")))
#define YS_MAX_DIMS 8

/* Status codes. */
enum {
  YS_OK = 0,
  YS_ERR_ARG = 1,         /* a bad argument from the caller (NULL handle, bad index) */
  YS_ERR_LOAD = 2,        /* the backend library or the artifact cannot be loaded */
  YS_ERR_BACKEND = 3,     /* the backend failed (compile or inference) */
  YS_ERR_SHAPE = 4,       /* an input's rank or a static dimension does not match */
  YS_ERR_DTYPE = 5,       /* an input's element type does not match */
  YS_ERR_NOMEM = 6,       /* out of memory */
  YS_ERR_OUTPUT_SIZE = 7  /* an output buffer is missing or too small; shapes are filled in */
};

/* Element types (values are ours, not any framework's). */
enum {
  YS_DT_INVALID = 0, YS_DT_FLOAT32, YS_DT_FLOAT64, YS_DT_FLOAT16, YS_DT_INT8, YS_DT_INT16,
  YS_DT_INT32, YS_DT_INT64, YS_DT_UINT8, YS_DT_UINT16, YS_DT_UINT32, YS_DT_UINT64, YS_DT_BOOL
};

/* Backends (values are ours). An artifact's manifest names its backend ("backend" line). */
enum { YS_BACKEND_INVALID = 0, YS_BACKEND_OPENVINO = 1, YS_BACKEND_ONNXRUNTIME = 2 };

typedef struct ys_runtime ys_runtime; /* one backend's C library, loaded once (ov_core / OrtEnv) */
typedef struct ys_model ys_model;     /* a compiled boosted model (thread-safe to run) */

/* A named tensor of a model: dims < 0 are dynamic. `name` and `tensor_name` belong to the model. */
typedef struct {
  const char* name;        /* signature key, e.g. "x" */
  const char* tensor_name; /* graph tensor, e.g. "serving_default_x:0" (may be "") */
  int dtype;
  int ndim;
  int64_t shape[YS_MAX_DIMS];
} ys_tensor_info;

/* A caller-owned buffer. For inputs every field is read; for outputs the shim writes dtype,
 * ndim and shape, and copies into data when nbytes is large enough. */
typedef struct {
  void* data;
  size_t nbytes;
  int dtype;
  int ndim;
  int64_t shape[YS_MAX_DIMS];
} ys_tensor;

/* Called by ys_model_run for an output whose buffer is NULL or too small, with desc filled in
 * (dtype, ndim, shape, nbytes = bytes needed). Return a buffer of desc->nbytes bytes, or NULL
 * to fail the call. */
typedef void* (*ys_alloc_fn)(void* ctx, int index, const ys_tensor* desc);

YS_API const char* ys_last_error(void);
YS_API const char* ys_version(void);
YS_API size_t ys_dtype_size(int dtype);
YS_API const char* ys_dtype_name(int dtype);
YS_API int ys_dtype_from_name(const char* name);

YS_API const char* ys_backend_name(int backend);   /* "openvino", "onnxruntime", "invalid" */
YS_API int ys_backend_from_name(const char* name); /* YS_BACKEND_INVALID when unknown */

/* Load `backend`'s C library from `c_library` (OpenVINO: libopenvino_c.so.*; ONNX Runtime:
 * libonnxruntime.so.*). One runtime serves any number of models of that backend. */
YS_API int ys_runtime_open_backend(int backend, const char* c_library, ys_runtime** out);
/* Same as ys_runtime_open_backend(YS_BACKEND_OPENVINO, openvino_c_library, out). */
YS_API int ys_runtime_open(const char* openvino_c_library, ys_runtime** out);
YS_API int ys_runtime_close(ys_runtime* rt);
YS_API int ys_runtime_backend(const ys_runtime* rt, int* backend);
/* The loaded library's own version string (owned by the runtime). */
YS_API int ys_runtime_version(const ys_runtime* rt, const char** version);

/* Read only the backend of `artifact_dir`/shim.txt and the C library it names ("ovlib" or
 * "ortlib" line; "" when absent) into `library` (cap bytes). */
YS_API int ys_manifest_backend(const char* artifact_dir, int* backend, char* library, size_t cap);

/* Open the artifact directory (its shim.txt) on a runtime of the backend it names; device "CPU"
 * (OpenVINO only; ONNX Runtime runs on its CPU provider); num_threads 0 = the manifest's or the
 * backend's default. */
YS_API int ys_model_open(ys_runtime* rt, const char* artifact_dir, const char* device,
                         int num_threads, ys_model** out);
YS_API int ys_model_close(ys_model* model);
YS_API int ys_model_signature(const ys_model* model, const char** signature_key);
YS_API int ys_model_backend(const ys_model* model, int* backend);
YS_API int ys_model_num_inputs(const ys_model* model, int* n);
YS_API int ys_model_num_outputs(const ys_model* model, int* n);
YS_API int ys_model_input(const ys_model* model, int index, ys_tensor_info* info);
YS_API int ys_model_output(const ys_model* model, int index, ys_tensor_info* info);

/* Run on n_inputs inputs in model order; fill n_outputs outputs in model order. Safe to call
 * from many threads at once on one model. `alloc` may be NULL. */
YS_API int ys_model_run(ys_model* model, const ys_tensor* inputs, int n_inputs,
                        ys_tensor* outputs, int n_outputs, ys_alloc_fn alloc, void* alloc_ctx);

#ifdef __cplusplus
}
#endif
#endif /* YS_SHIM_H_ */
