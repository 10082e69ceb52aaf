"""Test and demo material made on the spot: a stand-in "SII" CAF-signing key, CAFs signed with it,
and self-signed signer certificates shaped like Chilean CAs' ones. Nothing here is secret; none
of it is accepted by the real SII.

>>> from dte_native import testkit
>>> kit = testkit.write_kit("/tmp/kit", rut="76192083-9", types=[33, 39])  # doctest: +SKIP
>>> kit.caf_paths[33].name  # doctest: +SKIP
'caf-33.xml'
"""
from __future__ import annotations

import imaplib
import json
import os
import pwd
import secrets
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable

from . import _core
from ._api import Caf, Certificate, SiiKeyring, supported_types

__all__ = ["KeyPair", "Pkcs12Bundle", "TestKit", "make_rsa_key", "make_caf", "make_certificate",
           "write_kit", "DovecotServer", "free_port"]

DEFAULT_ISSUER_RUT = "76543210-3"  # the issuer of the shipped examples
DEFAULT_SIGNER_RUT = "11111111-1"


@dataclass(frozen=True)
class KeyPair:
    private_pem: str
    public_pem: str

    def __repr__(self) -> str:  # never show the private key
        return "<KeyPair>"


@dataclass(frozen=True)
class Pkcs12Bundle:
    p12: bytes
    cert_pem: str
    key_pem: str

    def __repr__(self) -> str:
        return "<Pkcs12Bundle>"


def make_rsa_key(bits: int = 1024, exponent: int = 65537) -> KeyPair:
    """A fresh RSA key pair in PEM (PKCS#8 private, SubjectPublicKeyInfo public).

    >>> make_rsa_key(1024).public_pem.startswith("-----BEGIN PUBLIC KEY-----")  # doctest: +SKIP
    True
    """
    private_pem, public_pem = _core.testkit_make_rsa_key(bits, exponent)
    return KeyPair(private_pem, public_pem)


def make_caf(issuer_rut: str, doc_type: int, sii_private_pem: str, *, folio_from: int = 1,
             folio_to: int = 100, issuer_name: str = "EMPRESA DE PRUEBA",
             authorized_on: str = "", idk: int = 100) -> bytes:
    """An AUTORIZACION file (ISO-8859-1 bytes) signed with ``sii_private_pem``, carrying a fresh
    512-bit range key. ``authorized_on`` (FA) defaults to today.

    >>> sii = make_rsa_key()  # doctest: +SKIP
    >>> Caf.parse(make_caf("76192083-9", 33, sii.private_pem)).info.folio_to  # doctest: +SKIP
    100
    """
    return _core.testkit_make_caf(issuer_rut, doc_type, folio_from, folio_to, sii_private_pem,
                                  issuer_name=issuer_name, authorized_on=authorized_on, idk=idk)


def make_certificate(rut: str, password: str, *, name: str = "Firmante de Prueba",
                     email: str = "firmante@example.cl", days_valid: int = 365,
                     days_offset: int = 0, rut_in_san: bool = True,
                     rut_in_serial_number: bool = True, legacy_pkcs12: bool = False) -> Pkcs12Bundle:
    """A self-signed RSA-2048 signer certificate, as PEM and as PKCS#12 with ``password``.
    ``days_valid`` < 0 makes it already expired; ``days_offset`` > 0 not yet valid.

    >>> bundle = make_certificate("11111111-1", "pw")  # doctest: +SKIP
    >>> Certificate.from_pkcs12(bundle.p12, "pw").info.signer_rut  # doctest: +SKIP
    '11111111-1'
    """
    p12, cert_pem, key_pem = _core.testkit_make_certificate(
        rut, password, name=name, email=email, days_valid=days_valid, days_offset=days_offset,
        rut_in_san=rut_in_san, rut_in_serial_number=rut_in_serial_number,
        legacy_pkcs12=legacy_pkcs12)
    return Pkcs12Bundle(p12, cert_pem, key_pem)


