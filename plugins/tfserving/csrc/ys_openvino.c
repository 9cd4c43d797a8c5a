/*
 * ys_openvino.c - the shim's OpenVINO backend: its C API (libopenvino_c.so.*, dlopen'd).
 *
 * The OpenVINO prototypes used are declared here (opaque handles, plain C types), so no
 * OpenVINO header or library is needed to build this file. A compiled model is shared by all
 * threads; each call takes an infer request from an idle stack (created on demand).
 */
#define _GNU_SOURCE
#include "ys_backend.h"

#include <dlfcn.h>
#include <pthread.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct ov_core ov_core_t;
typedef struct ov_model ov_model_t;
typedef struct ov_compiled_model ov_compiled_model_t;
typedef struct ov_infer_request ov_infer_request_t;
typedef struct ov_tensor ov_tensor_t;
typedef struct { int64_t rank; int64_t* dims; } ov_shape_t;
typedef struct { const char* buildNumber; const char* description; } ov_version_t;
typedef int ov_status_e;

typedef struct {
  ov_status_e (*core_create)(ov_core_t**);
  void (*core_free)(ov_core_t*);
  ov_status_e (*core_read_model)(const ov_core_t*, const char*, const char*, ov_model_t**);
  ov_status_e (*core_compile_model)(const ov_core_t*, const ov_model_t*, const char*, size_t,
                                    ov_compiled_model_t**, ...);
  void (*model_free)(ov_model_t*);
  ov_status_e (*compiled_inputs_size)(const ov_compiled_model_t*, size_t*);
  ov_status_e (*compiled_outputs_size)(const ov_compiled_model_t*, size_t*);
  ov_status_e (*create_infer_request)(const ov_compiled_model_t*, ov_infer_request_t**);
  void (*compiled_model_free)(ov_compiled_model_t*);
  ov_status_e (*set_input_tensor_by_index)(ov_infer_request_t*, size_t, const ov_tensor_t*);
  ov_status_e (*get_output_tensor_by_index)(const ov_infer_request_t*, size_t, ov_tensor_t**);
  ov_status_e (*infer)(ov_infer_request_t*);
  void (*infer_request_free)(ov_infer_request_t*);
  ov_status_e (*tensor_create_from_host_ptr)(int, ov_shape_t, void*, ov_tensor_t**);
  ov_status_e (*tensor_get_shape)(const ov_tensor_t*, ov_shape_t*);
  ov_status_e (*tensor_get_element_type)(const ov_tensor_t*, int*);
  ov_status_e (*tensor_get_byte_size)(const ov_tensor_t*, size_t*);
  ov_status_e (*tensor_data)(const ov_tensor_t*, void**);
  void (*tensor_free)(ov_tensor_t*);
  ov_status_e (*shape_create)(int64_t, const int64_t*, ov_shape_t*);
  ov_status_e (*shape_free)(ov_shape_t*);
  const char* (*get_last_err_msg)(void);                 /* optional */
  ov_status_e (*get_openvino_version)(ov_version_t*);    /* optional */
  void (*version_free)(ov_version_t*);                   /* optional */
} ov_api;

typedef struct {
  ov_api ov;
  ov_core_t* core;
} ov_runtime;

typedef struct {
  ov_compiled_model_t* compiled;
  pthread_mutex_t lock; /* guards the idle infer-request stack */
  ov_infer_request_t** idle;
  int n_idle, cap_idle;
} ov_model_impl;

#define OV(rt) (&((ov_runtime*)(rt)->impl)->ov)

static const char* ov_msg(const ov_api* ov) {
  const char* m = ov->get_last_err_msg ? ov->get_last_err_msg() : NULL;
  return m && *m ? m : "(no message)";
}

