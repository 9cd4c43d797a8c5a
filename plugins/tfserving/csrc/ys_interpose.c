/*
 * ys_interpose.c - LD_PRELOAD interposer for TensorFlow's C API.
 *
 * TF_LoadSessionFromSavedModel: after the real call, looks for boosted signatures under
 * <export_dir>/yellowstone/<signature>/shim.txt and opens each with the shim.
 * TF_SessionRun: a run whose feeds are exactly one boosted signature's inputs and whose fetches
 * are among its outputs (no targets) is answered by the shim; every other call, and every call
 * on other sessions, goes to the real TensorFlow untouched (dlvsym(RTLD_NEXT, ..., "tensorflow")).
 *
 * Process-wide state is unavoidable here (the program calls TensorFlow's global entry points):
 * one mutex-guarded registry of boosted sessions and one lazily opened runtime per backend.
 * YS_OPENVINO_C_LIB / YS_ONNXRUNTIME_C_LIB name the backends' C libraries (else the manifest's
 * "ovlib" / "ortlib" line);
 * YS_SHIM_TRACE=1 logs each decision to stderr; YS_SHIM_DISABLE=1 passes everything through.
 */
#define _GNU_SOURCE
#include <dirent.h>
#include <dlfcn.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ys_shim.h"

/* ---- the few TensorFlow C API types and functions used (tensorflow/c/c_api.h) ----------- */
typedef struct TF_Session TF_Session;
typedef struct TF_SessionOptions TF_SessionOptions;
typedef struct TF_Buffer TF_Buffer;
typedef struct TF_Graph TF_Graph;
typedef struct TF_Status TF_Status;
typedef struct TF_Tensor TF_Tensor;
typedef struct TF_Operation TF_Operation;
typedef struct { TF_Operation* oper; int index; } TF_Output;
enum { TF_OK = 0, TF_INVALID_ARGUMENT = 3, TF_INTERNAL = 13 };
/* TF_DataType values. */
enum { TF_FLOAT = 1, TF_DOUBLE = 2, TF_INT32 = 3, TF_UINT8 = 4, TF_INT16 = 5, TF_INT8 = 6,
       TF_INT64 = 9, TF_BOOL = 10, TF_UINT16 = 17, TF_HALF = 19, TF_UINT32 = 22, TF_UINT64 = 23 };

typedef TF_Session* (*load_fn)(const TF_SessionOptions*, const TF_Buffer*, const char*,
                               const char* const*, int, TF_Graph*, TF_Buffer*, TF_Status*);
typedef void (*run_fn)(TF_Session*, const TF_Buffer*, const TF_Output*, TF_Tensor* const*, int,
                       const TF_Output*, TF_Tensor**, int, const TF_Operation* const*, int,
                       TF_Buffer*, TF_Status*);
typedef void (*delete_fn)(TF_Session*, TF_Status*);

static struct {
  load_fn load;
  run_fn run;
  delete_fn del;
  int (*get_code)(const TF_Status*);
  void (*set_status)(TF_Status*, int, const char*);
  const char* (*op_name)(TF_Operation*);
  int (*tensor_type)(const TF_Tensor*);
  int (*num_dims)(const TF_Tensor*);
  int64_t (*dim)(const TF_Tensor*, int);
  void* (*tensor_data)(const TF_Tensor*);
  size_t (*tensor_bytes)(const TF_Tensor*);
  TF_Tensor* (*allocate)(int, const int64_t*, int, size_t);
  void (*delete_tensor)(TF_Tensor*);
} tf;

static pthread_once_t tf_once = PTHREAD_ONCE_INIT;
static int trace, disabled;

static void* tf_sym(const char* name) {
  void* p = dlvsym(RTLD_NEXT, name, "tensorflow");
  return p ? p : dlsym(RTLD_NEXT, name);
}

static void tf_resolve(void) {
  trace = getenv("YS_SHIM_TRACE") && *getenv("YS_SHIM_TRACE") == '1';
  disabled = getenv("YS_SHIM_DISABLE") && *getenv("YS_SHIM_DISABLE") == '1';
  *(void**)&tf.load = tf_sym("TF_LoadSessionFromSavedModel");
  *(void**)&tf.run = tf_sym("TF_SessionRun");
  *(void**)&tf.del = tf_sym("TF_DeleteSession");
  *(void**)&tf.get_code = tf_sym("TF_GetCode");
  *(void**)&tf.set_status = tf_sym("TF_SetStatus");
  *(void**)&tf.op_name = tf_sym("TF_OperationName");
  *(void**)&tf.tensor_type = tf_sym("TF_TensorType");
  *(void**)&tf.num_dims = tf_sym("TF_NumDims");
  *(void**)&tf.dim = tf_sym("TF_Dim");
  *(void**)&tf.tensor_data = tf_sym("TF_TensorData");
  *(void**)&tf.tensor_bytes = tf_sym("TF_TensorByteSize");
  *(void**)&tf.allocate = tf_sym("TF_AllocateTensor");
  *(void**)&tf.delete_tensor = tf_sym("TF_DeleteTensor");
}

