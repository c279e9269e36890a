"""Nobody let in: tampered registry files are never unpickled, the Pushgateway's basic auth and TLS
settings are honoured, no credential reaches logs, results or artifacts, and everything the
project starts listens on 127.0.0.1 only.
"""

from __future__ import annotations

import datetime as dt
import io
import json
import os
import secrets
import shutil
import warnings
from collections.abc import Iterator
from pathlib import Path

import joblib
import pytest

from core.errors import InputError
from driftline.cli import main
from model_registry.registry import MODEL_FILE, REFERENCE_FILE, Registry
from tasks.export import catalogue as metrics
from tasks.export import pushgateway
from tests import builders, procs
from tests.procs import listening_sockets
from tests.stack_fixtures import LiveStack

MODEL = "diamonds-price"
REPO = Path(__file__).resolve().parents[1]


class _Payload:
    """Unpickling this runs code: it creates the file named in `marker`."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):  # type: ignore[no-untyped-def]
        return (Path.touch, (self.marker,))


@pytest.fixture
def registry(tmp_path: Path, diamonds_registry: Path) -> Registry:
    shutil.copytree(diamonds_registry, tmp_path / "registry")
    return Registry.open(str(tmp_path / "registry"))


# --- the registry --------------------------------------------------------------------------------


def test_a_model_file_changed_after_registration_is_refused_and_never_unpickled(
    registry: Registry, tmp_path: Path
) -> None:
    marker = tmp_path / "unpickled"
    model_file = tmp_path / "registry" / MODEL / "v1" / MODEL_FILE
    buffer = io.BytesIO()
    joblib.dump(_Payload(marker), buffer)
    model_file.write_bytes(buffer.getvalue())
    with pytest.raises(InputError) as refused:
        registry.load(MODEL)
    message = str(refused.value)
    assert f"{model_file}: sha256 " in message and "does not match its card" in message
    assert "register the model again with `driftline register`" in message
    assert not marker.exists(), "the tampered file was unpickled"
    # and the file really was a live payload
    joblib.load(io.BytesIO(buffer.getvalue()))
    assert marker.exists()


def test_a_card_without_the_hash_of_a_file_refuses_that_file(registry: Registry, tmp_path: Path):
    card_file = tmp_path / "registry" / MODEL / "v1" / "card.json"
    card = json.loads(card_file.read_text())
    del card["sha256"][REFERENCE_FILE]
    card_file.write_text(json.dumps(card))
    with pytest.raises(InputError, match="missing from the registry or its card; re-register"):
        registry.load_reference(registry.card(MODEL))


def test_an_alias_cannot_lead_outside_the_registry(registry: Registry, tmp_path: Path) -> None:
    aliases = tmp_path / "registry" / MODEL / "aliases.json"
    aliases.write_text(json.dumps({"production": "../../elsewhere"}))
    with pytest.raises(InputError, match="expected a JSON object of alias -> version id"):
        registry.card(MODEL)


def test_a_card_cannot_vouch_for_another_version(registry: Registry, tmp_path: Path) -> None:
    card_file = tmp_path / "registry" / MODEL / "v1" / "card.json"
    card = json.loads(card_file.read_text())
    card["version"] = "v2"
    card_file.write_text(json.dumps(card))
    with pytest.raises(
        InputError, match="the card is for diamonds-price v2, not diamonds-price v1"
    ):
        registry.card(MODEL)


def test_pickles_are_only_loaded_by_the_registry_after_the_hash_check() -> None:
    sources = [
        p
        for d in ("data_lake", "tasks", "flows", "model_registry")
        for p in (REPO / d).glob("*.py")
    ]
    loaders = [
        p for p in sources if "joblib.load(" in p.read_text() or "pickle.load" in p.read_text()
    ]
    assert loaders == [REPO / "model_registry" / "registry.py"], loaders


# --- credentials ---------------------------------------------------------------------------------


def bcrypt(password: str) -> str:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        import crypt  # the Pushgateway's web config wants a bcrypt hash; stdlib up to 3.12

        return crypt.crypt(password, crypt.mksalt(crypt.METHOD_BLOWFISH))


@pytest.fixture
def secured_pushgateway(tmp_path: Path) -> Iterator[tuple[str, str]]:
    """A Pushgateway behind basic auth (user driftline, a fresh random password)."""
    password = "pw-" + secrets.token_hex(12)
    web_config = tmp_path / "web.yml"
    web_config.write_text(f"basic_auth_users:\n  driftline: '{bcrypt(password)}'\n")
    with procs.pushgateway(tmp_path, web_config=web_config) as gateway:
        yield gateway.url, password


@pytest.mark.e2e
@pytest.mark.prefect
def test_basic_auth_is_honoured_and_the_password_is_written_nowhere(
    secured_pushgateway: tuple[str, str],
    trained_env: dict[str, str],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capfd: pytest.CaptureFixture[str],
) -> None:
    from datetime import date

    from core.settings import load_settings
    from driftline import commands

    url, password = secured_pushgateway
    secret_file = tmp_path / "pushgateway-password"
    secret_file.write_text(password + "\n")
    for key, value in trained_env.items():
        monkeypatch.setenv(key, value)
    monkeypatch.setenv("PUSHGATEWAY_URL", url)
    monkeypatch.setenv("PUSHGATEWAY_USERNAME", "driftline")
    monkeypatch.setenv("PUSHGATEWAY_PASSWORD_FILE", str(secret_file))
    commands.simulate(load_settings(), model=MODEL, start=date(2026, 3, 1), days=2,
                      rows_per_day=100, scenario="none", seed=1)  # fmt: skip

    assert main(["monitor", "--date", "2026-03-02"]) == 0
    with urllib_open(f"{url}/metrics", auth=("driftline", password)) as response:
        assert f'ml_batch_rows{{instance="",job="ml_monitoring",model="{MODEL}"' in response

    # a wrong password: refused by the Pushgateway, reported without the password
    wrong = "wrong-" + secrets.token_hex(8)
    monkeypatch.delenv("PUSHGATEWAY_PASSWORD_FILE")
    monkeypatch.setenv("PUSHGATEWAY_PASSWORD", wrong)
    assert main(["monitor", "--date", "2026-03-02"]) == 1
    output = capfd.readouterr()
    assert "HTTP 401 Unauthorized" in output.err

    places = [Path(trained_env["DATA_LAKE_URI"]), Path(trained_env["MODEL_REGISTRY_URI"])]
    prefect_db = Path(os.environ["PREFECT_HOME"]) / "prefect.db"  # logs and artifacts
    for secret in (password, wrong):
        assert secret not in output.out and secret not in output.err
        for place in places:
            for path in place.rglob("*"):
                assert not path.is_file() or secret.encode() not in path.read_bytes(), path
        for path in prefect_db.parent.glob("prefect.db*"):
            assert secret.encode() not in path.read_bytes(), path


def test_a_password_in_the_pushgateway_url_is_not_repeated() -> None:
    assert (
        pushgateway.redact_url("https://u:s3cret@gw.example:9091/x")
        == "https://***@gw.example:9091/x"
    )
    assert pushgateway.redact_url("http://127.0.0.1:9091") == "http://127.0.0.1:9091"


class urllib_open:
    """GET with basic auth, as text."""

    def __init__(self, url: str, *, auth: tuple[str, str]) -> None:
        import base64
        import urllib.request

        request = urllib.request.Request(url)
        token = base64.b64encode(f"{auth[0]}:{auth[1]}".encode()).decode()
        request.add_header("Authorization", f"Basic {token}")
        with urllib.request.urlopen(request, timeout=10) as response:
            self.text = response.read().decode()

    def __enter__(self) -> str:
        return self.text

    def __exit__(self, *exc: object) -> None:
        return None


# --- TLS -----------------------------------------------------------------------------------------


def _certificates(directory: Path) -> dict[str, Path]:
    """A CA, a server certificate for 127.0.0.1 and a client certificate, all signed by the CA."""
    import ipaddress

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    now = dt.datetime.now(dt.UTC)

    def name(common: str) -> x509.Name:
        return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common)])

    def write(stem: str, key: ec.EllipticCurvePrivateKey, cert: x509.Certificate) -> None:
        (directory / f"{stem}.key").write_bytes(
            key.private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.PKCS8,
                serialization.NoEncryption(),
            )
        )
        (directory / f"{stem}.crt").write_bytes(cert.public_bytes(serialization.Encoding.PEM))

    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca = (
        x509.CertificateBuilder()
        .subject_name(name("driftline test CA"))
        .issuer_name(name("driftline test CA"))
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(False, False, False, False, False, True, True, False, False),
            critical=True,
        )
        .sign(ca_key, hashes.SHA256())
    )
    write("ca", ca_key, ca)
    for stem, usage, san in (
        (
            "server",
            ExtendedKeyUsageOID.SERVER_AUTH,
            [x509.IPAddress(ipaddress.ip_address("127.0.0.1"))],
        ),
        ("client", ExtendedKeyUsageOID.CLIENT_AUTH, [x509.DNSName("driftline")]),
    ):
        key = ec.generate_private_key(ec.SECP256R1())
        cert = (
            x509.CertificateBuilder()
            .subject_name(name(stem))
            .issuer_name(ca.subject)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(minutes=5))
            .not_valid_after(now + dt.timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName(san), critical=False)
            .add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
            .sign(ca_key, hashes.SHA256())
        )
        write(stem, key, cert)
    return {p.stem + p.suffix.replace(".", "_"): p for p in directory.iterdir()}


@pytest.fixture
def tls_pushgateway(tmp_path: Path) -> Iterator[tuple[str, dict[str, Path]]]:
    """A Pushgateway serving TLS that requires a client certificate from the same CA."""
    certs = _certificates(tmp_path)
    web_config = tmp_path / "web.yml"
    web_config.write_text(
        "tls_server_config:\n"
        f"  cert_file: {certs['server_crt']}\n"
        f"  key_file: {certs['server_key']}\n"
        "  client_auth_type: RequireAndVerifyClientCert\n"
        f"  client_ca_file: {certs['ca_crt']}\n"
    )
    with procs.pushgateway(tmp_path, web_config=web_config) as gateway:
        yield f"https://{gateway.address}", certs


@pytest.mark.e2e
def test_tls_settings_are_honoured(tls_pushgateway: tuple[str, dict[str, Path]]) -> None:
    url, certs = tls_pushgateway
    result, run = builders.result(), metrics.RunStamp(1.0, 2.0)
    with pytest.raises(OSError, match="CERTIFICATE_VERIFY_FAILED"):
        pushgateway.push(result, run, gateway=url)  # the system CAs do not know ours
    ca_only = pushgateway.tls_context(ca_file=str(certs["ca_crt"]))
    with pytest.raises(OSError):
        pushgateway.push(
            result, run, gateway=url, handler=pushgateway.auth_handler(None, None, tls=ca_only)
        )
    full = pushgateway.tls_context(
        ca_file=str(certs["ca_crt"]),
        cert_file=str(certs["client_crt"]),
        key_file=str(certs["client_key"]),
    )
    pushgateway.push(
        result, run, gateway=url, handler=pushgateway.auth_handler(None, None, tls=full)
    )


# --- listeners -----------------------------------------------------------------------------------


@pytest.mark.e2e
def test_every_listener_of_the_stack_is_on_loopback(live_stack: LiveStack) -> None:
    pids = live_stack.local.pids()  # started with the argv `driftline stack up` uses
    assert len(pids) == 3
    sockets = listening_sockets(pids)
    assert len(sockets) >= 3 and all(s.startswith("127.0.0.1:") for s in sockets), sockets


def test_the_test_helpers_listen_on_loopback_only() -> None:
    from tests.pushgateway_recorder import recording_pushgateway

    with recording_pushgateway():
        sockets = listening_sockets({os.getpid()})
        assert sockets and all(s.startswith("127.0.0.1:") for s in sockets), sockets
