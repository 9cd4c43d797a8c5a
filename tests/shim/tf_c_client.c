/* A plain TensorFlow C API program: load a SavedModel, feed float/int inputs, print outputs.
 * usage: tf_c_client EXPORT_DIR BATCH OUT_TENSOR FEED_TENSOR:KIND [FEED_TENSOR:KIND ...]
 *   KIND f4 = float [BATCH, 4] read from stdin; i4 = int32 [BATCH] read from stdin.
 * Prints the output's values, one per line (%.9g). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tensorflow/c/c_api.h"

static TF_Output resolve(TF_Graph* g, const char* name) {
  char op[512];
  snprintf(op, sizeof op, "%s", name);
  char* colon = strrchr(op, ':');
  int idx = 0;
  if (colon) { *colon = 0; idx = atoi(colon + 1); }
  TF_Output o = {TF_GraphOperationByName(g, op), idx};
  if (!o.oper) { fprintf(stderr, "no operation %s\n", op); exit(2); }
  return o;
}

int main(int argc, char** argv) {
  if (argc < 5) return 2;
  const char* dir = argv[1];
  int batch = atoi(argv[2]);
  TF_Status* st = TF_NewStatus();
  TF_Graph* g = TF_NewGraph();
  TF_SessionOptions* opts = TF_NewSessionOptions();
  const char* tags[] = {"serve"};
  TF_Session* s = TF_LoadSessionFromSavedModel(opts, NULL, dir, tags, 1, g, NULL, st);
  if (TF_GetCode(st) != TF_OK) { fprintf(stderr, "load: %s\n", TF_Message(st)); return 1; }
  int nfeeds = argc - 4;
  TF_Output* feeds = calloc(nfeeds, sizeof *feeds);
  TF_Tensor** values = calloc(nfeeds, sizeof *values);
  for (int i = 0; i < nfeeds; i++) {
    char spec[512];
    snprintf(spec, sizeof spec, "%s", argv[4 + i]);
    char* kind = strrchr(spec, ':');
    *kind++ = 0;
    feeds[i] = resolve(g, spec);
    if (strcmp(kind, "f4") == 0) {
      int64_t dims[2] = {batch, 4};
      values[i] = TF_AllocateTensor(TF_FLOAT, dims, 2, sizeof(float) * batch * 4);
      float* p = TF_TensorData(values[i]);
      for (int j = 0; j < batch * 4; j++) if (scanf("%f", &p[j]) != 1) return 3;
    } else {
      int64_t dims[1] = {batch};
      values[i] = TF_AllocateTensor(TF_INT32, dims, 1, sizeof(int) * batch);
      int* p = TF_TensorData(values[i]);
      for (int j = 0; j < batch; j++) if (scanf("%d", &p[j]) != 1) return 3;
    }
  }
  TF_Output fetch = resolve(g, argv[3]);
  TF_Tensor* out = NULL;
  TF_SessionRun(s, NULL, feeds, values, nfeeds, &fetch, &out, 1, NULL, 0, NULL, st);
  if (TF_GetCode(st) != TF_OK) { fprintf(stderr, "run: %s\n", TF_Message(st)); return 1; }
  size_t n = TF_TensorByteSize(out) / sizeof(float);
  const float* r = TF_TensorData(out);
  for (size_t j = 0; j < n; j++) printf("%.9g\n", r[j]);
  TF_DeleteTensor(out);
  for (int i = 0; i < nfeeds; i++) TF_DeleteTensor(values[i]);
  TF_CloseSession(s, st);
  TF_DeleteSession(s, st);
  TF_DeleteGraph(g);
  TF_DeleteSessionOptions(opts);
  TF_DeleteStatus(st);
  return 0;
}