#define YS_TRACE(...) do { if (trace) { fprintf(stderr, "ys-shim: " __VA_ARGS__); fputc('\n', stderr); } } while (0)

static int ys_from_tf(int t) {
  switch (t) {
    case TF_FLOAT: return YS_DT_FLOAT32;   case TF_DOUBLE: return YS_DT_FLOAT64;
    case TF_HALF: return YS_DT_FLOAT16;    case TF_INT8: return YS_DT_INT8;
    case TF_INT16: return YS_DT_INT16;     case TF_INT32: return YS_DT_INT32;
    case TF_INT64: return YS_DT_INT64;     case TF_UINT8: return YS_DT_UINT8;
    case TF_UINT16: return YS_DT_UINT16;   case TF_UINT32: return YS_DT_UINT32;
    case TF_UINT64: return YS_DT_UINT64;   case TF_BOOL: return YS_DT_BOOL;
    default: return YS_DT_INVALID;
  }
}
static int tf_from_ys(int t) {
  static const int map[] = {0, TF_FLOAT, TF_DOUBLE, TF_HALF, TF_INT8, TF_INT16, TF_INT32, TF_INT64,
                            TF_UINT8, TF_UINT16, TF_UINT32, TF_UINT64, TF_BOOL};
  return (t > 0 && t < (int)(sizeof map / sizeof map[0])) ? map[t] : 0;
}

/* ---- registry of boosted sessions ---------------------------------------------------------- */
typedef struct boosted_sig {
  ys_model* model;
  int n_in, n_out;
  char** in_ops;  /* graph op name per input (tensor name before ':') */
  int* in_idx;
  char** out_ops;
  int* out_idx;
  struct boosted_sig* next;
} boosted_sig;

typedef struct session_entry {
  TF_Session* session;
  boosted_sig* sigs;
  struct session_entry* next;
} session_entry;

static pthread_mutex_t reg_lock = PTHREAD_MUTEX_INITIALIZER;
static session_entry* registry;
static ys_runtime* runtimes[3]; /* per YS_BACKEND_*, opened on first use */

static void split_tensor_name(const char* full, char** op, int* idx) {
  const char* colon = strrchr(full, ':');
  size_t n = colon ? (size_t)(colon - full) : strlen(full);
  *op = strndup(full, n);
  *idx = colon ? atoi(colon + 1) : 0;
}

static void free_sig(boosted_sig* s) {
  for (int i = 0; i < s->n_in; i++) free(s->in_ops[i]);
  for (int i = 0; i < s->n_out; i++) free(s->out_ops[i]);
  free(s->in_ops); free(s->in_idx); free(s->out_ops); free(s->out_idx);
  ys_model_close(s->model);
  free(s);
}

/* The backend's runtime, opened on first use from YS_OPENVINO_C_LIB / YS_ONNXRUNTIME_C_LIB, else
 * from the manifest's "ovlib" / "ortlib" line. Called with reg_lock held. */
static ys_runtime* backend_runtime(const char* dir) {
  char lib[4096] = "";
  int backend = YS_BACKEND_INVALID;
  if (ys_manifest_backend(dir, &backend, lib, sizeof lib) != YS_OK) {
    YS_TRACE("%s; TensorFlow serves", ys_last_error());
    return NULL;
  }
  if (runtimes[backend]) return runtimes[backend];
  const char* env = getenv(backend == YS_BACKEND_ONNXRUNTIME ? "YS_ONNXRUNTIME_C_LIB" : "YS_OPENVINO_C_LIB");
  if (env && *env) snprintf(lib, sizeof lib, "%s", env);
  if (!*lib) {
    YS_TRACE("%s: no %s C library (set %s); TensorFlow serves", dir, ys_backend_name(backend),
             backend == YS_BACKEND_ONNXRUNTIME ? "YS_ONNXRUNTIME_C_LIB" : "YS_OPENVINO_C_LIB");
    return NULL;
  }
  if (ys_runtime_open_backend(backend, lib, &runtimes[backend]) != YS_OK) {
    YS_TRACE("%s; TensorFlow serves", ys_last_error());
    return NULL;
  }
  return runtimes[backend];
}

