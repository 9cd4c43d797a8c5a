/*
 * ys_shim.c - open, describe and run a boosted model through OpenVINO's C API (dlopen'd).
 *
 * The OpenVINO prototypes used are declared here (opaque handles, plain C types), so no
 * OpenVINO header or library is needed to build this file.
 */
#define _GNU_SOURCE
#include "ys_shim.h"

#include <dlfcn.h>
#include <errno.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define YS_VERSION "0.1.0"

/* ---- thread-local error --------------------------------------------------------------- */
static __thread char ys_err_buf[2048];

const char* ys_last_error(void) { return ys_err_buf; }
const char* ys_version(void) { return YS_VERSION; }

static int ys_fail(int code, const char* fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(ys_err_buf, sizeof ys_err_buf, fmt, ap);
  va_end(ap);
  return code;
}

/* ---- dtypes ---------------------------------------------------------------------------- */
static const struct { const char* name; size_t size; int ov; } ys_dtypes[] = {
  /* ov values follow ov_element_type_e in openvino/c/ov_common.h */
  [YS_DT_INVALID] = {"invalid", 0, 0},   [YS_DT_FLOAT32] = {"float32", 4, 4},
  [YS_DT_FLOAT64] = {"float64", 8, 5},   [YS_DT_FLOAT16] = {"float16", 2, 3},
  [YS_DT_INT8] = {"int8", 1, 7},         [YS_DT_INT16] = {"int16", 2, 8},
  [YS_DT_INT32] = {"int32", 4, 9},       [YS_DT_INT64] = {"int64", 8, 10},
  [YS_DT_UINT8] = {"uint8", 1, 16},      [YS_DT_UINT16] = {"uint16", 2, 17},
  [YS_DT_UINT32] = {"uint32", 4, 18},    [YS_DT_UINT64] = {"uint64", 8, 19},
  [YS_DT_BOOL] = {"bool", 1, 1},
};
#define YS_NDTYPES ((int)(sizeof ys_dtypes / sizeof ys_dtypes[0]))

size_t ys_dtype_size(int dtype) {
  return (dtype > 0 && dtype < YS_NDTYPES) ? ys_dtypes[dtype].size : 0;
}
const char* ys_dtype_name(int dtype) {
  return (dtype > 0 && dtype < YS_NDTYPES) ? ys_dtypes[dtype].name : "invalid";
}
int ys_dtype_from_name(const char* name) {
  for (int i = 1; i < YS_NDTYPES; i++)
    if (name && strcmp(name, ys_dtypes[i].name) == 0) return i;
  return YS_DT_INVALID;
}
static int ys_dtype_from_ov(int ov) {
  for (int i = 1; i < YS_NDTYPES; i++)
    if (ys_dtypes[i].ov == ov) return i;
  return YS_DT_INVALID;
}

/* ---- the OpenVINO C API, declared here ------------------------------------------------- */
typedef struct ov_core ov_core_t;
typedef struct ov_model ov_model_t;
typedef struct ov_compiled_model ov_compiled_model_t;
typedef struct ov_infer_request ov_infer_request_t;
typedef struct ov_tensor ov_tensor_t;
typedef struct { int64_t rank; int64_t* dims; } ov_shape_t;
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
  const char* (*get_last_err_msg)(void);
} ov_api;

struct ys_runtime {
  void* lib;
  ov_api ov;
  ov_core_t* core;
};

static const char* ov_msg(const ys_runtime* rt) {
  const char* m = rt->ov.get_last_err_msg ? rt->ov.get_last_err_msg() : NULL;
  return m && *m ? m : "(no message)";
}

