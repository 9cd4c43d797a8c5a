"""Ordinary applications (and the scripts that make their models) the interposer tests run.

Each is plain framework code with no mention of yellowstone; the tests write them to files and
run them both plainly and under ``python -m yellowstone run``.
"""

MAKE_TORCH_MODELS = r'''
import sys, torch
sys.path.insert(0, sys.argv[1])
from netdef import SmallNet
torch.manual_seed(0)
cnn = torch.nn.Sequential(
    torch.nn.Conv2d(3, 8, 3, padding=1), torch.nn.ReLU(), torch.nn.Conv2d(8, 8, 3), torch.nn.ReLU(),
    torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten(), torch.nn.Linear(8, 5)).eval()
torch.jit.save(torch.jit.script(cnn), sys.argv[1] + "/cnn.pt")
mlp = SmallNet().eval()
torch.save(mlp, sys.argv[1] + "/mlp_full.pth")
batch = torch.export.Dim("batch", min=1, max=64)
ep = torch.export.export(mlp, (torch.randn(2, 12),), dynamic_shapes=({0: batch},))
torch.export.save(ep, sys.argv[1] + "/mlp.pt2")
'''

NETDEF = r'''
import torch


class SmallNet(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.fc1 = torch.nn.Linear(12, 32)
        self.fc2 = torch.nn.Linear(32, 3)

    def forward(self, x):
        return torch.softmax(self.fc2(torch.tanh(self.fc1(x))), dim=-1)
'''

MAKE_TF_MODELS = r'''
import sys
import numpy as np
import tensorflow as tf
import keras
out = sys.argv[1]
keras.utils.set_random_seed(0)
inp = keras.Input((10,), name="features")
h = keras.layers.Dense(16, activation="relu")(inp)
model = keras.Model(inp, keras.layers.Dense(4, activation="softmax")(h))
model.save(out + "/clf.keras")

class Scorer(tf.Module):
    def __init__(self):
        super().__init__()
        self.w = tf.Variable(tf.random.stateless_normal((6, 3), seed=(1, 2)))
        self.b = tf.Variable(tf.random.stateless_normal((3,), seed=(3, 4)))

    @tf.function(input_signature=[tf.TensorSpec((None, 6), tf.float32, name="x")])
    def score(self, x):
        logits = tf.matmul(x, self.w) + self.b
        return {"logits": logits, "probs": tf.nn.softmax(logits)}

s = Scorer()
tf.saved_model.save(s, out + "/scorer", signatures={"serving_default": s.score})
'''

# A Keras batch job: load_model, predict (float64 numpy, as people pass it), predict_on_batch,
# __call__. Prints whether torch was ever imported (the interposer must not pull it in).
KERAS_APP = r'''
import sys
import numpy as np
import tensorflow as tf
model = tf.keras.models.load_model(sys.argv[1])
rng = np.random.default_rng(int(sys.argv[3]))
x = rng.standard_normal((40, 10))                      # float64, Keras casts
a = model.predict(x, batch_size=16, verbose=0)
b = model.predict_on_batch(rng.standard_normal((3, 10)).astype(np.float32))
c = model(tf.constant(rng.standard_normal((5, 10)).astype(np.float32)), training=False).numpy()
np.savez(sys.argv[2], a=a, b=b, c=c)
print("layers", len(model.layers), "torch imported:", "torch" in sys.modules)
'''

SAVED_MODEL_APP = r'''
import sys
import numpy as np
import tensorflow as tf
loaded = tf.saved_model.load(sys.argv[1])
serve = loaded.signatures["serving_default"]
rng = np.random.default_rng(int(sys.argv[3]))
out = {}
for i, n in enumerate((4, 4, 9)):
    res = serve(x=tf.constant(rng.standard_normal((n, 6)).astype(np.float32)))
    for k, v in res.items():
        out[f"{k}{i}"] = v.numpy()
np.savez(sys.argv[2], **out)
print("outputs", sorted(res), "torch imported:", "torch" in sys.modules)
'''

# A TorchScript scoring service plus a full pickled module (torch.load), as batch code has it.
TORCHSCRIPT_APP = r'''
import sys
import numpy as np
import torch
sys.path.insert(0, sys.argv[1])
cnn = torch.jit.load(sys.argv[1] + "/cnn.pt").eval()
mlp = torch.load(sys.argv[1] + "/mlp_full.pth", weights_only=False)
mlp.eval()
rng = np.random.default_rng(int(sys.argv[3]))
def r(*shape):
    return torch.from_numpy(rng.standard_normal(shape, dtype=np.float32))
out = {}
with torch.no_grad():
    for i in range(4):
        out[f"cnn{i}"] = cnn(r(2, 3, 20, 20)).numpy()
    out["cnn_b5"] = cnn(r(5, 3, 20, 20)).numpy()          # new batch size: dynamic batch
    out["cnn_hw"] = cnn(r(2, 3, 24, 24)).numpy()          # new image size: the original serves
    for i in range(3):
        out[f"mlp{i}"] = mlp(r(4, 12)).numpy()
x = r(2, 3, 20, 20)
out["grad"] = cnn(x).detach().numpy()                     # gradients on: the original serves
np.savez(sys.argv[2], **out)
print("eval ok", type(cnn).__name__, isinstance(mlp, torch.nn.Module),
      "n_params", sum(p.numel() for p in mlp.parameters()), len(mlp.state_dict()),
      "tensorflow imported:", "tensorflow" in sys.modules)
'''

# An HTTP service on FastAPI/uvicorn serving a torch.export program.
HTTP_APP = r'''
import sys
import torch
import uvicorn
from fastapi import FastAPI
from pydantic import BaseModel

program = torch.export.load(sys.argv[1])
model = program.module()
app = FastAPI()


class Req(BaseModel):
    instances: list[list[float]]


@app.get("/health")
def health():
    return {"ok": True}


@app.post("/predict")
def predict(req: Req):
    with torch.inference_mode():
        y = model(torch.tensor(req.instances, dtype=torch.float32))
    return {"predictions": y.tolist()}


uvicorn.run(app, host="127.0.0.1", port=int(sys.argv[2]), log_level="warning")
'''
