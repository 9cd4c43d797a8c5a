"""Server plugins: TorchServe, KServe and TF Serving, each a thin layer over the public core API."""
