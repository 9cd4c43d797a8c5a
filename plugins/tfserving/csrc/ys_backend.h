/*
 * ys_backend.h - internal: what the shim core (ys_shim.c) and its backends share.
 *
 * The core parses the manifest, owns the ports, checks inputs and hands outputs over; a backend
 * (ys_openvino.c, ys_onnxruntime.c) is a table of five functions over its dlopen'd C library.
 * Nothing here is exported from the shared objects.
 */
#ifndef YS_BACKEND_H_
#define YS_BACKEND_H_

#include "ys_shim.h"

#define YS_HIDDEN __attribute__((visibility("hidden")))
#define YS_PATH_MAX 4096

/* What shim.txt says, paths made absolute (see artifacts/manifest.py for the format). */
typedef struct {
  int backend;
  char model[YS_PATH_MAX];   /* "xml" (openvino) or "onnx" (onnxruntime) */
  char weights[YS_PATH_MAX]; /* "bin" (openvino; "" = next to the xml) */
  char precision[32];        /* openvino: INFERENCE_PRECISION_HINT */
  int ort_threads;           /* onnxruntime: intra-op threads (0 = its default) */
  int ort_optimization;      /* onnxruntime: GraphOptimizationLevel (99 = all) */
  int n_ort_config;
  char* ort_config[64][2];   /* onnxruntime: session config entries (key, value) */
} ys_manifest;

/* One named input or output; `index` is the backend's own port index. */
typedef struct {
  char* name;
  char* tensor_name;
  int dtype;
  int ndim;
  int64_t shape[YS_MAX_DIMS];
  int index;
} ys_port;

typedef struct ys_backend_ops ys_backend_ops;

struct ys_runtime {
  const ys_backend_ops* ops;
  void* lib;         /* dlopen handle (kept mapped: the backends' threads outlive their objects) */
  void* impl;        /* the backend's function table and global object (ov_core, OrtEnv) */
  char version[128]; /* the library's version */
};

struct ys_model {
  ys_runtime* rt;
  char* signature;
  int n_in, n_out;
  ys_port* in;
  ys_port* out;
  void* impl; /* the backend's compiled model / session */
};

struct ys_backend_ops {
  int backend;
  /* Resolve the API from rt->lib (already dlopen'd), create the global object, fill version. */
  int (*runtime_open)(ys_runtime* rt, const char* path);
  void (*runtime_close)(ys_runtime* rt);
  /* Compile mf->model into m->impl; check the ports (m->in, m->out) against it. */
  int (*model_open)(ys_model* m, const ys_manifest* mf, const char* device, int num_threads);
  void (*model_close)(ys_model* m);
  /* Inputs are checked (dtype, shape, size) and in port order; deliver with ys_deliver. */
  int (*model_run)(ys_model* m, const ys_tensor* in, ys_tensor* out, ys_alloc_fn alloc,
                   void* alloc_ctx, int* short_output);
};

YS_HIDDEN extern const ys_backend_ops ys_openvino_ops;
YS_HIDDEN extern const ys_backend_ops ys_onnxruntime_ops;

YS_HIDDEN int ys_fail(int code, const char* fmt, ...) __attribute__((format(printf, 2, 3)));
YS_HIDDEN int ys_dtype_to_ov(int dtype);
YS_HIDDEN int ys_dtype_from_ov(int ov);
YS_HIDDEN int ys_dtype_to_onnx(int dtype);
YS_HIDDEN int ys_dtype_from_onnx(int onnx);
YS_HIDDEN void ys_format_shape(char* buf, size_t cap, int ndim, const int64_t* shape);

/* Hand output `i` over: set o's dtype, ndim and shape, then copy `data` into the caller's buffer
 * when it is large enough, else into one from `alloc`; with neither, record the first such output
 * in *short_output (the caller reports YS_ERR_OUTPUT_SIZE). */
YS_HIDDEN int ys_deliver(const ys_port* p, int i, ys_tensor* o, int dtype, int ndim,
                         const int64_t* shape, const void* data, size_t nbytes, ys_alloc_fn alloc,
                         void* alloc_ctx, int* short_output);

#endif /* YS_BACKEND_H_ */
