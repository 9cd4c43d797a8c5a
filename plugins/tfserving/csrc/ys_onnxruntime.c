/*
 * ys_onnxruntime.c - the shim's ONNX Runtime backend: its C API (libonnxruntime.so.*, dlopen'd).
 *
 * No ONNX Runtime header is needed (the Python wheel ships none): the few functions used are
 * declared here from the documented, append-only layout of `struct OrtApi`
 * (include/onnxruntime/core/session/onnxruntime_c_api.h, MIT). Table positions never change
 * between releases, so the prefix up to AddSessionConfigEntry (index 130) is the same struct for
 * every API version >= YS_ORT_API_VERSION; the static asserts pin each used slot. The session is
 * shared by all threads (OrtApi::Run is thread-safe); inputs wrap the caller's buffers in place.
 */
#define _GNU_SOURCE
#include "ys_backend.h"

#include <dlfcn.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* The API version asked of OrtGetApiBase()->GetApi: ONNX Runtime 1.13 and later provide it. */
#define YS_ORT_API_VERSION 13

typedef struct OrtStatus OrtStatus;
typedef struct OrtEnv OrtEnv;
typedef struct OrtSession OrtSession;
typedef struct OrtSessionOptions OrtSessionOptions;
typedef struct OrtValue OrtValue;
typedef struct OrtMemoryInfo OrtMemoryInfo;
typedef struct OrtTypeInfo OrtTypeInfo;
typedef struct OrtTensorTypeAndShapeInfo OrtTensorTypeAndShapeInfo;
typedef struct OrtAllocator OrtAllocator;
typedef struct OrtRunOptions OrtRunOptions;

enum { ORT_LOGGING_LEVEL_ERROR = 3 };
enum { OrtDeviceAllocator = 0, OrtMemTypeDefault = 0 };