static boosted_sig* open_sig(const char* dir) {
  ys_runtime* runtime = backend_runtime(dir);
  if (!runtime) return NULL;
  ys_model* model = NULL;
  if (ys_model_open(runtime, dir, "CPU", 0, &model) != YS_OK) {
    YS_TRACE("cannot open %s: %s; TensorFlow serves", dir, ys_last_error());
    return NULL;
  }
  boosted_sig* s = calloc(1, sizeof *s);
  s->model = model;
  ys_model_num_inputs(model, &s->n_in);
  ys_model_num_outputs(model, &s->n_out);
  s->in_ops = calloc((size_t)s->n_in, sizeof *s->in_ops);
  s->in_idx = calloc((size_t)s->n_in, sizeof *s->in_idx);
  s->out_ops = calloc((size_t)s->n_out, sizeof *s->out_ops);
  s->out_idx = calloc((size_t)s->n_out, sizeof *s->out_idx);
  ys_tensor_info info;
  for (int i = 0; i < s->n_in; i++) {
    ys_model_input(model, i, &info);
    split_tensor_name(info.tensor_name, &s->in_ops[i], &s->in_idx[i]);
  }
  for (int i = 0; i < s->n_out; i++) {
    ys_model_output(model, i, &info);
    split_tensor_name(info.tensor_name, &s->out_ops[i], &s->out_idx[i]);
  }
  const char* key = "";
  ys_model_signature(model, &key);
  int backend = 0;
  ys_model_backend(model, &backend);
  YS_TRACE("boosted signature '%s' loaded from %s (%s)", key, dir, ys_backend_name(backend));
  return s;
}

YS_API TF_Session* TF_LoadSessionFromSavedModel(const TF_SessionOptions* opts, const TF_Buffer* run_opts,
                                         const char* export_dir, const char* const* tags,
                                         int tags_len, TF_Graph* graph, TF_Buffer* meta_graph_def,
                                         TF_Status* status) {
  pthread_once(&tf_once, tf_resolve);
  TF_Session* session = tf.load(opts, run_opts, export_dir, tags, tags_len, graph, meta_graph_def, status);
  if (!session || disabled || tf.get_code(status) != TF_OK) return session;
  char root[4096];
  snprintf(root, sizeof root, "%s/yellowstone", export_dir);
  DIR* d = opendir(root);
  if (!d) return session;
  session_entry* entry = calloc(1, sizeof *entry);
  entry->session = session;
  pthread_mutex_lock(&reg_lock);
  struct dirent* de;
  while ((de = readdir(d)) != NULL) {
    if (de->d_name[0] == '.') continue;
    char dir[4400], probe[4500];  /* root (4096) + '/' + name (<= 255) */
    snprintf(dir, sizeof dir, "%s/%s", root, de->d_name);
    snprintf(probe, sizeof probe, "%s/shim.txt", dir);
    FILE* fh = fopen(probe, "r");
    if (!fh) continue;
    fclose(fh);
    boosted_sig* s = open_sig(dir);
    if (s) { s->next = entry->sigs; entry->sigs = s; }
  }
  closedir(d);
  if (entry->sigs) { entry->next = registry; registry = entry; }
  else free(entry);
  pthread_mutex_unlock(&reg_lock);
  return session;
}

YS_API void TF_DeleteSession(TF_Session* session, TF_Status* status) {
  pthread_once(&tf_once, tf_resolve);
  pthread_mutex_lock(&reg_lock);
  for (session_entry** p = &registry; *p; p = &(*p)->next) {
    if ((*p)->session == session) {
      session_entry* e = *p;
      *p = e->next;
      while (e->sigs) { boosted_sig* s = e->sigs; e->sigs = s->next; free_sig(s); }
      free(e);
      break;
    }
  }
  pthread_mutex_unlock(&reg_lock);
  tf.del(session, status);
}

static int find_port(char** ops, const int* idx, int n, const TF_Output* o) {
  const char* name = tf.op_name(o->oper);
  for (int i = 0; i < n; i++)
    if (idx[i] == o->index && strcmp(ops[i], name) == 0) return i;
  return -1;
}