int ys_runtime_open(const char* path, ys_runtime** out) {
  if (!path || !out) return ys_fail(YS_ERR_ARG, "ys_runtime_open: NULL argument");
  *out = NULL;
  void* lib = dlopen(path, RTLD_NOW | RTLD_LOCAL);
  if (!lib) return ys_fail(YS_ERR_LOAD, "cannot load the OpenVINO C library %s: %s", path, dlerror());
  ys_runtime* rt = calloc(1, sizeof *rt);
  if (!rt) { dlclose(lib); return ys_fail(YS_ERR_NOMEM, "out of memory"); }
  rt->lib = lib;
#define YS_SYM(field, name)                                                              \
  do {                                                                                   \
    *(void**)(&rt->ov.field) = dlsym(lib, name);                                         \
    if (!rt->ov.field) {                                                                 \
      dlclose(lib); free(rt);                                                            \
      return ys_fail(YS_ERR_LOAD, "%s has no symbol %s (OpenVINO too old?)", path, name); \
    }                                                                                    \
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
  *(void**)(&rt->ov.get_last_err_msg) = dlsym(lib, "ov_get_last_err_msg"); /* optional */
  if (rt->ov.core_create(&rt->core) != 0) {
    int rc = ys_fail(YS_ERR_BACKEND, "ov_core_create failed: %s", ov_msg(rt));
    dlclose(lib); free(rt);
    return rc;
  }
  *out = rt;
  return YS_OK;
}

int ys_runtime_close(ys_runtime* rt) {
  if (!rt) return YS_OK;
  if (rt->core) rt->ov.core_free(rt->core);
  /* The library stays mapped: OpenVINO's plugins keep threads that outlive the core. */
  free(rt);
  return YS_OK;
}

/* ---- models ---------------------------------------------------------------------------- */
typedef struct {
  char* name;
  char* tensor_name;
  int dtype;
  int ndim;
  int64_t shape[YS_MAX_DIMS];
  int ov_index;
} ys_port;

struct ys_model {
  ys_runtime* rt;
  ov_compiled_model_t* compiled;
  char* signature;
  int n_in, n_out;
  ys_port* in;
  ys_port* out;
  pthread_mutex_t lock; /* guards the idle infer-request stack */
  ov_infer_request_t** idle;
  int n_idle, cap_idle;
};

static char* ys_strdup(const char* s) {
  size_t n = strlen(s) + 1;
  char* d = malloc(n);
  if (d) memcpy(d, s, n);
  return d;
}

static void ys_free_ports(ys_port* p, int n) {
  if (!p) return;
  for (int i = 0; i < n; i++) { free(p[i].name); free(p[i].tensor_name); }
  free(p);
}

int ys_model_close(ys_model* m) {
  if (!m) return YS_OK;
  for (int i = 0; i < m->n_idle; i++) m->rt->ov.infer_request_free(m->idle[i]);
  free(m->idle);
  if (m->compiled) m->rt->ov.compiled_model_free(m->compiled);
  ys_free_ports(m->in, m->n_in);
  ys_free_ports(m->out, m->n_out);
  free(m->signature);
  pthread_mutex_destroy(&m->lock);
  free(m);
  return YS_OK;
}

/* Parse one "input|output NAME TENSOR DTYPE OV_INDEX NDIM D0 D1 ..." line. */
static int ys_parse_port(char* rest, ys_port* p, const char* where) {
  char* save = NULL;
  char* name = strtok_r(rest, " \t\n", &save);
  char* tensor = strtok_r(NULL, " \t\n", &save);
  char* dtype = strtok_r(NULL, " \t\n", &save);
  char* idx = strtok_r(NULL, " \t\n", &save);
  char* ndim = strtok_r(NULL, " \t\n", &save);
  if (!name || !tensor || !dtype || !idx || !ndim)
    return ys_fail(YS_ERR_LOAD, "%s: truncated port line", where);
  p->name = ys_strdup(name);
  p->tensor_name = ys_strdup(strcmp(tensor, "-") == 0 ? "" : tensor);
  p->dtype = ys_dtype_from_name(dtype);
  p->ov_index = atoi(idx);
  p->ndim = atoi(ndim);
  if (!p->name || !p->tensor_name) return ys_fail(YS_ERR_NOMEM, "out of memory");
  if (p->dtype == YS_DT_INVALID) return ys_fail(YS_ERR_LOAD, "%s: unsupported dtype %s", where, dtype);
  if (p->ndim < 0 || p->ndim > YS_MAX_DIMS) return ys_fail(YS_ERR_LOAD, "%s: bad rank %s", where, ndim);
  for (int d = 0; d < p->ndim; d++) {
    char* v = strtok_r(NULL, " \t\n", &save);
    if (!v) return ys_fail(YS_ERR_LOAD, "%s: missing dimension", where);
    p->shape[d] = strtoll(v, NULL, 10);
  }
  return YS_OK;
}

static int ys_add_port(ys_port** arr, int* n, char* rest, const char* where) {
  ys_port* grown = realloc(*arr, (size_t)(*n + 1) * sizeof **arr);
  if (!grown) return ys_fail(YS_ERR_NOMEM, "out of memory");
  *arr = grown;
  memset(&grown[*n], 0, sizeof grown[*n]);
  (*n)++;
  return ys_parse_port(rest, &grown[*n - 1], where);
}

int ys_model_open(ys_runtime* rt, const char* dir, const char* device, int num_threads,
                  ys_model** out) {
  if (!rt || !dir || !out) return ys_fail(YS_ERR_ARG, "ys_model_open: NULL argument");
  *out = NULL;
  char path[4096], xml[4096] = "", bin[4096] = "", precision[32] = "f32";
  snprintf(path, sizeof path, "%s/shim.txt", dir);
  FILE* fh = fopen(path, "r");
  if (!fh) return ys_fail(YS_ERR_LOAD, "cannot open %s: %s", path, strerror(errno));
  ys_model* m = calloc(1, sizeof *m);
  if (!m) { fclose(fh); return ys_fail(YS_ERR_NOMEM, "out of memory"); }
  m->rt = rt;
  pthread_mutex_init(&m->lock, NULL);
  char line[8192];
  int rc = YS_OK, lineno = 0, header = 0;
  while (rc == YS_OK && fgets(line, sizeof line, fh)) {
    lineno++;
    char where[4200];
    snprintf(where, sizeof where, "%s:%d", path, lineno);
    char* nl = strchr(line, '\n');
    if (nl) *nl = 0;
    if (!*line || *line == '#') continue;
    char* sp = strchr(line, ' ');
    char* rest = sp ? sp + 1 : line + strlen(line);
    if (sp) *sp = 0;
    if (strcmp(line, "ys-shim") == 0) {
      header = atoi(rest);
    } else if (strcmp(line, "xml") == 0) {
      snprintf(xml, sizeof xml, "%s/%s", dir, rest);
    } else if (strcmp(line, "bin") == 0) {
      snprintf(bin, sizeof bin, "%s/%s", dir, rest);
    } else if (strcmp(line, "precision") == 0) {
      snprintf(precision, sizeof precision, "%s", rest);
    } else if (strcmp(line, "signature") == 0) {
      free(m->signature);
      m->signature = ys_strdup(rest);
    } else if (strcmp(line, "input") == 0) {
      rc = ys_add_port(&m->in, &m->n_in, rest, where);
    } else if (strcmp(line, "output") == 0) {
      rc = ys_add_port(&m->out, &m->n_out, rest, where);
    } /* other keys are for the Python side and the interposer */
  }
  fclose(fh);
  if (rc == YS_OK && header != 1) rc = ys_fail(YS_ERR_LOAD, "%s: not a ys-shim 1 manifest", path);
  if (rc == YS_OK && (!*xml || m->n_in == 0 || m->n_out == 0))
    rc = ys_fail(YS_ERR_LOAD, "%s: needs xml, inputs and outputs", path);
  if (rc != YS_OK) { ys_model_close(m); return rc; }
  if (!m->signature) m->signature = ys_strdup("serving_default");

  ov_model_t* model = NULL;
  if (rt->ov.core_read_model(rt->core, xml, *bin ? bin : NULL, &model) != 0) {
    rc = ys_fail(YS_ERR_LOAD, "OpenVINO cannot read %s: %s", xml, ov_msg(rt));
    ys_model_close(m);
    return rc;
  }
  char threads[16];
  snprintf(threads, sizeof threads, "%d", num_threads);
  const char* dev = device && *device ? device : "CPU";
  int status = num_threads > 0
      ? rt->ov.core_compile_model(rt->core, model, dev, 6, &m->compiled,
                                  "INFERENCE_PRECISION_HINT", precision,
                                  "PERFORMANCE_HINT", "LATENCY",
                                  "INFERENCE_NUM_THREADS", threads)
      : rt->ov.core_compile_model(rt->core, model, dev, 4, &m->compiled,
                                  "INFERENCE_PRECISION_HINT", precision,
                                  "PERFORMANCE_HINT", "LATENCY");
  rt->ov.model_free(model);
  if (status != 0) {
    rc = ys_fail(YS_ERR_BACKEND, "OpenVINO cannot compile %s for %s: %s", xml, dev, ov_msg(rt));
    m->compiled = NULL;
    ys_model_close(m);
    return rc;
  }
  size_t n_in = 0, n_out = 0;
  rt->ov.compiled_inputs_size(m->compiled, &n_in);
  rt->ov.compiled_outputs_size(m->compiled, &n_out);
  for (int i = 0; i < m->n_in; i++)
    if (m->in[i].ov_index < 0 || (size_t)m->in[i].ov_index >= n_in) rc = YS_ERR_LOAD;
  for (int i = 0; i < m->n_out; i++)
    if (m->out[i].ov_index < 0 || (size_t)m->out[i].ov_index >= n_out) rc = YS_ERR_LOAD;
  if (rc != YS_OK || (size_t)m->n_in != n_in) {
    rc = ys_fail(YS_ERR_LOAD, "%s does not match the compiled model (%zu inputs, %zu outputs)",
                 path, n_in, n_out);
    ys_model_close(m);
    return rc;
  }
  *out = m;
  return YS_OK;
}

int ys_model_signature(const ys_model* m, const char** key) {
  if (!m || !key) return ys_fail(YS_ERR_ARG, "NULL argument");
  *key = m->signature;
  return YS_OK;
}
int ys_model_num_inputs(const ys_model* m, int* n) {
  if (!m || !n) return ys_fail(YS_ERR_ARG, "NULL argument");
  *n = m->n_in;
  return YS_OK;
}
int ys_model_num_outputs(const ys_model* m, int* n) {
  if (!m || !n) return ys_fail(YS_ERR_ARG, "NULL argument");
  *n = m->n_out;
  return YS_OK;
}
static int ys_port_info(const ys_port* ports, int n, int i, ys_tensor_info* info) {
  if (!ports || !info || i < 0 || i >= n) return ys_fail(YS_ERR_ARG, "index %d out of range [0, %d)", i, n);
  info->name = ports[i].name;
  info->tensor_name = ports[i].tensor_name;
  info->dtype = ports[i].dtype;
  info->ndim = ports[i].ndim;
  memcpy(info->shape, ports[i].shape, sizeof info->shape);
  return YS_OK;
}
int ys_model_input(const ys_model* m, int i, ys_tensor_info* info) {
  if (!m) return ys_fail(YS_ERR_ARG, "NULL model");
  return ys_port_info(m->in, m->n_in, i, info);
}
int ys_model_output(const ys_model* m, int i, ys_tensor_info* info) {
  if (!m) return ys_fail(YS_ERR_ARG, "NULL model");
  return ys_port_info(m->out, m->n_out, i, info);
}

static void ys_format_shape(char* buf, size_t cap, int ndim, const int64_t* shape) {
  size_t off = (size_t)snprintf(buf, cap, "[");
  for (int d = 0; d < ndim && off < cap; d++)
    off += (size_t)snprintf(buf + off, cap - off, d ? ",%lld" : "%lld", (long long)shape[d]);
  if (off < cap) snprintf(buf + off, cap - off, "]");
}

static int ys_check_input(const ys_port* p, const ys_tensor* t) {
  if (t->dtype != p->dtype)
    return ys_fail(YS_ERR_DTYPE, "input '%s': expects dtype %s, got %s", p->name,
                   ys_dtype_name(p->dtype), ys_dtype_name(t->dtype));
  int bad = t->ndim != p->ndim;
  for (int d = 0; !bad && d < p->ndim; d++)
    bad = t->shape[d] < 0 || (p->shape[d] >= 0 && p->shape[d] != t->shape[d]);
  if (bad) {
    char want[256], got[256];
    ys_format_shape(want, sizeof want, p->ndim, p->shape);
    ys_format_shape(got, sizeof got, t->ndim, t->shape);
    return ys_fail(YS_ERR_SHAPE, "input '%s': expects shape %s (-1 = any), got %s", p->name, want, got);
  }
  size_t need = ys_dtype_size(t->dtype);
  for (int d = 0; d < t->ndim; d++) need *= (size_t)t->shape[d];
  if (t->nbytes < need || (!t->data && need))
    return ys_fail(YS_ERR_ARG, "input '%s': buffer holds %zu bytes, shape needs %zu", p->name,
                   t->nbytes, need);
  return YS_OK;
}

static int ys_take_request(ys_model* m, ov_infer_request_t** req) {
  pthread_mutex_lock(&m->lock);
  *req = m->n_idle ? m->idle[--m->n_idle] : NULL;
  pthread_mutex_unlock(&m->lock);
  if (*req) return YS_OK;
  if (m->rt->ov.create_infer_request(m->compiled, req) != 0)
    return ys_fail(YS_ERR_BACKEND, "cannot create an infer request: %s", ov_msg(m->rt));
  return YS_OK;
}

static void ys_give_request(ys_model* m, ov_infer_request_t* req) {
  pthread_mutex_lock(&m->lock);
  if (m->n_idle == m->cap_idle) {
    int cap = m->cap_idle ? 2 * m->cap_idle : 4;
    ov_infer_request_t** grown = realloc(m->idle, (size_t)cap * sizeof *grown);
    if (!grown) { pthread_mutex_unlock(&m->lock); m->rt->ov.infer_request_free(req); return; }
    m->idle = grown;
    m->cap_idle = cap;
  }
  m->idle[m->n_idle++] = req;
  pthread_mutex_unlock(&m->lock);
}

int ys_model_run(ys_model* m, const ys_tensor* inputs, int n_inputs, ys_tensor* outputs,
                 int n_outputs, ys_alloc_fn alloc, void* alloc_ctx) {
  if (!m || (!inputs && n_inputs) || (!outputs && n_outputs))
    return ys_fail(YS_ERR_ARG, "ys_model_run: NULL argument");
  if (n_inputs != m->n_in) return ys_fail(YS_ERR_ARG, "model takes %d inputs, got %d", m->n_in, n_inputs);
  if (n_outputs != m->n_out) return ys_fail(YS_ERR_ARG, "model gives %d outputs, got %d buffers", m->n_out, n_outputs);
  for (int i = 0; i < n_inputs; i++) {
    int rc = ys_check_input(&m->in[i], &inputs[i]);
    if (rc) return rc;
  }
  const ov_api* ov = &m->rt->ov;
  ov_infer_request_t* req = NULL;
  int rc = ys_take_request(m, &req);
  if (rc) return rc;
  for (int i = 0; i < n_inputs && rc == YS_OK; i++) {
    ov_shape_t shape;
    ov_tensor_t* t = NULL;
    if (ov->shape_create(inputs[i].ndim, inputs[i].shape, &shape) != 0) {
      rc = ys_fail(YS_ERR_BACKEND, "ov_shape_create failed: %s", ov_msg(m->rt));
      break;
    }
    /* Zero-copy: OpenVINO reads the caller's buffer in place. */
    if (ov->tensor_create_from_host_ptr(ys_dtypes[inputs[i].dtype].ov, shape, inputs[i].data, &t) != 0 ||
        ov->set_input_tensor_by_index(req, (size_t)m->in[i].ov_index, t) != 0)
      rc = ys_fail(YS_ERR_BACKEND, "cannot set input '%s': %s", m->in[i].name, ov_msg(m->rt));
    if (t) ov->tensor_free(t);
    ov->shape_free(&shape);
  }
  if (rc == YS_OK && ov->infer(req) != 0)
    rc = ys_fail(YS_ERR_BACKEND, "OpenVINO inference failed: %s", ov_msg(m->rt));
  int short_output = -1;
  for (int i = 0; i < n_outputs && rc == YS_OK; i++) {
    ov_tensor_t* t = NULL;
    ov_shape_t shape = {0, NULL};
    void* data = NULL;
    size_t nbytes = 0;
    int et = 0;
    if (ov->get_output_tensor_by_index(req, (size_t)m->out[i].ov_index, &t) != 0 ||
        ov->tensor_get_shape(t, &shape) != 0 || ov->tensor_get_byte_size(t, &nbytes) != 0 ||
        ov->tensor_get_element_type(t, &et) != 0 || ov->tensor_data(t, &data) != 0) {
      rc = ys_fail(YS_ERR_BACKEND, "cannot read output '%s': %s", m->out[i].name, ov_msg(m->rt));
    } else if (shape.rank > YS_MAX_DIMS) {
      rc = ys_fail(YS_ERR_BACKEND, "output '%s' has rank %lld > %d", m->out[i].name,
                   (long long)shape.rank, YS_MAX_DIMS);
    } else {
      ys_tensor* o = &outputs[i];
      o->dtype = ys_dtype_from_ov(et);
      o->ndim = (int)shape.rank;
      for (int d = 0; d < o->ndim; d++) o->shape[d] = shape.dims[d];
      if (o->dtype != m->out[i].dtype) {
        rc = ys_fail(YS_ERR_BACKEND, "output '%s': backend gives %s, manifest says %s",
                     m->out[i].name, ys_dtype_name(o->dtype), ys_dtype_name(m->out[i].dtype));
      } else if (o->data && o->nbytes >= nbytes) {
        memcpy(o->data, data, nbytes);
        o->nbytes = nbytes;
      } else if (alloc) {
        ys_tensor desc = *o;
        desc.data = NULL;
        desc.nbytes = nbytes;
        void* buf = alloc(alloc_ctx, i, &desc);
        if (!buf && nbytes) {
          rc = ys_fail(YS_ERR_NOMEM, "allocator gave no buffer for output '%s'", m->out[i].name);
        } else {
          if (nbytes) memcpy(buf, data, nbytes);
          o->data = buf;
          o->nbytes = nbytes;
        }
      } else {
        o->nbytes = nbytes;
        if (short_output < 0) short_output = i;
      }
    }
    if (shape.dims) ov->shape_free(&shape);
    if (t) ov->tensor_free(t);
  }
  ys_give_request(m, req);
  if (rc == YS_OK && short_output >= 0)
    rc = ys_fail(YS_ERR_OUTPUT_SIZE, "output '%s' needs a larger buffer (shapes filled in)",
                 m->out[short_output].name);
  return rc;
}