static int ov_runtime_open(ys_runtime* rt, const char* path) {
  ov_runtime* r = calloc(1, sizeof *r);
  if (!r) return ys_fail(YS_ERR_NOMEM, "out of memory");
  ov_api* ov = &r->ov;
#define YS_SYM(field, name)                                                                 \
  do {                                                                                      \
    *(void**)(&ov->field) = dlsym(rt->lib, name);                                           \
    if (!ov->field) {                                                                       \
      free(r);                                                                              \
      return ys_fail(YS_ERR_LOAD, "%s has no symbol %s (OpenVINO too old?)", path, name);   \
    }                                                                                       \
  } while (0)
  YS_SYM(core_create, "ov_core_create");
  YS_SYM(core_free, "ov_core_free");
  YS_SYM(core_read_model, "ov_core_read_model");
  YS_SYM(core_compile_model, "ov_core_compile_model");
  YS_SYM(model_free, "ov_model_free");
  YS_SYM(compiled_inputs_size, "ov_compiled_model_inputs_size");
  YS_SYM(compiled_outputs_size, "ov_compiled_model_outputs_size");
  YS_SYM(create_infer_request, "ov_compiled_model_create_infer_request");
  YS_SYM(compiled_model_free, "ov_compiled_model_free");
  YS_SYM(set_input_tensor_by_index, "ov_infer_request_set_input_tensor_by_index");
  YS_SYM(get_output_tensor_by_index, "ov_infer_request_get_output_tensor_by_index");
  YS_SYM(infer, "ov_infer_request_infer");
  YS_SYM(infer_request_free, "ov_infer_request_free");
  YS_SYM(tensor_create_from_host_ptr, "ov_tensor_create_from_host_ptr");
  YS_SYM(tensor_get_shape, "ov_tensor_get_shape");
  YS_SYM(tensor_get_element_type, "ov_tensor_get_element_type");
  YS_SYM(tensor_get_byte_size, "ov_tensor_get_byte_size");
  YS_SYM(tensor_data, "ov_tensor_data");
  YS_SYM(tensor_free, "ov_tensor_free");
  YS_SYM(shape_create, "ov_shape_create");
  YS_SYM(shape_free, "ov_shape_free");
#undef YS_SYM
  *(void**)(&ov->get_last_err_msg) = dlsym(rt->lib, "ov_get_last_err_msg");
  *(void**)(&ov->get_openvino_version) = dlsym(rt->lib, "ov_get_openvino_version");
  *(void**)(&ov->version_free) = dlsym(rt->lib, "ov_version_free");
  if (ov->core_create(&r->core) != 0) {
    int rc = ys_fail(YS_ERR_BACKEND, "ov_core_create failed: %s", ov_msg(ov));
    free(r);
    return rc;
  }
  ov_version_t v = {NULL, NULL};
  if (ov->get_openvino_version && ov->get_openvino_version(&v) == 0 && v.buildNumber) {
    snprintf(rt->version, sizeof rt->version, "%s", v.buildNumber);
    if (ov->version_free) ov->version_free(&v);
  }
  rt->impl = r;
  return YS_OK;
}

static void ov_runtime_close(ys_runtime* rt) {
  ov_runtime* r = rt->impl;
  if (r && r->core) r->ov.core_free(r->core);
  free(r);
  rt->impl = NULL;
}

static void ov_model_close(ys_model* m) {
  ov_model_impl* impl = m->impl;
  const ov_api* ov = OV(m->rt);
  for (int i = 0; i < impl->n_idle; i++) ov->infer_request_free(impl->idle[i]);
  free(impl->idle);
  if (impl->compiled) ov->compiled_model_free(impl->compiled);
  pthread_mutex_destroy(&impl->lock);
  free(impl);
  m->impl = NULL;
}

/* The CPUs in this process's affinity mask. */
static int usable_cpus(void) {
  cpu_set_t set;
  if (sched_getaffinity(0, sizeof set, &set) != 0) return 1;
  return CPU_COUNT(&set);
}

static int ov_model_open(ys_model* m, const ys_manifest* mf, const char* device, int num_threads) {
  ov_runtime* r = m->rt->impl;
  const ov_api* ov = &r->ov;
  ov_model_impl* impl = calloc(1, sizeof *impl);
  if (!impl) return ys_fail(YS_ERR_NOMEM, "out of memory");
  pthread_mutex_init(&impl->lock, NULL);
  m->impl = impl;
  ov_model_t* model = NULL;
  if (ov->core_read_model(r->core, mf->model, *mf->weights ? mf->weights : NULL, &model) != 0)
    return ys_fail(YS_ERR_LOAD, "OpenVINO cannot read %s: %s", mf->model, ov_msg(ov));
  char threads[16];
  snprintf(threads, sizeof threads, "%d", num_threads);
  const char* dev = device && *device ? device : "CPU";
  int status;
  if (num_threads > 0 && num_threads < usable_cpus()) {
    /* A share of the cores: OpenVINO would pin every compiled model's threads from the first
       core up, stacking several models (or processes) on the same cores. Unpinned, the
       scheduler spreads them. */
    status = ov->core_compile_model(r->core, model, dev, 8, &impl->compiled,
                                    "INFERENCE_PRECISION_HINT", mf->precision,
                                    "PERFORMANCE_HINT", "LATENCY",
                                    "INFERENCE_NUM_THREADS", threads,
                                    "ENABLE_CPU_PINNING", "NO");
  } else if (num_threads > 0) {
    status = ov->core_compile_model(r->core, model, dev, 6, &impl->compiled,
                                    "INFERENCE_PRECISION_HINT", mf->precision,
                                    "PERFORMANCE_HINT", "LATENCY",
                                    "INFERENCE_NUM_THREADS", threads);
  } else {
    status = ov->core_compile_model(r->core, model, dev, 4, &impl->compiled,
                                    "INFERENCE_PRECISION_HINT", mf->precision,
                                    "PERFORMANCE_HINT", "LATENCY");
  }
  ov->model_free(model);
  if (status != 0) {
    impl->compiled = NULL;
    return ys_fail(YS_ERR_BACKEND, "OpenVINO cannot compile %s for %s: %s", mf->model, dev, ov_msg(ov));
  }
  size_t n_in = 0, n_out = 0;
  ov->compiled_inputs_size(impl->compiled, &n_in);
  ov->compiled_outputs_size(impl->compiled, &n_out);
  int bad = (size_t)m->n_in != n_in;
  for (int i = 0; i < m->n_in; i++) bad |= m->in[i].index < 0 || (size_t)m->in[i].index >= n_in;
  for (int i = 0; i < m->n_out; i++) bad |= m->out[i].index < 0 || (size_t)m->out[i].index >= n_out;
  if (bad)
    return ys_fail(YS_ERR_LOAD, "the manifest does not match %s (%zu inputs, %zu outputs)",
                   mf->model, n_in, n_out);
  return YS_OK;
}

