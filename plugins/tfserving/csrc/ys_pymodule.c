/*
 * ys_pymodule.c - CPython binding of the shim: yellowstone.plugins.tfserving._ysshim.
 *
 * Zero-copy over any buffer-protocol object (NumPy arrays): inputs are read in place and outputs
 * are written into caller-provided writable buffers. The GIL is released during inference.
 * A non-zero shim status becomes the matching yellowstone.errors exception.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <string.h>

#include "ys_shim.h"

static PyObject *err_base, *err_bad_request, *err_load, *err_compile, *err_unavailable;

static int load_errors(void) {
  if (err_base) return 0;
  PyObject* mod = PyImport_ImportModule("yellowstone.errors");
  if (!mod) return -1;
  err_base = PyObject_GetAttrString(mod, "YellowstoneError");
  err_bad_request = PyObject_GetAttrString(mod, "BadRequestError");
  err_load = PyObject_GetAttrString(mod, "ModelLoadError");
  err_compile = PyObject_GetAttrString(mod, "CompilationError");
  err_unavailable = PyObject_GetAttrString(mod, "BackendUnavailableError");
  Py_DECREF(mod);
  return (err_base && err_bad_request && err_load && err_compile && err_unavailable) ? 0 : -1;
}

/* Raise the exception for a shim status; `opening` picks load-time classes. */
static PyObject* raise_status(int rc, int opening) {
  if (load_errors() < 0) return NULL;
  PyObject* cls = err_base;
  switch (rc) {
    case YS_ERR_ARG: case YS_ERR_SHAPE: case YS_ERR_DTYPE: cls = err_bad_request; break;
    case YS_ERR_LOAD: cls = opening == 2 ? err_unavailable : err_load; break;
    case YS_ERR_BACKEND: cls = opening ? err_compile : err_base; break;
    case YS_ERR_NOMEM: PyErr_SetString(PyExc_MemoryError, ys_last_error()); return NULL;
    default: break;
  }
  PyObject* exc = PyObject_CallFunction(cls, "s", ys_last_error());
  if (!exc) return NULL;
  PyObject* code = PyLong_FromLong(rc);
  if (code) { PyObject_SetAttrString(exc, "shim_status", code); Py_DECREF(code); }
  PyErr_SetObject(cls, exc);
  Py_DECREF(exc);
  return NULL;
}

/* ---- Runtime ---------------------------------------------------------------------------- */
typedef struct {
  PyObject_HEAD
  ys_runtime* rt;
} RuntimeObject;

static int Runtime_init(RuntimeObject* self, PyObject* args, PyObject* kw) {
  static char* names[] = {"c_library", "backend", NULL};
  const char* path;
  const char* backend = "openvino";
  if (!PyArg_ParseTupleAndKeywords(args, kw, "s|s", names, &path, &backend)) return -1;
  int which = ys_backend_from_name(backend);
  if (which == YS_BACKEND_INVALID) {
    PyErr_Format(PyExc_ValueError, "unknown shim backend '%s' (openvino, onnxruntime)", backend);
    return -1;
  }
  if (self->rt) { ys_runtime_close(self->rt); self->rt = NULL; }
  int rc;
  Py_BEGIN_ALLOW_THREADS
  rc = ys_runtime_open_backend(which, path, &self->rt);
  Py_END_ALLOW_THREADS
  if (rc) { raise_status(rc, 2); return -1; }
  return 0;
}

static PyObject* Runtime_backend(RuntimeObject* self, void* c) {
  (void)c;
  int backend = 0;
  if (!self->rt) return PyErr_SetString(PyExc_ValueError, "runtime is not open"), NULL;
  ys_runtime_backend(self->rt, &backend);
  return PyUnicode_FromString(ys_backend_name(backend));
}

static PyObject* Runtime_version(RuntimeObject* self, void* c) {
  (void)c;
  const char* version = "";
  if (!self->rt) return PyErr_SetString(PyExc_ValueError, "runtime is not open"), NULL;
  ys_runtime_version(self->rt, &version);
  return PyUnicode_FromString(version);
}