/* struct OrtApi, slots 0..130; `void* _N` pads the ones not used. */
typedef struct {
  OrtStatus* (*CreateStatus)(int code, const char* msg);                                /*   0 */
  int (*GetErrorCode)(const OrtStatus*);                                                /*   1 */
  const char* (*GetErrorMessage)(const OrtStatus*);                                     /*   2 */
  OrtStatus* (*CreateEnv)(int log_severity_level, const char* logid, OrtEnv** out);      /*   3 */
  void* _4_6[3];
  OrtStatus* (*CreateSession)(const OrtEnv*, const char* model_path, const OrtSessionOptions*,
                              OrtSession** out);                                        /*   7 */
  void* _8;
  OrtStatus* (*Run)(OrtSession*, const OrtRunOptions*, const char* const* input_names,
                    const OrtValue* const* inputs, size_t input_len,
                    const char* const* output_names, size_t output_names_len,
                    OrtValue** outputs);                                                /*   9 */
  OrtStatus* (*CreateSessionOptions)(OrtSessionOptions** out);                          /*  10 */
  void* _11_21[11];
  OrtStatus* (*SetSessionLogSeverityLevel)(OrtSessionOptions*, int);                    /*  22 */
  OrtStatus* (*SetSessionGraphOptimizationLevel)(OrtSessionOptions*, int);              /*  23 */
  OrtStatus* (*SetIntraOpNumThreads)(OrtSessionOptions*, int);                          /*  24 */
  void* _25_29[5];
  OrtStatus* (*SessionGetInputCount)(const OrtSession*, size_t* out);                   /*  30 */
  OrtStatus* (*SessionGetOutputCount)(const OrtSession*, size_t* out);                  /*  31 */
  void* _32;
  OrtStatus* (*SessionGetInputTypeInfo)(const OrtSession*, size_t, OrtTypeInfo**);      /*  33 */
  OrtStatus* (*SessionGetOutputTypeInfo)(const OrtSession*, size_t, OrtTypeInfo**);     /*  34 */
  void* _35;
  OrtStatus* (*SessionGetInputName)(const OrtSession*, size_t, OrtAllocator*, char**);  /*  36 */
  OrtStatus* (*SessionGetOutputName)(const OrtSession*, size_t, OrtAllocator*, char**); /*  37 */
  void* _38_48[11];
  OrtStatus* (*CreateTensorWithDataAsOrtValue)(const OrtMemoryInfo*, void* data, size_t len,
                                               const int64_t* shape, size_t shape_len,
                                               int type, OrtValue** out);               /*  49 */
  void* _50;
  OrtStatus* (*GetTensorMutableData)(OrtValue*, void** out);                            /*  51 */
  void* _52_54[3];
  OrtStatus* (*CastTypeInfoToTensorInfo)(const OrtTypeInfo*,
                                         const OrtTensorTypeAndShapeInfo** out);        /*  55 */
  void* _56_59[4];
  OrtStatus* (*GetTensorElementType)(const OrtTensorTypeAndShapeInfo*, int* out);       /*  60 */
  OrtStatus* (*GetDimensionsCount)(const OrtTensorTypeAndShapeInfo*, size_t* out);      /*  61 */
  OrtStatus* (*GetDimensions)(const OrtTensorTypeAndShapeInfo*, int64_t*, size_t);      /*  62 */
  void* _63_64[2];
  OrtStatus* (*GetTensorTypeAndShape)(const OrtValue*, OrtTensorTypeAndShapeInfo** out); /* 65 */
  void* _66_68[3];
  OrtStatus* (*CreateCpuMemoryInfo)(int allocator_type, int mem_type, OrtMemoryInfo** out); /* 69 */
  void* _70_75[6];
  OrtStatus* (*AllocatorFree)(OrtAllocator*, void*);                                    /*  76 */
  void* _77;
  OrtStatus* (*GetAllocatorWithDefaultOptions)(OrtAllocator** out);                     /*  78 */
  void* _79_91[13];
  void (*ReleaseEnv)(OrtEnv*);                                                           /*  92 */
  void (*ReleaseStatus)(OrtStatus*);                                                     /*  93 */
  void (*ReleaseMemoryInfo)(OrtMemoryInfo*);                                             /*  94 */
  void (*ReleaseSession)(OrtSession*);                                                   /*  95 */
  void (*ReleaseValue)(OrtValue*);                                                       /*  96 */
  void* _97;
  void (*ReleaseTypeInfo)(OrtTypeInfo*);                                                 /*  98 */
  void (*ReleaseTensorTypeAndShapeInfo)(OrtTensorTypeAndShapeInfo*);                     /*  99 */
  void (*ReleaseSessionOptions)(OrtSessionOptions*);                                     /* 100 */
  void* _101_129[29];
  OrtStatus* (*AddSessionConfigEntry)(OrtSessionOptions*, const char* key, const char* value); /* 130 */
} ort_api;

typedef struct {
  const ort_api* (*GetApi)(uint32_t version);
  const char* (*GetVersionString)(void);
} ort_api_base;

