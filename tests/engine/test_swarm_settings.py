"""The executor, swarm and TLS settings: what they accept, and the messages naming them."""

from __future__ import annotations

import datetime
import ssl
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from taskdash.core.config import ConfigError, Settings, load_settings
from taskdash.engine.docker import DockerEngine, TlsFiles, engine_url
from taskdash.engine.executor import DockerExecutor
from taskdash.engine.swarm import SwarmEngine, run_executor
from taskdash.services import open_engine


def settings(**values: object) -> Settings:
    return load_settings(_env_file=None, **values)


def test_the_executor_is_docker_unless_told() -> None:
    assert settings().executor == "docker"
    assert type(open_engine(settings())) is DockerEngine
    assert isinstance(run_executor(open_engine(settings())), DockerExecutor)
    swarm = open_engine(settings(executor="swarm"))
    assert isinstance(swarm, SwarmEngine) and run_executor(swarm) is swarm.runs


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"executor": "kubernetes"}, "TASKDASH_EXECUTOR: Input should be 'docker' or 'swarm'"),
        ({"swarm_constraints": "node.role"}, "TASKDASH_SWARM_CONSTRAINTS: Value error, 'node."),
        ({"executor": "swarm", "run_runtime": "runsc"}, "TASKDASH_RUN_RUNTIME=runsc cannot"),
        ({"docker_tls_ca": "/nonexistent/ca.pem"}, "TASKDASH_DOCKER_TLS_CA: Value error"),
    ],
)
def test_a_bad_value_is_refused_naming_its_variable(values: dict[str, str], message: str) -> None:
    with pytest.raises(ConfigError) as refused:
        settings(**values)
    assert message in str(refused.value)


def test_swarm_constraints_are_a_comma_list() -> None:
    given = settings(swarm_constraints=" node.labels.pool==runs, node.role!=manager ,")
    assert given.swarm_constraint_list == ("node.labels.pool==runs", "node.role!=manager")


def make_certificates(folder: Path) -> TlsFiles:
    """A CA and a client certificate it signed, as `dockerd --tlsverify` clients hold."""
    now = datetime.datetime.now(datetime.UTC)

    def certificate(
        subject: str,
        key: ec.EllipticCurvePrivateKey,
        issuer_key: ec.EllipticCurvePrivateKey,
        issuer: str,
        ca: bool,
    ) -> x509.Certificate:
        return (
            x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, subject)]))
            .issuer_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, issuer)]))
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=1))
            .not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
            .sign(issuer_key, hashes.SHA256())
        )

    ca_key, client_key = (
        ec.generate_private_key(ec.SECP256R1()),
        ec.generate_private_key(ec.SECP256R1()),
    )
    files = TlsFiles(folder / "ca.pem", folder / "cert.pem", folder / "key.pem")
    pem = serialization.Encoding.PEM
    files.ca.write_bytes(certificate("test CA", ca_key, ca_key, "test CA", True).public_bytes(pem))
    files.cert.write_bytes(
        certificate("taskdash", client_key, ca_key, "test CA", False).public_bytes(pem)
    )
    files.key.write_bytes(
        client_key.private_bytes(
            pem, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )
    return files


def test_tls_files_go_together_and_need_a_tcp_url(tmp_path: Path) -> None:
    files = make_certificates(tmp_path)
    with pytest.raises(ConfigError, match="go together"):
        settings(docker_url="tcp://engine:2376", docker_tls_ca=str(files.ca))
    with pytest.raises(ConfigError, match="need TASKDASH_DOCKER_URL=tcp://"):
        settings(docker_tls_ca=files.ca, docker_tls_cert=files.cert, docker_tls_key=files.key)
    given = settings(
        docker_url="tcp://engine:2376",
        docker_tls_ca=files.ca,
        docker_tls_cert=files.cert,
        docker_tls_key=files.key,
    )
    assert (given.docker_tls_ca, given.docker_tls_key) == (files.ca, files.key)


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("tcp://engine:2376", "https://engine:2376"),
        ("https://engine:2376", "https://engine:2376"),
        ("http://engine:2376", "https://engine:2376"),
    ],
)
def test_a_tls_engine_is_reached_over_https(url: str, expected: str, tmp_path: Path) -> None:
    files = make_certificates(tmp_path)
    assert engine_url(url, files) == expected
    assert engine_url(url, None) == url


async def test_the_engine_client_presents_the_certificate(tmp_path: Path) -> None:
    files = make_certificates(tmp_path)
    context = files.context()
    assert context.verify_mode is ssl.CERT_REQUIRED and context.check_hostname
    engine = open_engine(
        settings(
            docker_url="tcp://127.0.0.1:2376",
            docker_tls_ca=files.ca,
            docker_tls_cert=files.cert,
            docker_tls_key=files.key,
        )
    )
    await engine.open()
    try:
        assert engine.docker.docker_host == "https://127.0.0.1:2376"
        assert isinstance(engine.docker.connector._ssl, ssl.SSLContext)  # type: ignore[attr-defined]
    finally:
        await engine.close()
    with pytest.raises(ValueError, match="tcp://"):
        DockerEngine("unix:///var/run/docker.sock", tls=files)