static PyGetSetDef Runtime_getset[] = {
  {"backend", (getter)Runtime_backend, NULL, "'openvino' or 'onnxruntime'", NULL},
  {"version", (getter)Runtime_version, NULL, "the loaded C library's version", NULL},
  {NULL, NULL, NULL, NULL, NULL},
};

static void Runtime_dealloc(RuntimeObject* self) {
  ys_runtime_close(self->rt);
  Py_TYPE(self)->tp_free((PyObject*)self);
}

static PyTypeObject RuntimeType = {
  PyVarObject_HEAD_INIT(NULL, 0)
  .tp_name = "yellowstone.plugins.tfserving._ysshim.Runtime",
  .tp_basicsize = sizeof(RuntimeObject),
  .tp_flags = Py_TPFLAGS_DEFAULT,
  .tp_doc = "Runtime(c_library, backend='openvino'): one backend's C library, loaded once.\n\n"
            "backend: 'openvino' (libopenvino_c.so.*) or 'onnxruntime' (libonnxruntime.so.*).",
  .tp_new = PyType_GenericNew,
  .tp_init = (initproc)Runtime_init,
  .tp_dealloc = (destructor)Runtime_dealloc,
  .tp_getset = Runtime_getset,
};

/* ---- Model ------------------------------------------------------------------------------ */
typedef struct {
  PyObject_HEAD
  ys_model* model;
  PyObject* runtime; /* keeps the runtime alive while the model lives */
  int n_in, n_out;
} ModelObject;

static int Model_init(ModelObject* self, PyObject* args, PyObject* kw) {
  static char* names[] = {"runtime", "artifact_dir", "device", "threads", NULL};
  PyObject* runtime;
  const char* dir;
  const char* device = "CPU";
  int threads = 0;
  if (!PyArg_ParseTupleAndKeywords(args, kw, "O!s|si", names, &RuntimeType, &runtime, &dir,
                                   &device, &threads))
    return -1;
  if (self->model) return PyErr_SetString(PyExc_RuntimeError, "Model already open"), -1;
  ys_runtime* rt = ((RuntimeObject*)runtime)->rt;
  if (!rt) return PyErr_SetString(PyExc_ValueError, "runtime is not open"), -1;
  int rc;
  Py_BEGIN_ALLOW_THREADS
  rc = ys_model_open(rt, dir, device, threads, &self->model);
  Py_END_ALLOW_THREADS
  if (rc) { raise_status(rc, 1); return -1; }
  Py_INCREF(runtime);
  self->runtime = runtime;
  ys_model_num_inputs(self->model, &self->n_in);
  ys_model_num_outputs(self->model, &self->n_out);
  return 0;
}

static void Model_dealloc(ModelObject* self) {
  ys_model_close(self->model);
  Py_XDECREF(self->runtime);
  Py_TYPE(self)->tp_free((PyObject*)self);
}

static PyObject* Model_close(ModelObject* self, PyObject* unused) {
  (void)unused;
  ys_model_close(self->model);
  self->model = NULL;
  Py_RETURN_NONE;
}

static PyObject* port_list(ModelObject* self, int outputs) {
  if (!self->model) return PyErr_SetString(PyExc_ValueError, "model is closed"), NULL;
  int n = outputs ? self->n_out : self->n_in;
  PyObject* list = PyList_New(n);
  for (int i = 0; list && i < n; i++) {
    ys_tensor_info info;
    int rc = outputs ? ys_model_output(self->model, i, &info) : ys_model_input(self->model, i, &info);
    if (rc) { Py_DECREF(list); return raise_status(rc, 0); }
    PyObject* shape = PyTuple_New(info.ndim);
    for (int d = 0; d < info.ndim; d++) PyTuple_SET_ITEM(shape, d, PyLong_FromLongLong(info.shape[d]));
    PyList_SET_ITEM(list, i, Py_BuildValue("(sssN)", info.name, info.tensor_name,
                                           ys_dtype_name(info.dtype), shape));
  }
  return list;
}
static PyObject* Model_inputs(ModelObject* self, void* c) { (void)c; return port_list(self, 0); }
static PyObject* Model_outputs(ModelObject* self, void* c) { (void)c; return port_list(self, 1); }
static PyObject* Model_signature(ModelObject* self, void* c) {
  (void)c;
  const char* key = NULL;
  if (!self->model) return PyErr_SetString(PyExc_ValueError, "model is closed"), NULL;
  ys_model_signature(self->model, &key);
  return PyUnicode_FromString(key ? key : "");
}