#define YS_SLOT(field, n) \
  _Static_assert(offsetof(ort_api, field) == (n) * sizeof(void*), #field " is OrtApi slot " #n)
YS_SLOT(CreateEnv, 3);
YS_SLOT(CreateSession, 7);
YS_SLOT(Run, 9);
YS_SLOT(CreateSessionOptions, 10);
YS_SLOT(SetSessionLogSeverityLevel, 22);
YS_SLOT(SetIntraOpNumThreads, 24);
YS_SLOT(SessionGetInputCount, 30);
YS_SLOT(SessionGetInputTypeInfo, 33);
YS_SLOT(SessionGetInputName, 36);
YS_SLOT(SessionGetOutputName, 37);
YS_SLOT(CreateTensorWithDataAsOrtValue, 49);
YS_SLOT(GetTensorMutableData, 51);
YS_SLOT(CastTypeInfoToTensorInfo, 55);
YS_SLOT(GetTensorElementType, 60);
YS_SLOT(GetDimensions, 62);
YS_SLOT(GetTensorTypeAndShape, 65);
YS_SLOT(CreateCpuMemoryInfo, 69);
YS_SLOT(AllocatorFree, 76);
YS_SLOT(GetAllocatorWithDefaultOptions, 78);
YS_SLOT(ReleaseEnv, 92);
YS_SLOT(ReleaseValue, 96);
YS_SLOT(ReleaseTypeInfo, 98);
YS_SLOT(ReleaseSessionOptions, 100);
YS_SLOT(AddSessionConfigEntry, 130);
#undef YS_SLOT

typedef struct {
  const ort_api* api;
  OrtEnv* env;
} ort_runtime;

typedef struct {
  OrtSession* session;
  OrtMemoryInfo* cpu;
  const char** in_names;  /* per port, in port order (what Run takes) */
  const char** out_names;
  char** owned;           /* every session name, freed at close */
  int n_owned;
} ort_model_impl;

#define ORT(rt) (((ort_runtime*)(rt)->impl)->api)

/* Record a non-NULL status as the shim's error (code, "what: message") and release it. */
static int ort_fail(const ort_api* api, OrtStatus* st, int code, const char* what, const char* name) {
  const char* msg = api->GetErrorMessage(st);
  int rc = name ? ys_fail(code, "%s '%s': %s", what, name, msg && *msg ? msg : "(no message)")
                : ys_fail(code, "%s: %s", what, msg && *msg ? msg : "(no message)");
  api->ReleaseStatus(st);
  return rc;
}

static int ort_runtime_open(ys_runtime* rt, const char* path) {
  const ort_api_base* (*get_base)(void) = NULL;
  *(void**)(&get_base) = dlsym(rt->lib, "OrtGetApiBase");
  if (!get_base) return ys_fail(YS_ERR_LOAD, "%s has no symbol OrtGetApiBase", path);
  const ort_api_base* base = get_base();
  const char* version = base && base->GetVersionString ? base->GetVersionString() : "?";
  const ort_api* api = base ? base->GetApi(YS_ORT_API_VERSION) : NULL;
  if (!api)
    return ys_fail(YS_ERR_LOAD, "%s (ONNX Runtime %s) does not offer C API version %d", path,
                   version, YS_ORT_API_VERSION);
  ort_runtime* r = calloc(1, sizeof *r);
  if (!r) return ys_fail(YS_ERR_NOMEM, "out of memory");
  r->api = api;
  OrtStatus* st = api->CreateEnv(ORT_LOGGING_LEVEL_ERROR, "yellowstone-shim", &r->env);
  if (st) {
    free(r);
    return ort_fail(api, st, YS_ERR_BACKEND, "OrtApi::CreateEnv failed", NULL);
  }
  snprintf(rt->version, sizeof rt->version, "%s", version);
  rt->impl = r;
  return YS_OK;
}

static void ort_runtime_close(ys_runtime* rt) {
  ort_runtime* r = rt->impl;
  if (r && r->env) r->api->ReleaseEnv(r->env);
  free(r);
  rt->impl = NULL;
}

static void ort_model_close(ys_model* m) {
  ort_model_impl* impl = m->impl;
  const ort_api* api = ORT(m->rt);
  for (int i = 0; i < impl->n_owned; i++) free(impl->owned[i]);
  free(impl->owned);
  free(impl->in_names);
  free(impl->out_names);
  if (impl->cpu) api->ReleaseMemoryInfo(impl->cpu);
  if (impl->session) api->ReleaseSession(impl->session);
  free(impl);
  m->impl = NULL;
}

/* The session's name and element type of input (or output) `index`; name is malloc'd. */
static int ort_port(const ort_api* api, OrtSession* s, int output, size_t index, char** name,
                    int* dtype, int* ndim) {
  OrtAllocator* alloc = NULL;
  char* ort_name = NULL;
  OrtTypeInfo* ti = NULL;
  const OrtTensorTypeAndShapeInfo* tsi = NULL;
  int onnx = 0;
  size_t rank = 0;
  OrtStatus* st = api->GetAllocatorWithDefaultOptions(&alloc);
  if (!st) st = output ? api->SessionGetOutputName(s, index, alloc, &ort_name)
                       : api->SessionGetInputName(s, index, alloc, &ort_name);
  if (!st) st = output ? api->SessionGetOutputTypeInfo(s, index, &ti)
                       : api->SessionGetInputTypeInfo(s, index, &ti);
  if (!st) st = api->CastTypeInfoToTensorInfo(ti, &tsi);
  if (!st && !tsi) st = api->CreateStatus(2, "not a tensor");
  if (!st) st = api->GetTensorElementType(tsi, &onnx);
  if (!st) st = api->GetDimensionsCount(tsi, &rank);
  if (ti) api->ReleaseTypeInfo(ti);
  if (st) {
    if (ort_name) api->AllocatorFree(alloc, ort_name);
    return ort_fail(api, st, YS_ERR_LOAD, output ? "cannot describe ONNX output" : "cannot describe ONNX input", NULL);
  }
  *name = strdup(ort_name);
  api->AllocatorFree(alloc, ort_name);
  *dtype = ys_dtype_from_onnx(onnx);
  *ndim = (int)rank;
  return *name ? YS_OK : ys_fail(YS_ERR_NOMEM, "out of memory");
}

/* Map the manifest's ports onto the session's: index range, element type, rank. */
static int ort_bind_ports(ys_model* m, const char* path) {
  ort_model_impl* impl = m->impl;
  const ort_api* api = ORT(m->rt);
  size_t n_in = 0, n_out = 0;
  OrtStatus* st = api->SessionGetInputCount(impl->session, &n_in);
  if (!st) st = api->SessionGetOutputCount(impl->session, &n_out);
  if (st) return ort_fail(api, st, YS_ERR_LOAD, "cannot count the session's ports", NULL);
  if ((size_t)m->n_in != n_in)
    return ys_fail(YS_ERR_LOAD, "the manifest has %d inputs, %s has %zu", m->n_in, path, n_in);
  impl->owned = calloc(n_in + n_out + 1, sizeof *impl->owned);
  impl->in_names = calloc((size_t)m->n_in + 1, sizeof *impl->in_names);
  impl->out_names = calloc((size_t)m->n_out + 1, sizeof *impl->out_names);
  if (!impl->owned || !impl->in_names || !impl->out_names) return ys_fail(YS_ERR_NOMEM, "out of memory");
  for (int output = 0; output < 2; output++) {
    int n = output ? m->n_out : m->n_in;
    size_t have = output ? n_out : n_in;
    for (int i = 0; i < n; i++) {
      const ys_port* p = output ? &m->out[i] : &m->in[i];
      if (p->index < 0 || (size_t)p->index >= have)
        return ys_fail(YS_ERR_LOAD, "%s '%s': index %d, %s has %zu", output ? "output" : "input",
                       p->name, p->index, path, have);
      char* name = NULL;
      int dtype = 0, ndim = 0;
      int rc = ort_port(api, impl->session, output, (size_t)p->index, &name, &dtype, &ndim);
      if (rc) return rc;
      impl->owned[impl->n_owned++] = name;
      if (dtype != p->dtype || ndim != p->ndim)
        return ys_fail(YS_ERR_LOAD, "%s '%s' is %s rank %d in %s, %s rank %d in the manifest",
                       output ? "output" : "input", p->name, ys_dtype_name(dtype), ndim, path,
                       ys_dtype_name(p->dtype), p->ndim);
      (output ? impl->out_names : impl->in_names)[i] = name;
    }
  }
  return YS_OK;
}

static int ort_model_open(ys_model* m, const ys_manifest* mf, const char* device, int num_threads) {
  const ort_api* api = ORT(m->rt);
  if (device && *device && strcmp(device, "CPU") != 0)
    return ys_fail(YS_ERR_ARG, "the shim runs ONNX Runtime on its CPU provider, not '%s'", device);
  ort_model_impl* impl = calloc(1, sizeof *impl);
  if (!impl) return ys_fail(YS_ERR_NOMEM, "out of memory");
  m->impl = impl;
  /* Session options as the core's onnxruntime backend sets them (core/backends/onnxruntime.py). */
  OrtSessionOptions* opts = NULL;
  int threads = num_threads > 0 ? num_threads : mf->ort_threads;
  OrtStatus* st = api->CreateSessionOptions(&opts);
  if (!st) st = api->SetSessionGraphOptimizationLevel(opts, mf->ort_optimization);
  if (!st && threads > 0) st = api->SetIntraOpNumThreads(opts, threads);
  if (!st) st = api->SetSessionLogSeverityLevel(opts, ORT_LOGGING_LEVEL_ERROR);
  for (int i = 0; !st && i < mf->n_ort_config; i++)
    st = api->AddSessionConfigEntry(opts, mf->ort_config[i][0], mf->ort_config[i][1]);
  if (!st) st = api->CreateSession(((ort_runtime*)m->rt->impl)->env, mf->model, opts, &impl->session);
  if (opts) api->ReleaseSessionOptions(opts);
  if (st) return ort_fail(api, st, YS_ERR_BACKEND, "ONNX Runtime cannot open", mf->model);
  st = api->CreateCpuMemoryInfo(OrtDeviceAllocator, OrtMemTypeDefault, &impl->cpu);
  if (st) return ort_fail(api, st, YS_ERR_BACKEND, "OrtApi::CreateCpuMemoryInfo failed", NULL);
  return ort_bind_ports(m, mf->model);
}

static int ort_model_run(ys_model* m, const ys_tensor* inputs, ys_tensor* outputs, ys_alloc_fn alloc,
                         void* alloc_ctx, int* short_output) {
  ort_model_impl* impl = m->impl;
  const ort_api* api = ORT(m->rt);
  OrtValue* in_vals[64] = {NULL};
  OrtValue* out_vals[64] = {NULL};
  if (m->n_in > 64 || m->n_out > 64) return ys_fail(YS_ERR_ARG, "the shim runs at most 64 inputs and outputs");
  int rc = YS_OK;
  OrtStatus* st = NULL;
  for (int i = 0; i < m->n_in && !st; i++) {
    const ys_tensor* t = &inputs[i];
    size_t need = ys_dtype_size(t->dtype);
    for (int d = 0; d < t->ndim; d++) need *= (size_t)t->shape[d];
    /* Zero-copy: ONNX Runtime reads the caller's buffer in place. */
    st = api->CreateTensorWithDataAsOrtValue(impl->cpu, t->data, need, t->shape, (size_t)t->ndim,
                                             ys_dtype_to_onnx(t->dtype), &in_vals[i]);
    if (st) rc = ort_fail(api, st, YS_ERR_BACKEND, "cannot wrap input", m->in[i].name);
  }
  if (rc == YS_OK) {
    st = api->Run(impl->session, NULL, impl->in_names, (const OrtValue* const*)in_vals,
                  (size_t)m->n_in, impl->out_names, (size_t)m->n_out, out_vals);
    if (st) rc = ort_fail(api, st, YS_ERR_BACKEND, "ONNX Runtime inference failed", NULL);
  }
  for (int i = 0; i < m->n_out && rc == YS_OK; i++) {
    OrtTensorTypeAndShapeInfo* info = NULL;
    int64_t dims[YS_MAX_DIMS];
    size_t rank = 0;
    int onnx = 0;
    void* data = NULL;
    st = api->GetTensorTypeAndShape(out_vals[i], &info);
    if (!st) st = api->GetTensorElementType(info, &onnx);
    if (!st) st = api->GetDimensionsCount(info, &rank);
    if (!st && rank > YS_MAX_DIMS) st = api->CreateStatus(1, "rank above the shim's maximum");
    if (!st) st = api->GetDimensions(info, dims, rank);
    if (!st) st = api->GetTensorMutableData(out_vals[i], &data);
    if (info) api->ReleaseTensorTypeAndShapeInfo(info);
    if (st) {
      rc = ort_fail(api, st, YS_ERR_BACKEND, "cannot read output", m->out[i].name);
      break;
    }
    int dtype = ys_dtype_from_onnx(onnx);
    size_t nbytes = ys_dtype_size(dtype);
    for (size_t d = 0; d < rank; d++) nbytes *= (size_t)dims[d];
    rc = ys_deliver(&m->out[i], i, &outputs[i], dtype, (int)rank, dims, data, nbytes, alloc,
                    alloc_ctx, short_output);
  }
  for (int i = 0; i < m->n_in; i++) if (in_vals[i]) api->ReleaseValue(in_vals[i]);
  for (int i = 0; i < m->n_out; i++) if (out_vals[i]) api->ReleaseValue(out_vals[i]);
  return rc;
}

const ys_backend_ops ys_onnxruntime_ops = {
  .backend = YS_BACKEND_ONNXRUNTIME,
  .runtime_open = ort_runtime_open,
  .runtime_close = ort_runtime_close,
  .model_open = ort_model_open,
  .model_close = ort_model_close,
  .model_run = ort_model_run,
};
