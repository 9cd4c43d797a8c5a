/*
 * ys_shim.c - the shim's core: errors, dtypes, the manifest, ports, input checks, output hand-over,
 * and the public API, which dispatches to the backend a runtime loaded (ys_backend.h).
 */
#define _GNU_SOURCE
#include "ys_backend.h"

#include <dlfcn.h>
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define YS_VERSION "0.2.0"

/* ---- thread-local error --------------------------------------------------------------- */
static __thread char ys_err_buf[2048];

const char* ys_last_error(void) { return ys_err_buf; }
const char* ys_version(void) { return YS_VERSION; }

int ys_fail(int code, const char* fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(ys_err_buf, sizeof ys_err_buf, fmt, ap);
  va_end(ap);
  return code;
}

/* ---- dtypes ---------------------------------------------------------------------------- */
/* ov: ov_element_type_e (openvino/c/ov_common.h); onnx: ONNXTensorElementDataType. */
static const struct { const char* name; size_t size; int ov; int onnx; } ys_dtypes[] = {
  [YS_DT_INVALID] = {"invalid", 0, 0, 0},  [YS_DT_FLOAT32] = {"float32", 4, 4, 1},
  [YS_DT_FLOAT64] = {"float64", 8, 5, 11}, [YS_DT_FLOAT16] = {"float16", 2, 3, 10},
  [YS_DT_INT8] = {"int8", 1, 7, 3},        [YS_DT_INT16] = {"int16", 2, 8, 5},
  [YS_DT_INT32] = {"int32", 4, 9, 6},      [YS_DT_INT64] = {"int64", 8, 10, 7},
  [YS_DT_UINT8] = {"uint8", 1, 16, 2},     [YS_DT_UINT16] = {"uint16", 2, 17, 4},
  [YS_DT_UINT32] = {"uint32", 4, 18, 12},  [YS_DT_UINT64] = {"uint64", 8, 19, 13},
  [YS_DT_BOOL] = {"bool", 1, 1, 9},
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
int ys_dtype_to_ov(int dtype) { return (dtype > 0 && dtype < YS_NDTYPES) ? ys_dtypes[dtype].ov : 0; }
int ys_dtype_to_onnx(int dtype) { return (dtype > 0 && dtype < YS_NDTYPES) ? ys_dtypes[dtype].onnx : 0; }
int ys_dtype_from_ov(int ov) {
  for (int i = 1; i < YS_NDTYPES; i++)
    if (ys_dtypes[i].ov == ov) return i;
  return YS_DT_INVALID;
}
int ys_dtype_from_onnx(int onnx) {
  for (int i = 1; i < YS_NDTYPES; i++)
    if (ys_dtypes[i].onnx == onnx) return i;
  return YS_DT_INVALID;
}

/* ---- backends -------------------------------------------------------------------------- */
static const ys_backend_ops* ys_ops(int backend) {
  switch (backend) {
    case YS_BACKEND_OPENVINO: return &ys_openvino_ops;
    case YS_BACKEND_ONNXRUNTIME: return &ys_onnxruntime_ops;
    default: return NULL;
  }
}

const char* ys_backend_name(int backend) {
  switch (backend) {
    case YS_BACKEND_OPENVINO: return "openvino";
    case YS_BACKEND_ONNXRUNTIME: return "onnxruntime";
    default: return "invalid";
  }
}

int ys_backend_from_name(const char* name) {
  if (name && strcmp(name, "openvino") == 0) return YS_BACKEND_OPENVINO;
  if (name && strcmp(name, "onnxruntime") == 0) return YS_BACKEND_ONNXRUNTIME;
  return YS_BACKEND_INVALID;
}

int ys_runtime_open_backend(int backend, const char* path, ys_runtime** out) {
  if (!path || !out) return ys_fail(YS_ERR_ARG, "ys_runtime_open: NULL argument");
  *out = NULL;
  const ys_backend_ops* ops = ys_ops(backend);
  if (!ops) return ys_fail(YS_ERR_ARG, "unknown backend %d", backend);
  void* lib = dlopen(path, RTLD_NOW | RTLD_LOCAL);
  if (!lib)
    return ys_fail(YS_ERR_LOAD, "cannot load the %s C library %s: %s", ys_backend_name(backend),
                   path, dlerror());
  ys_runtime* rt = calloc(1, sizeof *rt);
  if (!rt) { dlclose(lib); return ys_fail(YS_ERR_NOMEM, "out of memory"); }
  rt->ops = ops;
  rt->lib = lib;
  int rc = ops->runtime_open(rt, path);
  if (rc != YS_OK) {
    dlclose(lib);
    free(rt);
    return rc;
  }
  *out = rt;
  return YS_OK;
}

int ys_runtime_open(const char* path, ys_runtime** out) {
  return ys_runtime_open_backend(YS_BACKEND_OPENVINO, path, out);
}

int ys_runtime_close(ys_runtime* rt) {
  if (!rt) return YS_OK;
  rt->ops->runtime_close(rt);
  /* The library stays mapped: the backends keep threads that outlive their objects. */
  free(rt);
  return YS_OK;
}

int ys_runtime_backend(const ys_runtime* rt, int* backend) {
  if (!rt || !backend) return ys_fail(YS_ERR_ARG, "NULL argument");
  *backend = rt->ops->backend;
  return YS_OK;
}

int ys_runtime_version(const ys_runtime* rt, const char** version) {
  if (!rt || !version) return ys_fail(YS_ERR_ARG, "NULL argument");
  *version = rt->version;
  return YS_OK;
}

/* ---- the manifest ---------------------------------------------------------------------- */
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

static void ys_manifest_free(ys_manifest* mf) {
  for (int i = 0; i < mf->n_ort_config; i++) { free(mf->ort_config[i][0]); free(mf->ort_config[i][1]); }
  mf->n_ort_config = 0;
}

/* Parse one "input|output NAME TENSOR DTYPE INDEX NDIM D0 D1 ..." line. */
static int ys_parse_port(char* rest, ys_port* p, const char* where) {
  char* save = NULL;
  char* name = strtok_r(rest, " \t", &save);
  char* tensor = strtok_r(NULL, " \t", &save);
  char* dtype = strtok_r(NULL, " \t", &save);
  char* idx = strtok_r(NULL, " \t", &save);
  char* ndim = strtok_r(NULL, " \t", &save);
  if (!name || !tensor || !dtype || !idx || !ndim)
    return ys_fail(YS_ERR_LOAD, "%s: truncated port line", where);
  p->name = ys_strdup(name);
  p->tensor_name = ys_strdup(strcmp(tensor, "-") == 0 ? "" : tensor);
  p->dtype = ys_dtype_from_name(dtype);
  p->index = atoi(idx);
  p->ndim = atoi(ndim);
  if (!p->name || !p->tensor_name) return ys_fail(YS_ERR_NOMEM, "out of memory");
  if (p->dtype == YS_DT_INVALID) return ys_fail(YS_ERR_LOAD, "%s: unsupported dtype %s", where, dtype);
  if (p->ndim < 0 || p->ndim > YS_MAX_DIMS) return ys_fail(YS_ERR_LOAD, "%s: bad rank %s", where, ndim);
  for (int d = 0; d < p->ndim; d++) {
    char* v = strtok_r(NULL, " \t", &save);
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

/* Parse dir/shim.txt into mf and (when m is not NULL) m's signature and ports. `library` (cap
 * bytes, may be NULL) receives the backend's "ovlib"/"ortlib" path. */
static int ys_read_manifest(const char* dir, ys_manifest* mf, ys_model* m, char* library, size_t cap) {
  char path[YS_PATH_MAX + 16];
  memset(mf, 0, sizeof *mf);
  snprintf(path, sizeof path, "%s/shim.txt", dir);
  FILE* fh = fopen(path, "r");
  if (!fh) return ys_fail(YS_ERR_LOAD, "cannot open %s: %s", path, strerror(errno));
  mf->backend = YS_BACKEND_OPENVINO; /* manifests without a "backend" line predate onnxruntime */
  mf->ort_optimization = 99;
  snprintf(mf->precision, sizeof mf->precision, "f32");
  char ovlib[YS_PATH_MAX] = "", ortlib[YS_PATH_MAX] = "", line[8192], where[YS_PATH_MAX + 64];
  int rc = YS_OK, lineno = 0, header = 0;
  while (rc == YS_OK && fgets(line, sizeof line, fh)) {
    lineno++;
    snprintf(where, sizeof where, "%s:%d", path, lineno);
    line[strcspn(line, "\r\n")] = 0;
    if (!*line || *line == '#') continue;
    char* sp = strchr(line, ' ');
    char* rest = sp ? sp + 1 : line + strlen(line);
    if (sp) *sp = 0;
    if (strcmp(line, "ys-shim") == 0) {
      header = atoi(rest);
    } else if (strcmp(line, "backend") == 0) {
      mf->backend = ys_backend_from_name(rest);
      if (mf->backend == YS_BACKEND_INVALID)
        rc = ys_fail(YS_ERR_LOAD, "%s: unknown backend '%s'", where, rest);
    } else if (strcmp(line, "xml") == 0 || strcmp(line, "onnx") == 0) {
      snprintf(mf->model, sizeof mf->model, "%s/%s", dir, rest);
    } else if (strcmp(line, "bin") == 0) {
      snprintf(mf->weights, sizeof mf->weights, "%s/%s", dir, rest);
    } else if (strcmp(line, "precision") == 0) {
      snprintf(mf->precision, sizeof mf->precision, "%s", rest);
    } else if (strcmp(line, "ovlib") == 0) {
      snprintf(ovlib, sizeof ovlib, "%s", rest);
    } else if (strcmp(line, "ortlib") == 0) {
      snprintf(ortlib, sizeof ortlib, "%s", rest);
    } else if (strcmp(line, "ort_threads") == 0) {
      mf->ort_threads = atoi(rest);
    } else if (strcmp(line, "ort_optimization") == 0) {
      mf->ort_optimization = atoi(rest);
    } else if (strcmp(line, "ort_config") == 0) {
      char* value = strchr(rest, ' ');
      if (!value || mf->n_ort_config == (int)(sizeof mf->ort_config / sizeof mf->ort_config[0])) {
        rc = ys_fail(YS_ERR_LOAD, "%s: ort_config needs KEY VALUE (at most 64 entries)", where);
      } else {
        *value++ = 0;
        char** kv = mf->ort_config[mf->n_ort_config++];
        kv[0] = ys_strdup(rest);
        kv[1] = ys_strdup(value);
        if (!kv[0] || !kv[1]) rc = ys_fail(YS_ERR_NOMEM, "out of memory");
      }
    } else if (m && strcmp(line, "signature") == 0) {
      free(m->signature);
      m->signature = ys_strdup(rest);
    } else if (m && strcmp(line, "input") == 0) {
      rc = ys_add_port(&m->in, &m->n_in, rest, where);
    } else if (m && strcmp(line, "output") == 0) {
      rc = ys_add_port(&m->out, &m->n_out, rest, where);
    } /* other keys are for the Python side */
  }
  fclose(fh);
  if (rc == YS_OK && header != 1) rc = ys_fail(YS_ERR_LOAD, "%s: not a ys-shim 1 manifest", path);
  if (rc == YS_OK && library && cap)
    snprintf(library, cap, "%s", mf->backend == YS_BACKEND_ONNXRUNTIME ? ortlib : ovlib);
  if (rc == YS_OK && m && (!*mf->model || m->n_in == 0 || m->n_out == 0))
    rc = ys_fail(YS_ERR_LOAD, "%s: needs %s, inputs and outputs", path,
                 mf->backend == YS_BACKEND_ONNXRUNTIME ? "onnx" : "xml");
  return rc;
}

int ys_manifest_backend(const char* dir, int* backend, char* library, size_t cap) {
  if (!dir || !backend) return ys_fail(YS_ERR_ARG, "ys_manifest_backend: NULL argument");
  ys_manifest mf;
  int rc = ys_read_manifest(dir, &mf, NULL, library, cap);
  ys_manifest_free(&mf);
  *backend = rc == YS_OK ? mf.backend : YS_BACKEND_INVALID;
  return rc;
}

/* ---- models ---------------------------------------------------------------------------- */
int ys_model_close(ys_model* m) {
  if (!m) return YS_OK;
  if (m->impl) m->rt->ops->model_close(m);
  ys_free_ports(m->in, m->n_in);
  ys_free_ports(m->out, m->n_out);
  free(m->signature);
  free(m);
  return YS_OK;
}

int ys_model_open(ys_runtime* rt, const char* dir, const char* device, int num_threads,
                  ys_model** out) {
  if (!rt || !dir || !out) return ys_fail(YS_ERR_ARG, "ys_model_open: NULL argument");
  *out = NULL;
  ys_model* m = calloc(1, sizeof *m);
  if (!m) return ys_fail(YS_ERR_NOMEM, "out of memory");
  m->rt = rt;
  ys_manifest mf;
  int rc = ys_read_manifest(dir, &mf, m, NULL, 0);
  if (rc == YS_OK && mf.backend != rt->ops->backend)
    rc = ys_fail(YS_ERR_LOAD, "%s/shim.txt is for the %s backend; this runtime loaded %s", dir,
                 ys_backend_name(mf.backend), ys_backend_name(rt->ops->backend));
  if (rc == YS_OK && !m->signature && !(m->signature = ys_strdup("serving_default")))
    rc = ys_fail(YS_ERR_NOMEM, "out of memory");
  if (rc == YS_OK) rc = rt->ops->model_open(m, &mf, device, num_threads);
  ys_manifest_free(&mf);
  if (rc != YS_OK) {
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
int ys_model_backend(const ys_model* m, int* backend) {
  if (!m || !backend) return ys_fail(YS_ERR_ARG, "NULL argument");
  *backend = m->rt->ops->backend;
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

/* ---- running --------------------------------------------------------------------------- */
void ys_format_shape(char* buf, size_t cap, int ndim, const int64_t* shape) {
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

int ys_deliver(const ys_port* p, int i, ys_tensor* o, int dtype, int ndim, const int64_t* shape,
               const void* data, size_t nbytes, ys_alloc_fn alloc, void* alloc_ctx, int* short_output) {
  if (ndim > YS_MAX_DIMS)
    return ys_fail(YS_ERR_BACKEND, "output '%s' has rank %d > %d", p->name, ndim, YS_MAX_DIMS);
  o->dtype = dtype;
  o->ndim = ndim;
  for (int d = 0; d < ndim; d++) o->shape[d] = shape[d];
  if (dtype != p->dtype)
    return ys_fail(YS_ERR_BACKEND, "output '%s': backend gives %s, manifest says %s", p->name,
                   ys_dtype_name(dtype), ys_dtype_name(p->dtype));
  if (o->data && o->nbytes >= nbytes) {
    if (nbytes) memcpy(o->data, data, nbytes);
    o->nbytes = nbytes;
  } else if (alloc) {
    ys_tensor desc = *o;
    desc.data = NULL;
    desc.nbytes = nbytes;
    void* buf = alloc(alloc_ctx, i, &desc);
    if (!buf && nbytes) return ys_fail(YS_ERR_NOMEM, "allocator gave no buffer for output '%s'", p->name);
    if (nbytes) memcpy(buf, data, nbytes);
    o->data = buf;
    o->nbytes = nbytes;
  } else {
    o->nbytes = nbytes;
    if (*short_output < 0) *short_output = i;
  }
  return YS_OK;
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
  int short_output = -1;
  int rc = m->rt->ops->model_run(m, inputs, outputs, alloc, alloc_ctx, &short_output);
  if (rc == YS_OK && short_output >= 0)
    rc = ys_fail(YS_ERR_OUTPUT_SIZE, "output '%s' needs a larger buffer (shapes filled in)",
                 m->out[short_output].name);
  return rc;
}