static int dtype_of_view(const Py_buffer* v) {
  const char* f = v->format ? v->format : "B";
  while (*f && strchr("@=<>!", *f)) f++;
  if (!*f || f[1]) return YS_DT_INVALID;
  switch (*f) {
    case 'f': return v->itemsize == 4 ? YS_DT_FLOAT32 : YS_DT_INVALID;
    case 'd': return v->itemsize == 8 ? YS_DT_FLOAT64 : YS_DT_INVALID;
    case 'e': return v->itemsize == 2 ? YS_DT_FLOAT16 : YS_DT_INVALID;
    case '?': return YS_DT_BOOL;
    case 'b': case 'h': case 'i': case 'l': case 'q':
      return v->itemsize == 1 ? YS_DT_INT8 : v->itemsize == 2 ? YS_DT_INT16
           : v->itemsize == 4 ? YS_DT_INT32 : v->itemsize == 8 ? YS_DT_INT64 : YS_DT_INVALID;
    case 'B': case 'H': case 'I': case 'L': case 'Q':
      return v->itemsize == 1 ? YS_DT_UINT8 : v->itemsize == 2 ? YS_DT_UINT16
           : v->itemsize == 4 ? YS_DT_UINT32 : v->itemsize == 8 ? YS_DT_UINT64 : YS_DT_INVALID;
    default: return YS_DT_INVALID;
  }
}

typedef struct {
  PyObject* alloc;    /* Python callable (index, dtype, shape) -> writable buffer */
  Py_buffer* views;   /* one per output, filled when allocated */
  int* held;
  int failed;
} alloc_ctx;

/* Called by the shim without the GIL. */
static void* py_alloc(void* vctx, int index, const ys_tensor* desc) {
  alloc_ctx* ctx = vctx;
  void* data = NULL;
  PyGILState_STATE g = PyGILState_Ensure();
  PyObject* shape = PyTuple_New(desc->ndim);
  for (int d = 0; shape && d < desc->ndim; d++)
    PyTuple_SET_ITEM(shape, d, PyLong_FromLongLong(desc->shape[d]));
  PyObject* buf = shape ? PyObject_CallFunction(ctx->alloc, "isO", index, ys_dtype_name(desc->dtype), shape) : NULL;
  Py_XDECREF(shape);
  if (buf && PyObject_GetBuffer(buf, &ctx->views[index], PyBUF_WRITABLE | PyBUF_C_CONTIGUOUS) == 0) {
    if ((size_t)ctx->views[index].len >= desc->nbytes) {
      ctx->held[index] = 1;
      data = ctx->views[index].buf;
    } else {
      PyBuffer_Release(&ctx->views[index]);
      PyErr_Format(PyExc_ValueError, "allocator gave %zd bytes for output %d, needs %zu",
                   ctx->views[index].len, index, desc->nbytes);
    }
  }
  Py_XDECREF(buf);
  if (!data) ctx->failed = 1; /* the Python error stays set for the caller */
  PyGILState_Release(g);
  return data;
}