/* Match a run to a boosted signature: feeds exactly its inputs, fetches among its outputs. */
static boosted_sig* match(TF_Session* session, const TF_Output* inputs, int ninputs,
                          const TF_Output* outputs, int noutputs, int ntargets,
                          int* feed_of_input, int* output_of_fetch) {
  if (ntargets != 0 || noutputs == 0) return NULL;
  pthread_mutex_lock(&reg_lock);
  session_entry* e = registry;
  while (e && e->session != session) e = e->next;
  boosted_sig* found = NULL;
  for (boosted_sig* s = e ? e->sigs : NULL; s && !found; s = s->next) {
    if (s->n_in != ninputs) continue;
    int ok = 1;
    for (int i = 0; i < s->n_in; i++) feed_of_input[i] = -1;
    for (int f = 0; f < ninputs && ok; f++) {
      int i = find_port(s->in_ops, s->in_idx, s->n_in, &inputs[f]);
      ok = i >= 0 && feed_of_input[i] < 0;
      if (ok) feed_of_input[i] = f;
    }
    for (int f = 0; f < noutputs && ok; f++) {
      output_of_fetch[f] = find_port(s->out_ops, s->out_idx, s->n_out, &outputs[f]);
      ok = output_of_fetch[f] >= 0;
    }
    if (ok) found = s;
  }
  pthread_mutex_unlock(&reg_lock);
  return found;
}

typedef struct {
  TF_Tensor** tensors; /* one per model output (NULL until allocated) */
} alloc_ctx;

static void* alloc_tf(void* ctx, int index, const ys_tensor* desc) {
  alloc_ctx* a = ctx;
  a->tensors[index] = tf.allocate(tf_from_ys(desc->dtype), desc->shape, desc->ndim, desc->nbytes);
  return a->tensors[index] ? tf.tensor_data(a->tensors[index]) : NULL;
}

YS_API void TF_SessionRun(TF_Session* session, const TF_Buffer* run_options, const TF_Output* inputs,
                   TF_Tensor* const* input_values, int ninputs, const TF_Output* outputs,
                   TF_Tensor** output_values, int noutputs, const TF_Operation* const* targets,
                   int ntargets, TF_Buffer* run_metadata, TF_Status* status) {
  pthread_once(&tf_once, tf_resolve);
  boosted_sig* s = NULL;
  int feed_of_input[64], output_of_fetch[256];
  if (!disabled && registry && ninputs <= 64 && noutputs <= 256)
    s = match(session, inputs, ninputs, outputs, noutputs, ntargets, feed_of_input, output_of_fetch);
  if (!s) {
    YS_TRACE("TF_SessionRun -> tensorflow");
    tf.run(session, run_options, inputs, input_values, ninputs, outputs, output_values, noutputs,
           targets, ntargets, run_metadata, status);
    return;
  }
  ys_tensor in[64];
  for (int i = 0; i < s->n_in; i++) {
    const TF_Tensor* t = input_values[feed_of_input[i]];
    in[i].dtype = ys_from_tf(tf.tensor_type(t));
    in[i].ndim = tf.num_dims(t);
    if (in[i].ndim > YS_MAX_DIMS) in[i].ndim = YS_MAX_DIMS + 1;
    for (int d = 0; d < in[i].ndim && d < YS_MAX_DIMS; d++) in[i].shape[d] = tf.dim(t, d);
    in[i].data = tf.tensor_data(t);
    in[i].nbytes = tf.tensor_bytes(t);
  }
  ys_tensor* out = calloc((size_t)s->n_out, sizeof *out);
  TF_Tensor** made = calloc((size_t)s->n_out, sizeof *made);
  alloc_ctx ctx = {made};
  int rc = ys_model_run(s->model, in, s->n_in, out, s->n_out, alloc_tf, &ctx);
  if (rc != YS_OK) {
    for (int i = 0; i < s->n_out; i++) if (made[i]) tf.delete_tensor(made[i]);
    for (int f = 0; f < noutputs; f++) output_values[f] = NULL;
    tf.set_status(status, rc == YS_ERR_SHAPE || rc == YS_ERR_DTYPE || rc == YS_ERR_ARG
                              ? TF_INVALID_ARGUMENT : TF_INTERNAL, ys_last_error());
    YS_TRACE("TF_SessionRun -> shim failed: %s", ys_last_error());
  } else {
    int* used = calloc((size_t)s->n_out, sizeof *used);
    for (int f = 0; f < noutputs; f++) {
      int j = output_of_fetch[f];
      if (!used[j]) { output_values[f] = made[j]; used[j] = 1; continue; }
      /* The same output fetched twice: hand out a copy. */
      TF_Tensor* c = tf.allocate(tf_from_ys(out[j].dtype), out[j].shape, out[j].ndim, out[j].nbytes);
      memcpy(tf.tensor_data(c), out[j].data, out[j].nbytes);
      output_values[f] = c;
    }
    for (int j = 0; j < s->n_out; j++) if (!used[j] && made[j]) tf.delete_tensor(made[j]);
    free(used);
    tf.set_status(status, TF_OK, "");
    const char* key = "";
    ys_model_signature(s->model, &key);
    YS_TRACE("TF_SessionRun -> shim (signature '%s')", key);
  }
  free(made);
  free(out);
}
