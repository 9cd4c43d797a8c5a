"""gRPC server credentials from ``--ssl_config_file`` or ``--use_alts_credentials``, checked at start."""

from __future__ import annotations

import dataclasses
import logging
from typing import Any

from .textproto import StartupError

logger = logging.getLogger(__name__)


@dataclasses.dataclass(frozen=True)
class SSLSettings:
    """SSLConfig's four fields."""

    server_key: str
    server_cert: str
    custom_ca: str = ""
    client_verify: bool = False

    def __post_init__(self) -> None:
        for field in ("server_key", "server_cert"):
            if not getattr(self, field).strip():
                raise StartupError(
                    "INVALID_ARGUMENT", f"SSLConfig.{field} is empty; TLS needs a key and certificate"
                )
        for field in ("server_key", "server_cert", "custom_ca"):
            value = getattr(self, field)
            if value and "-----BEGIN" not in value:
                raise StartupError(
                    "INVALID_ARGUMENT",
                    f"SSLConfig.{field} holds no PEM block; it must carry the PEM text itself, not a path",
                )
        if self.client_verify and not self.custom_ca.strip():
            raise StartupError(
                "INVALID_ARGUMENT",
                "SSLConfig.client_verify is true but custom_ca is empty: client certificates need a CA to be "
                "verified against",
            )
        _check_pems(self)


def _check_pems(cfg: SSLSettings) -> None:
    """Key, certificate and CA must load, and the key must belong to the certificate."""
    try:
        from cryptography import x509
        from cryptography.hazmat.primitives import serialization
    except ImportError:  # grpc still rejects unusable PEMs when the port is added
        return
    try:
        key = serialization.load_pem_private_key(cfg.server_key.encode(), password=None)
    except (ValueError, TypeError) as exc:
        raise StartupError(
            "INVALID_ARGUMENT", f"SSLConfig.server_key is not a usable private key: {exc}"
        ) from exc
    try:
        cert = x509.load_pem_x509_certificate(cfg.server_cert.encode())
    except ValueError as exc:
        raise StartupError("INVALID_ARGUMENT", f"SSLConfig.server_cert is not a certificate: {exc}") from exc
    fmt = serialization.PublicFormat.SubjectPublicKeyInfo
    enc = serialization.Encoding.PEM
    if key.public_key().public_bytes(enc, fmt) != cert.public_key().public_bytes(enc, fmt):
        raise StartupError("INVALID_ARGUMENT", "SSLConfig.server_key does not match SSLConfig.server_cert")
    if cfg.custom_ca:
        try:
            x509.load_pem_x509_certificates(cfg.custom_ca.encode())
        except ValueError as exc:
            raise StartupError(
                "INVALID_ARGUMENT", f"SSLConfig.custom_ca is not a certificate: {exc}"
            ) from exc


def read_ssl_config(path: str) -> SSLSettings:
    """``--ssl_config_file`` as SSLSettings (parse errors in TF Serving's words)."""
    from .textproto import message_class, parse_text_file

    msg = parse_text_file(path, message_class("SSLConfig")())
    return SSLSettings(
        server_key=msg.server_key,
        server_cert=msg.server_cert,
        custom_ca=msg.custom_ca,
        client_verify=msg.client_verify,
    )


def server_credentials(ssl: SSLSettings | None, use_alts: bool) -> Any:
    """The grpc.ServerCredentials every gRPC listening port uses; None means plaintext.

    SSLConfig carries PEM text (not paths): ``server_key`` and ``server_cert`` make the TLS identity,
    ``custom_ca`` the roots client certificates are checked against, ``client_verify`` requires and
    verifies a client certificate (TF Serving's REQUEST_AND_REQUIRE_CLIENT_CERTIFICATE_AND_VERIFY).
    Anything that would leave the port unable to speak TLS as asked is a :class:`StartupError`, so the
    server never falls back to plaintext.
    """
    import grpc

    if use_alts:
        if ssl is not None:
            raise StartupError(
                "INVALID_ARGUMENT", "--use_alts_credentials and --ssl_config_file are exclusive; pick one"
            )
        logger.info("Using ALTS credentials")
        return grpc.alts_server_credentials()
    if ssl is None:
        return None
    return grpc.ssl_server_credentials(
        [(ssl.server_key.encode(), ssl.server_cert.encode())],
        root_certificates=ssl.custom_ca.encode() or None,
        require_client_auth=ssl.client_verify,
    )