@dataclass
class TestKit:
    """Where write_kit put everything (no secrets in this object except the password path)."""

    __test__ = False  # not a pytest test class

    root: Path
    issuer_rut: str
    signer_rut: str
    sii_keys_dir: Path
    sii_private_key_path: Path
    cert_path: Path
    cert_pem_path: Path
    password_file: Path
    caf_paths: dict[int, Path] = field(default_factory=dict)

    @property
    def password(self) -> str:
        return self.password_file.read_text(encoding="utf-8").strip()

    def certificate(self) -> Certificate:
        return Certificate.load(self.cert_path, self.password)

    def caf(self, doc_type: int) -> Caf:
        return Caf.load(self.caf_paths[doc_type])

    def keyring(self) -> SiiKeyring:
        """A keyring trusting only this kit's SII key."""
        ring = SiiKeyring()
        ring.add_dir(self.sii_keys_dir)
        return ring


def _write_private(path: Path, data: bytes) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(data)


def write_kit(out_dir: str | os.PathLike[str], *, rut: str = DEFAULT_ISSUER_RUT,
              types: Iterable[int] | None = None, signer_rut: str = DEFAULT_SIGNER_RUT,
              folio_from: int = 1, folio_to: int = 100, idk: int = 100,
              password: str | None = None) -> TestKit:
    """Writes a complete kit into ``out_dir``:

    - ``sii-keys/<idk>.pem``: the test SII public key (pass the folder as ``--sii-keys`` /
      ``DTE_SII_KEYS``), ``sii-private-key.pem`` (0600) to make more CAFs later;
    - ``caf-<type>.xml`` for each type;
    - ``cert.p12`` with ``cert.password`` (0600) and ``cert.pem``;
    - ``kit.json``: what is where (no secrets).

    >>> kit = write_kit("/tmp/kit", types=[33])  # doctest: +SKIP
    >>> kit.certificate().info.signer_rut  # doctest: +SKIP
    '11111111-1'
    """
    root = Path(out_dir)
    root.mkdir(parents=True, exist_ok=True)
    keys_dir = root / "sii-keys"
    keys_dir.mkdir(exist_ok=True)
    issuer = _core.rut_normalize(rut)
    signer = _core.rut_normalize(signer_rut)
    type_list = sorted(set(types)) if types is not None else list(supported_types())

    sii_key = make_rsa_key(1024)
    (keys_dir / f"{idk}.pem").write_text(sii_key.public_pem, encoding="ascii")
    private_path = root / "sii-private-key.pem"
    _write_private(private_path, sii_key.private_pem.encode("ascii"))

    caf_paths: dict[int, Path] = {}
    for doc_type in type_list:
        path = root / f"caf-{doc_type}.xml"
        path.write_bytes(make_caf(issuer, doc_type, sii_key.private_pem, folio_from=folio_from,
                                  folio_to=folio_to, idk=idk))
        caf_paths[doc_type] = path

    secret = password if password is not None else secrets.token_urlsafe(12)
    bundle = make_certificate(signer, secret)
    cert_path = root / "cert.p12"
    _write_private(cert_path, bundle.p12)
    password_file = root / "cert.password"
    _write_private(password_file, (secret + "\n").encode("utf-8"))
    cert_pem_path = root / "cert.pem"
    cert_pem_path.write_text(bundle.cert_pem, encoding="ascii")

    kit = TestKit(root, issuer, signer, keys_dir, private_path, cert_path, cert_pem_path,
                  password_file, caf_paths)
    summary = {
        "issuer_rut": issuer,
        "signer_rut": signer,
        "sii_keys": str(keys_dir),
        "cert": str(cert_path),
        "cert_pem": str(cert_pem_path),
        "password_file": str(password_file),
        "cafs": {str(t): str(p) for t, p in caf_paths.items()},
        "folios": [folio_from, folio_to],
    }
    (root / "kit.json").write_text(json.dumps(summary, indent=2) + "\n", encoding="utf-8")
    return kit


# --- a throwaway IMAP server for tests ---------------------------------------------------------

DOVECOT: str | None = shutil.which("dovecot") or (
    "/usr/sbin/dovecot" if os.access("/usr/sbin/dovecot", os.X_OK) else None)
"""The Debian ``dovecot`` binary (package dovecot-imapd, installed by scripts/setup), or None."""


