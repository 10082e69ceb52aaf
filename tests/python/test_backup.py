"""scripts/backup and scripts/restore on the real PostgreSQL of this machine.

A database with the addon's tables for CAFs and documents (same names and the same encryption at
rest as l10n_cl_dte: Fernet tokens whose key file lives outside the database), a filestore and
the key file are backed up, restored into a NEW database, and found intact; the archive holds
no plaintext key. The same mechanics on a real Odoo database need ODOO_PATH and a database with
l10n_cl_dte installed (ODOO_BACKUP_DB); without them that part is skipped with a message.
"""
from __future__ import annotations

import getpass
import io
import os
import shutil
import subprocess
import tarfile
from pathlib import Path
from typing import Iterator

import pytest
from cryptography.fernet import Fernet

from dte_native import testkit

REPO = Path(__file__).resolve().parents[2]
PG = {"PGHOST": "127.0.0.1", "PGPORT": "5432", "PGUSER": os.environ.get("PGUSER") or getpass.getuser()}
PASSPHRASE = "correct horse battery staple"


def psql(db: str, sql: str) -> str:
    r = subprocess.run(["psql", "-d", db, "-v", "ON_ERROR_STOP=1", "-Atqc", sql], env={**os.environ, **PG},
                       capture_output=True, text=True, timeout=60)
    if r.returncode != 0:
        raise AssertionError(r.stderr)
    return r.stdout.strip()


def pg_available() -> bool:
    if not shutil.which("psql") or not shutil.which("pg_dump"):
        return False
    try:
        return psql("postgres", "SELECT 1") == "1"
    except AssertionError:
        return False


pytestmark = pytest.mark.skipif(not pg_available(), reason="no PostgreSQL at 127.0.0.1:5432 (or no psql)")


def run_script(name: str, *args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(REPO / "scripts" / name), *args], env={**os.environ, **PG, **(env or {})},
                          capture_output=True, text=True, timeout=300)


def drop(db: str) -> None:
    subprocess.run(["dropdb", "--if-exists", db], env={**os.environ, **PG}, capture_output=True)


@pytest.fixture()
def source(tmp_path: Path, kit: testkit.TestKit) -> Iterator[dict[str, object]]:
    db = f"dte_backup_src_{os.getpid()}"
    drop(db)
    psql("postgres", f"CREATE DATABASE {db}")
    data_dir = tmp_path / "odoo-data"
    key_file = tmp_path / "keys" / "l10n_cl_dte.key"
    key_file.parent.mkdir()
    key = Fernet.generate_key()
    key_file.write_bytes(key + b"\n")
    fernet = Fernet(key)
    caf_xml = kit.caf_paths[33].read_bytes()
    assert b"RSASK" in caf_xml  # the CAF file carries the range's private key
    cipher = fernet.encrypt(caf_xml).decode()
    psql(db, """
        CREATE TABLE l10n_cl_dte_caf (id serial PRIMARY KEY, company_id int NOT NULL, doc_type int NOT NULL,
            folio_from int NOT NULL, folio_to int NOT NULL, next_folio int NOT NULL, caf_cipher text);
        CREATE TABLE l10n_cl_dte_document (id serial PRIMARY KEY, company_id int NOT NULL, doc_type int NOT NULL,
            folio int NOT NULL, state varchar NOT NULL, caf_id int REFERENCES l10n_cl_dte_caf(id),
            store_fname varchar, UNIQUE (company_id, doc_type, folio));
    """)
    psql(db, f"INSERT INTO l10n_cl_dte_caf (company_id, doc_type, folio_from, folio_to, next_folio, caf_cipher) "
             f"VALUES (1, 33, 1, 100, 4, '{cipher}')")
    filestore = data_dir / "filestore" / db
    for folio, state in ((1, "accepted"), (2, "rejected"), (3, "sent")):
        fname = f"ab/ab{folio:038d}"
        (filestore / "ab").mkdir(parents=True, exist_ok=True)
        (filestore / fname).write_bytes(b"<DTE folio='%d'/>" % folio)
        psql(db, f"INSERT INTO l10n_cl_dte_document (company_id, doc_type, folio, state, caf_id, store_fname) "
                 f"VALUES (1, 33, {folio}, '{state}', 1, '{fname}')")
    yield {"db": db, "data_dir": data_dir, "key_file": key_file, "key": key, "caf_xml": caf_xml}
    drop(db)


