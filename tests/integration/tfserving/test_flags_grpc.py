"""``--ssl_config_file``, ``--grpc_socket_path``, ``--enable_grpc_healthcheck_service`` on a live server.

A CA, a server certificate (localhost / 127.0.0.1) and a client certificate are made with
``cryptography``; the server requires and verifies client certificates (client_verify). TLS
clients (``grpc.ssl_channel_credentials``) reach it over TCP and over the Unix socket; a client
without a certificate and a plaintext client are turned away.
"""

from __future__ import annotations

import datetime
import ipaddress

import numpy as np
import pytest
from tfs_server import TFServer, build_model, predict

pytestmark = [pytest.mark.server, pytest.mark.tensorflow]


def _pem_key(key) -> bytes:
    from cryptography.hazmat.primitives import serialization

    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption())


def make_pki() -> dict[str, bytes]:
    """A CA, a server cert for localhost/127.0.0.1 and a client cert, all PEM."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    now = datetime.datetime.now(datetime.timezone.utc)

    def name(cn):
        return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])

    def cert(subject, key, issuer, issuer_key, *, ca=False, san=None, usage=None):
        b = (x509.CertificateBuilder().subject_name(name(subject)).issuer_name(name(issuer))
             .public_key(key.public_key()).serial_number(x509.random_serial_number())
             .not_valid_before(now - datetime.timedelta(minutes=5))
             .not_valid_after(now + datetime.timedelta(days=1))
             .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True))
        if san:
            b = b.add_extension(x509.SubjectAlternativeName(san), critical=False)
        if usage:
            b = b.add_extension(x509.ExtendedKeyUsage(usage), critical=False)
        return b.sign(issuer_key, hashes.SHA256()).public_bytes(serialization.Encoding.PEM)

    ca_key, server_key, client_key = (ec.generate_private_key(ec.SECP256R1()) for _ in range(3))
    ca = cert("yellowstone test CA", ca_key, "yellowstone test CA", ca_key, ca=True)
    server = cert("localhost", server_key, "yellowstone test CA", ca_key,
                  san=[x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))],
                  usage=[ExtendedKeyUsageOID.SERVER_AUTH])
    client = cert("client", client_key, "yellowstone test CA", ca_key,
                  usage=[ExtendedKeyUsageOID.CLIENT_AUTH])
    return {"ca": ca, "server_cert": server, "server_key": _pem_key(server_key),
            "client_cert": client, "client_key": _pem_key(client_key)}


def _text(pem: bytes) -> str:
    return pem.decode().replace("\n", "\\n")


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    root = tmp_path_factory.mktemp("tls")
    build_model("keras", root / "m" / "1")
    pki = make_pki()
    (root / "ssl.config").write_text(
        f'server_key: "{_text(pki["server_key"])}"\nserver_cert: "{_text(pki["server_cert"])}"\n'
        f'custom_ca: "{_text(pki["ca"])}"\nclient_verify: true\n'
    )
    sock = root / "tfs.sock"
    with TFServer(root, "--model_name=m", f"--model_base_path={root / 'm'}",
                  f"--ssl_config_file={root / 'ssl.config'}", f"--grpc_socket_path={sock}",
                  "--enable_grpc_healthcheck_service",
                  "--grpc_channel_arguments=grpc.max_connection_age_ms=600000", "--grpc_max_threads=4",
                  "--yellowstone_shim=off", rest=False, unset=()) as srv:
        yield {"root": root, "port": srv.grpc_port, "socket": sock, "pki": pki, "log": srv.log}


def _tls_channel(target, pki, *, client_cert=True):
    import grpc

    creds = grpc.ssl_channel_credentials(
        root_certificates=pki["ca"],
        private_key=pki["client_key"] if client_cert else None,
        certificate_chain=pki["client_cert"] if client_cert else None,
    )
    return grpc.secure_channel(target, creds, options=[("grpc.ssl_target_name_override", "localhost")])


def _predict(channel, x):
    return predict(channel, "m", {"x": x}, timeout=30)["output_0"]


def _reference(server, x):
    import tensorflow as tf

    fn = tf.saved_model.load(str(server["root"] / "m" / "1")).signatures["serving_default"]
    return fn(x=tf.constant(x))["output_0"].numpy()


def test_tls_with_a_client_certificate_over_tcp(server):
    x = np.random.default_rng().standard_normal((3, 8)).astype(np.float32)
    with _tls_channel(f"127.0.0.1:{server['port']}", server["pki"]) as channel:
        np.testing.assert_allclose(_predict(channel, x), _reference(server, x), atol=1e-5, rtol=1e-4)


def test_tls_over_the_unix_socket(server):
    assert server["socket"].is_socket()
    assert f"Running gRPC ModelServer at UNIX socket {server['socket']}" in server["log"].read_text()
    x = np.random.default_rng().standard_normal((2, 8)).astype(np.float32)
    with _tls_channel(f"unix:{server['socket']}", server["pki"]) as channel:
        np.testing.assert_allclose(_predict(channel, x), _reference(server, x), atol=1e-5, rtol=1e-4)


def test_clients_without_a_certificate_or_without_tls_are_refused(server):
    import grpc

    x = np.ones((1, 8), np.float32)
    for channel in (_tls_channel(f"127.0.0.1:{server['port']}", server["pki"], client_cert=False),
                    grpc.insecure_channel(f"127.0.0.1:{server['port']}"),
                    grpc.insecure_channel(f"unix:{server['socket']}")):
        with channel, pytest.raises(grpc.RpcError) as info:
            _predict(channel, x)
        assert info.value.code() == grpc.StatusCode.UNAVAILABLE


def test_health_service(server):
    from yellowstone.plugins.tfserving.textproto import message_class

    request_cls, response_cls = message_class("HealthCheckRequest"), message_class("HealthCheckResponse")
    with _tls_channel(f"unix:{server['socket']}", server["pki"]) as channel:
        check = channel.unary_unary("/grpc.health.v1.Health/Check",
                                    request_serializer=request_cls.SerializeToString,
                                    response_deserializer=response_cls.FromString)
        for service in ("", "tensorflow.serving.PredictionService"):
            assert check(request_cls(service=service), timeout=30).status == 1  # SERVING
        import grpc

        with pytest.raises(grpc.RpcError) as info:
            check(request_cls(service="no.such.Service"), timeout=30)
        assert info.value.code() == grpc.StatusCode.NOT_FOUND
