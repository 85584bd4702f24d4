"""Throw-away TLS material for a deployment on this machine: a CA, a server certificate for
127.0.0.1 and SuperNode keys, each private key created 0600."""

from __future__ import annotations

import datetime
import ipaddress
import os
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

LOCALHOST = "127.0.0.1"


def _certificate(subject: str, public_key, issuer: str, signing_key, ca: bool, sans=None) -> x509.Certificate:
    now = datetime.datetime.now(datetime.timezone.utc)
    builder = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, subject)]))
        .issuer_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, issuer)]))
        .public_key(public_key)
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
    )
    if sans:
        builder = builder.add_extension(x509.SubjectAlternativeName(sans), critical=False)
    return builder.sign(signing_key, hashes.SHA256())


def make_certificates(dest: Path, hosts: tuple[str, ...] = (LOCALHOST,)) -> tuple[Path, Path, Path]:
    """A CA and a server certificate for localhost and the IP addresses ``hosts``: the PEM
    files (ca, cert, key)."""
    dest.mkdir(parents=True, exist_ok=True)
    issuer = "fedsynth throw-away CA"
    ca_key = ec.generate_private_key(ec.SECP384R1())
    ca_cert = _certificate(issuer, ca_key.public_key(), issuer, ca_key, True)
    server_key = ec.generate_private_key(ec.SECP384R1())
    sans = [*(x509.IPAddress(ipaddress.ip_address(host)) for host in hosts), x509.DNSName("localhost")]
    server_cert = _certificate(LOCALHOST, server_key.public_key(), issuer, ca_key, False, sans)
    paths = dest / "ca.pem", dest / "server.pem", dest / "server.key"
    paths[0].write_bytes(ca_cert.public_bytes(serialization.Encoding.PEM))
    paths[1].write_bytes(server_cert.public_bytes(serialization.Encoding.PEM))
    write_private(paths[2], server_key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()))
    return paths


def write_private(path: Path, data: bytes) -> None:
    """Write a private key into a new file created 0600 (never readable by others, not even for
    a moment)."""
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(descriptor, "wb") as handle:
        handle.write(data)


def make_node_key(dest: Path, name: str) -> tuple[Path, Path]:
    """An ECDSA P-384 key pair in OpenSSH format for SuperNode authentication: (private, public)."""
    key = ec.generate_private_key(ec.SECP384R1())
    private, public = dest / name, dest / f"{name}.pub"
    write_private(private, key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.OpenSSH, serialization.NoEncryption()))
    public.write_bytes(key.public_key().public_bytes(serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH))
    return private, public