def free_port() -> int:
    """A TCP port free on 127.0.0.1 right now (for test servers)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class DovecotServer:
    """Test utility: the Debian Dovecot started on loopback (plain IMAP, no TLS) with a temporary
    maildir store and one passwd-file user, for reception tests against a real IMAP server.
    Nothing here is fit for production.

    >>> with testkit.DovecotServer() as server:  # doctest: +SKIP
    ...     server.deliver(raw_mail)
    ...     batch = reception.fetch_inbox(server.url, server.user, server.password)

    Raises :class:`FileNotFoundError` when dovecot is not installed and :class:`RuntimeError`
    (with the tail of its log) when it does not start: callers in tests skip on either.
    The store lives in a fresh directory under the system temp dir (not pytest's ``tmp_path``,
    whose 0700 parents Dovecot's helper processes, running as other users, cannot enter);
    :meth:`stop` ends the server and removes it.
    """

    def __init__(self, user: str = "recepcion", password: str = "secreto") -> None:
        if DOVECOT is None:
            raise FileNotFoundError("dovecot is not installed (Debian dovecot-imapd; scripts/setup installs it)")
        self.user, self.password = user, password
        self.root = root = Path(tempfile.mkdtemp(prefix="dte_dovecot_"))
        self.port = free_port()
        self.proc: subprocess.Popen[bytes] | None = None
        try:
            self._start(root)
        except BaseException:
            self.stop()
            raise

    def _start(self, root: Path) -> None:
        root.chmod(0o755)  # auth/login processes run as other users
        (root / "run").mkdir()
        mail = root / "mail"
        mail.mkdir()
        uid, gid, extra = os.getuid(), os.getgid(), ""
        if uid == 0:  # Dovecot refuses mail access as root
            uid = gid = 65534
            os.chown(mail, uid, gid)
        else:
            me = pwd.getpwuid(uid).pw_name
            extra = f"default_login_user = {me}\ndefault_internal_user = {me}\n"
        (root / "passwd").write_text(f"{self.user}:{{PLAIN}}{self.password}::::\n")
        (root / "dovecot.conf").write_text(f"""base_dir = {root}/run
state_dir = {root}/run
log_path = {root}/dovecot.log
protocols = imap
listen = 127.0.0.1
ssl = no
disable_plaintext_auth = no
auth_mechanisms = plain login
first_valid_uid = 1
{extra}mail_location = maildir:{mail}/%u
passdb {{
  driver = passwd-file
  args = scheme=PLAIN username_format=%u {root}/passwd
}}
userdb {{
  driver = static
  args = uid={uid} gid={gid} home={mail}/%u
}}
service imap-login {{
  chroot =
  inet_listener imap {{
    address = 127.0.0.1
    port = {self.port}
  }}
  inet_listener imaps {{
    port = 0
  }}
}}
service anvil {{
  chroot =
}}
""")
        assert DOVECOT is not None
        self.proc = subprocess.Popen([DOVECOT, "-F", "-c", str(root / "dovecot.conf")],
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        for _ in range(100):
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=0.2).close()
                return
            except OSError:
                time.sleep(0.05)
        log = root / "dovecot.log"
        raise RuntimeError(f"dovecot did not start: {log.read_text()[-500:] if log.exists() else ''}")

    @property
    def url(self) -> str:
        """``imap://127.0.0.1:PORT/INBOX``."""
        return f"imap://127.0.0.1:{self.port}/INBOX"

    def deliver(self, raw: bytes) -> None:
        """Append one raw RFC 822 message to the user's INBOX (as a mail server's delivery would)."""
        with imaplib.IMAP4("127.0.0.1", self.port) as m:
            m.login(self.user, self.password)
            typ, _ = m.append("INBOX", "", imaplib.Time2Internaldate(time.time()), raw)
            if typ != "OK":
                raise RuntimeError(f"IMAP APPEND answered {typ}")

    def stop(self) -> None:
        """End the server and remove its store (idempotent)."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            self.proc.wait(timeout=10)
        shutil.rmtree(self.root, ignore_errors=True)

    def __enter__(self) -> DovecotServer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()