static PyObject* Model_run(ModelObject* self, PyObject* args, PyObject* kw) {
  static char* names[] = {"inputs", "outputs", "alloc", NULL};
  PyObject *inputs, *outputs, *alloc = Py_None;
  if (!PyArg_ParseTupleAndKeywords(args, kw, "OO|O", names, &inputs, &outputs, &alloc)) return NULL;
  if (!self->model) return PyErr_SetString(PyExc_ValueError, "model is closed"), NULL;
  PyObject* in_seq = PySequence_Fast(inputs, "inputs must be a sequence of buffers");
  if (!in_seq) return NULL;
  PyObject* out_seq = PySequence_Fast(outputs, "outputs must be a sequence of buffers or None");
  if (!out_seq) { Py_DECREF(in_seq); return NULL; }
  int n_in = (int)PySequence_Fast_GET_SIZE(in_seq), n_out = (int)PySequence_Fast_GET_SIZE(out_seq);
  PyObject* result = NULL;
  Py_buffer* in_views = PyMem_Calloc((size_t)n_in + 1, sizeof(Py_buffer));
  Py_buffer* out_views = PyMem_Calloc((size_t)n_out + 1, sizeof(Py_buffer));
  Py_buffer* alloc_views = PyMem_Calloc((size_t)n_out + 1, sizeof(Py_buffer));
  int* held = PyMem_Calloc((size_t)n_out + 1, sizeof(int));
  ys_tensor* in = PyMem_Calloc((size_t)n_in + 1, sizeof(ys_tensor));
  ys_tensor* out = PyMem_Calloc((size_t)n_out + 1, sizeof(ys_tensor));
  int got_in = 0, got_out = 0;
  if (!in_views || !out_views || !alloc_views || !held || !in || !out) { PyErr_NoMemory(); goto done; }
  for (; got_in < n_in; got_in++) {
    Py_buffer* v = &in_views[got_in];
    if (PyObject_GetBuffer(PySequence_Fast_GET_ITEM(in_seq, got_in), v,
                           PyBUF_C_CONTIGUOUS | PyBUF_FORMAT) < 0)
      goto done;
    if (v->ndim > YS_MAX_DIMS) { PyErr_Format(PyExc_ValueError, "input %d has rank > %d", got_in, YS_MAX_DIMS); got_in++; goto done; }
    in[got_in].data = v->buf;
    in[got_in].nbytes = (size_t)v->len;
    in[got_in].dtype = dtype_of_view(v);
    in[got_in].ndim = v->ndim;
    for (int d = 0; d < v->ndim; d++) in[got_in].shape[d] = v->shape ? v->shape[d] : 0;
    if (in[got_in].dtype == YS_DT_INVALID) {
      got_in++;
      load_errors();
      PyErr_Format(err_bad_request ? err_bad_request : PyExc_ValueError,
                   "input %d: unsupported element format '%s'", got_in - 1, v->format);
      goto done;
    }
  }
  for (; got_out < n_out; got_out++) {
    PyObject* o = PySequence_Fast_GET_ITEM(out_seq, got_out);
    if (o == Py_None) { out_views[got_out].obj = NULL; continue; }
    if (PyObject_GetBuffer(o, &out_views[got_out], PyBUF_WRITABLE | PyBUF_C_CONTIGUOUS) < 0) goto done;
    out[got_out].data = out_views[got_out].buf;
    out[got_out].nbytes = (size_t)out_views[got_out].len;
  }
  alloc_ctx ctx = {alloc, alloc_views, held, 0};
  int rc;
  Py_BEGIN_ALLOW_THREADS
  rc = ys_model_run(self->model, in, n_in, out, n_out, alloc == Py_None ? NULL : py_alloc, &ctx);
  Py_END_ALLOW_THREADS
  if (ctx.failed && PyErr_Occurred()) goto done;
  if (rc) { raise_status(rc, 0); goto done; }
  result = PyList_New(n_out);
  for (int i = 0; result && i < n_out; i++) {
    PyObject* shape = PyTuple_New(out[i].ndim);
    for (int d = 0; d < out[i].ndim; d++) PyTuple_SET_ITEM(shape, d, PyLong_FromLongLong(out[i].shape[d]));
    PyList_SET_ITEM(result, i, shape);
  }
done:
  for (int i = 0; i < got_in; i++) if (in_views[i].obj) PyBuffer_Release(&in_views[i]);
  for (int i = 0; i < got_out; i++) if (out_views[i].obj) PyBuffer_Release(&out_views[i]);
  for (int i = 0; held && i < n_out; i++) if (held[i]) PyBuffer_Release(&alloc_views[i]);
  PyMem_Free(in_views); PyMem_Free(out_views); PyMem_Free(alloc_views); PyMem_Free(held);
  PyMem_Free(in); PyMem_Free(out);
  Py_DECREF(in_seq);
  Py_DECREF(out_seq);
  return result;
}

