"""A plain http.server scoring service around a TorchScript model (no yellowstone code in it)."""

import json
import sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import torch

if sys.argv[1] == "--make-model":
    net = torch.nn.Sequential(torch.nn.Conv2d(3, 16, 3), torch.nn.ReLU(),
                              torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten(),
                              torch.nn.Linear(16, 10)).eval()
    torch.jit.save(torch.jit.script(net), sys.argv[2])
    raise SystemExit(0)

model = torch.jit.load(sys.argv[1]).eval()


class Handler(BaseHTTPRequestHandler):
    def do_POST(self):
        body = self.rfile.read(int(self.headers["Content-Length"]))
        with torch.inference_mode():
            scores = model(torch.tensor(json.loads(body), dtype=torch.float32))
        data = json.dumps(scores.tolist()).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)


ThreadingHTTPServer(("127.0.0.1", int(sys.argv[2])), Handler).serve_forever()