def snapshot(db: str) -> tuple[str, str]:
    return (psql(db, "SELECT id, doc_type, folio_from, folio_to, next_folio, caf_cipher FROM l10n_cl_dte_caf ORDER BY id"),
            psql(db, "SELECT id, doc_type, folio, state, caf_id, store_fname FROM l10n_cl_dte_document ORDER BY id"))


def test_backup_then_restore_into_a_new_database(source: dict[str, object], tmp_path: Path) -> None:
    db, data_dir, key_file = str(source["db"]), Path(str(source["data_dir"])), Path(str(source["key_file"]))
    common = ["--data-dir", str(data_dir), "--db-host", "127.0.0.1"]
    r = run_script("backup", "--db", db, "--out", str(tmp_path / "out"), "--key-file", str(key_file), *common,
                   env={"DTE_BACKUP_PASSPHRASE": PASSPHRASE})
    assert r.returncode == 0, r.stderr
    archive = Path(r.stdout.strip())
    assert archive.is_file() and oct(archive.stat().st_mode & 0o777) == "0o600"

    # No plaintext key anywhere: not the Fernet key, not the CAF's private key.
    key = bytes(source["key"])  # type: ignore[arg-type]
    raw = archive.read_bytes()
    assert key not in raw and b"RSASK" not in raw and b"PRIVATE KEY" not in raw
    with tarfile.open(archive) as tar:
        names = set(tar.getnames())
        assert names == {"manifest.json", "db.dump", "filestore.tar.gz", "dte-key.enc"}
        dump = tar.extractfile("db.dump").read()  # type: ignore[union-attr]
        fs = tar.extractfile("filestore.tar.gz").read()  # type: ignore[union-attr]
    sql = subprocess.run(["pg_restore", "-f", "-"], input=dump, capture_output=True, timeout=60).stdout
    assert b"l10n_cl_dte_caf" in sql and b"RSASK" not in sql and key not in sql
    with tarfile.open(fileobj=io.BytesIO(fs), mode="r:gz") as t:
        assert all(key not in t.extractfile(m).read() for m in t.getmembers() if m.isfile())  # type: ignore[union-attr]

    # Restore into a new database, on a machine without the key file yet.
    new_db = f"{db}_restored"
    new_key = tmp_path / "restored-keys" / "l10n_cl_dte.key"
    drop(new_db)
    try:
        r = run_script("restore", str(archive), "--db", new_db, "--key-file", str(new_key), "--copy", *common,
                       env={"DTE_BACKUP_PASSPHRASE": PASSPHRASE})
        assert r.returncode == 0, r.stderr
        assert snapshot(new_db) == snapshot(db)  # documents and CAFs intact
        assert new_key.read_bytes() == key_file.read_bytes() and oct(new_key.stat().st_mode & 0o777) == "0o600"
        cipher = psql(new_db, "SELECT caf_cipher FROM l10n_cl_dte_caf")
        assert Fernet(new_key.read_bytes().strip()).decrypt(cipher.encode()) == source["caf_xml"]
        for fname in psql(new_db, "SELECT store_fname FROM l10n_cl_dte_document").split():
            restored = data_dir / "filestore" / new_db / fname
            assert restored.read_bytes() == (data_dir / "filestore" / db / fname).read_bytes()

        # Restore refuses an existing database (it never restores over one).
        r = run_script("restore", str(archive), "--db", new_db, "--key-file", str(new_key), *common,
                       env={"DTE_BACKUP_PASSPHRASE": PASSPHRASE})
        assert r.returncode == 2 and "already exists" in r.stderr
    finally:
        drop(new_db)