static PyMethodDef Model_methods[] = {
  {"run", (PyCFunction)(void (*)(void))Model_run, METH_VARARGS | METH_KEYWORDS,
   "run(inputs, outputs, alloc=None) -> list of output shapes.\n\n"
   "inputs: buffers in model input order (read in place). outputs: one writable buffer or None\n"
   "per output; an output whose buffer is None or too small is written into alloc(index,\n"
   "dtype, shape)'s buffer. The GIL is released while the model runs."},
  {"close", (PyCFunction)Model_close, METH_NOARGS, "Free the compiled model."},
  {NULL, NULL, 0, NULL},
};

static PyObject* Model_backend(ModelObject* self, void* c) {
  (void)c;
  int backend = 0;
  if (!self->model) return PyErr_SetString(PyExc_ValueError, "model is closed"), NULL;
  ys_model_backend(self->model, &backend);
  return PyUnicode_FromString(ys_backend_name(backend));
}

static PyGetSetDef Model_getset[] = {
  {"backend", (getter)Model_backend, NULL, "the backend that runs this model", NULL},
  {"inputs", (getter)Model_inputs, NULL, "[(name, tensor_name, dtype, shape)] in run order", NULL},
  {"outputs", (getter)Model_outputs, NULL, "[(name, tensor_name, dtype, shape)] in run order", NULL},
  {"signature", (getter)Model_signature, NULL, "the SavedModel signature key served", NULL},
  {NULL, NULL, NULL, NULL, NULL},
};

static PyTypeObject ModelType = {
  PyVarObject_HEAD_INIT(NULL, 0)
  .tp_name = "yellowstone.plugins.tfserving._ysshim.Model",
  .tp_basicsize = sizeof(ModelObject),
  .tp_flags = Py_TPFLAGS_DEFAULT,
  .tp_doc = "Model(runtime, artifact_dir, device='CPU', threads=0): a boosted model in C.",
  .tp_new = PyType_GenericNew,
  .tp_init = (initproc)Model_init,
  .tp_dealloc = (destructor)Model_dealloc,
  .tp_methods = Model_methods,
  .tp_getset = Model_getset,
};

static PyObject* manifest_backend(PyObject* mod, PyObject* arg) {
  (void)mod;
  PyObject* bytes = NULL;
  if (!PyUnicode_FSConverter(arg, &bytes)) return NULL;
  int backend = 0, rc;
  char library[4096] = "";
  const char* dir = PyBytes_AS_STRING(bytes);
  Py_BEGIN_ALLOW_THREADS
  rc = ys_manifest_backend(dir, &backend, library, sizeof library);
  Py_END_ALLOW_THREADS
  Py_DECREF(bytes);
  if (rc) return raise_status(rc, 1);
  return Py_BuildValue("(ss)", ys_backend_name(backend), library);
}

static PyMethodDef module_methods[] = {
  {"manifest_backend", manifest_backend, METH_O,
   "manifest_backend(artifact_dir) -> (backend, c_library): what shim.txt names ('' = none)."},
  {NULL, NULL, 0, NULL},
};

static struct PyModuleDef moduledef = {
  PyModuleDef_HEAD_INIT, "_ysshim",
  "CPython binding of the Yellowstone TF Serving shim (zero-copy, GIL released).", -1,
  module_methods, NULL, NULL, NULL, NULL,
};

PyMODINIT_FUNC PyInit__ysshim(void) {
  if (PyType_Ready(&RuntimeType) < 0 || PyType_Ready(&ModelType) < 0) return NULL;
  PyObject* m = PyModule_Create(&moduledef);
  if (!m) return NULL;
  Py_INCREF(&RuntimeType);
  PyModule_AddObject(m, "Runtime", (PyObject*)&RuntimeType);
  Py_INCREF(&ModelType);
  PyModule_AddObject(m, "Model", (PyObject*)&ModelType);
  PyModule_AddStringConstant(m, "version", ys_version());
  return m;
}