static int ov_take_request(ys_model* m, ov_infer_request_t** req) {
  ov_model_impl* impl = m->impl;
  pthread_mutex_lock(&impl->lock);
  *req = impl->n_idle ? impl->idle[--impl->n_idle] : NULL;
  pthread_mutex_unlock(&impl->lock);
  if (*req) return YS_OK;
  if (OV(m->rt)->create_infer_request(impl->compiled, req) != 0)
    return ys_fail(YS_ERR_BACKEND, "cannot create an infer request: %s", ov_msg(OV(m->rt)));
  return YS_OK;
}

static void ov_give_request(ys_model* m, ov_infer_request_t* req) {
  ov_model_impl* impl = m->impl;
  pthread_mutex_lock(&impl->lock);
  if (impl->n_idle == impl->cap_idle) {
    int cap = impl->cap_idle ? 2 * impl->cap_idle : 4;
    ov_infer_request_t** grown = realloc(impl->idle, (size_t)cap * sizeof *grown);
    if (!grown) {
      pthread_mutex_unlock(&impl->lock);
      OV(m->rt)->infer_request_free(req);
      return;
    }
    impl->idle = grown;
    impl->cap_idle = cap;
  }
  impl->idle[impl->n_idle++] = req;
  pthread_mutex_unlock(&impl->lock);
}

static int ov_model_run(ys_model* m, const ys_tensor* inputs, ys_tensor* outputs, ys_alloc_fn alloc,
                        void* alloc_ctx, int* short_output) {
  const ov_api* ov = OV(m->rt);
  ov_infer_request_t* req = NULL;
  int rc = ov_take_request(m, &req);
  if (rc) return rc;
  for (int i = 0; i < m->n_in && rc == YS_OK; i++) {
    ov_shape_t shape;
    ov_tensor_t* t = NULL;
    if (ov->shape_create(inputs[i].ndim, inputs[i].shape, &shape) != 0) {
      rc = ys_fail(YS_ERR_BACKEND, "ov_shape_create failed: %s", ov_msg(ov));
      break;
    }
    /* Zero-copy: OpenVINO reads the caller's buffer in place. */
    if (ov->tensor_create_from_host_ptr(ys_dtype_to_ov(inputs[i].dtype), shape, inputs[i].data, &t) != 0 ||
        ov->set_input_tensor_by_index(req, (size_t)m->in[i].index, t) != 0)
      rc = ys_fail(YS_ERR_BACKEND, "cannot set input '%s': %s", m->in[i].name, ov_msg(ov));
    if (t) ov->tensor_free(t);
    ov->shape_free(&shape);
  }
  if (rc == YS_OK && ov->infer(req) != 0)
    rc = ys_fail(YS_ERR_BACKEND, "OpenVINO inference failed: %s", ov_msg(ov));
  for (int i = 0; i < m->n_out && rc == YS_OK; i++) {
    ov_tensor_t* t = NULL;
    ov_shape_t shape = {0, NULL};
    void* data = NULL;
    size_t nbytes = 0;
    int et = 0;
    if (ov->get_output_tensor_by_index(req, (size_t)m->out[i].index, &t) != 0 ||
        ov->tensor_get_shape(t, &shape) != 0 || ov->tensor_get_byte_size(t, &nbytes) != 0 ||
        ov->tensor_get_element_type(t, &et) != 0 || ov->tensor_data(t, &data) != 0)
      rc = ys_fail(YS_ERR_BACKEND, "cannot read output '%s': %s", m->out[i].name, ov_msg(ov));
    else
      rc = ys_deliver(&m->out[i], i, &outputs[i], ys_dtype_from_ov(et), (int)shape.rank,
                      shape.dims, data, nbytes, alloc, alloc_ctx, short_output);
    if (shape.dims) ov->shape_free(&shape);
    if (t) ov->tensor_free(t);
  }
  ov_give_request(m, req);
  return rc;
}

const ys_backend_ops ys_openvino_ops = {
  .backend = YS_BACKEND_OPENVINO,
  .runtime_open = ov_runtime_open,
  .runtime_close = ov_runtime_close,
  .model_open = ov_model_open,
  .model_close = ov_model_close,
  .model_run = ov_model_run,
};