def test_restore_refusals_touch_nothing(source: dict[str, object], tmp_path: Path) -> None:
    db, data_dir, key_file = str(source["db"]), Path(str(source["data_dir"])), Path(str(source["key_file"]))
    common = ["--data-dir", str(data_dir)]
    r = run_script("backup", "--db", db, "--out", str(tmp_path), "--key-file", str(key_file), *common)
    assert r.returncode == 2 and "--passphrase-file" in r.stderr  # no passphrase, no key: refused
    r = run_script("backup", "--db", db, "--out", str(tmp_path), "--no-key", *common)
    assert r.returncode == 0, r.stderr
    with tarfile.open(r.stdout.strip()) as tar:
        assert "dte-key.enc" not in tar.getnames()
    r = run_script("backup", "--db", db, "--out", str(tmp_path), "--key-file", str(key_file), *common,
                   env={"DTE_BACKUP_PASSPHRASE": PASSPHRASE})
    archive = r.stdout.strip()
    new_db = f"{db}_refused"
    drop(new_db)
    # Wrong passphrase: clear error, no database created.
    r = run_script("restore", archive, "--db", new_db, "--key-file", str(tmp_path / "k2"), *common,
                   env={"DTE_BACKUP_PASSPHRASE": "not the passphrase at all"})
    assert r.returncode == 2 and "wrong backup passphrase" in r.stderr
    # A different key file already there: refused (it would orphan that installation's secrets).
    other = tmp_path / "other.key"
    other.write_bytes(Fernet.generate_key())
    r = run_script("restore", archive, "--db", new_db, "--key-file", str(other), *common,
                   env={"DTE_BACKUP_PASSPHRASE": PASSPHRASE})
    assert r.returncode == 2 and "different DTE key" in r.stderr
    assert psql("postgres", f"SELECT count(*) FROM pg_database WHERE datname = '{new_db}'") == "0"
    # A corrupt archive is detected before anything is restored.
    broken = tmp_path / "broken.tar"
    with tarfile.open(archive) as src, tarfile.open(broken, "w") as dst:
        for m in src.getmembers():
            data = src.extractfile(m).read()  # type: ignore[union-attr]
            if m.name == "db.dump":
                data = data[:-10] + b"0123456789"
            m.size = len(data)
            dst.addfile(m, io.BytesIO(data))
    r = run_script("restore", str(broken), "--db", new_db, *common, env={"DTE_BACKUP_PASSPHRASE": PASSPHRASE})
    assert r.returncode == 2 and "corrupt" in r.stderr
    assert psql("postgres", f"SELECT count(*) FROM pg_database WHERE datname = '{new_db}'") == "0"


def test_odoo_database_round_trip(tmp_path: Path) -> None:
    """The same scripts on a real Odoo database with l10n_cl_dte (documents and CAFs made by the
    addon's own tests: keep one with ODOO_TEST_KEEP_DB=1 scripts/test-odoo)."""
    db = os.environ.get("ODOO_BACKUP_DB")
    if not os.environ.get("ODOO_PATH") or not db:
        pytest.skip("Odoo part skipped: set ODOO_PATH and ODOO_BACKUP_DB (a database with l10n_cl_dte, e.g. "
                    "one kept by ODOO_TEST_KEEP_DB=1 scripts/test-odoo); the plain PostgreSQL tests above "
                    "cover the same mechanics")
    data_dir = Path(os.environ.get("ODOO_DATA_DIR", REPO / "build" / "odoo-data"))
    key_file = Path(os.environ.get("DTE_KEY_FILE", data_dir / "l10n_cl_dte.key"))
    before = (psql(db, "SELECT count(*), coalesce(sum(folio), 0) FROM l10n_cl_dte_document"),
              psql(db, "SELECT count(*), coalesce(sum(next_folio), 0) FROM l10n_cl_dte_caf"))
    r = run_script("backup", "--db", db, "--out", str(tmp_path), "--data-dir", str(data_dir),
                   "--key-file", str(key_file), env={"DTE_BACKUP_PASSPHRASE": PASSPHRASE})
    assert r.returncode == 0, r.stderr
    new_db = f"{db}_restored_{os.getpid()}"
    try:
        r = run_script("restore", r.stdout.strip(), "--db", new_db, "--data-dir", str(data_dir),
                       "--key-file", str(key_file), env={"DTE_BACKUP_PASSPHRASE": PASSPHRASE})
        assert r.returncode == 0, r.stderr
        after = (psql(new_db, "SELECT count(*), coalesce(sum(folio), 0) FROM l10n_cl_dte_document"),
                 psql(new_db, "SELECT count(*), coalesce(sum(next_folio), 0) FROM l10n_cl_dte_caf"))
        assert after == before
    finally:
        drop(new_db)
        shutil.rmtree(data_dir / "filestore" / new_db, ignore_errors=True)
