#!/usr/bin/env python3
"""Backup and restore of an Odoo database with l10n_cl_dte: called by scripts/backup and
scripts/restore (see their --help).

One archive (tar) holds:
  manifest.json     what is inside, with a SHA-256 per member, checked on restore
  db.dump           pg_dump custom format of the database (the CAF private keys and the signer's
                    PKCS#12 are in it only as Fernet tokens: l10n_cl_dte/models/dte_crypto.py)
  filestore.tar.gz  <data_dir>/filestore/<db> (attachments: signed XMLs, PDFs...)
  dte-key.enc       the Fernet key file (which lives OUTSIDE the database), encrypted with a
                    key derived by scrypt from the backup passphrase; never stored in clear

Without a passphrase the key is left out of the archive (``--no-key``): keep the key file apart.
Restore goes into a NEW database (it refuses an existing one) and never overwrites a different
key file: an installation's existing secrets would become unreadable.
"""
from __future__ import annotations

import argparse
import base64
import configparser
import datetime as dt
import hashlib
import io
import json
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path
from typing import Any

FORMAT = "dte-backup/1"
SCRYPT = {"n": 2**15, "r": 8, "p": 1}


class BackupError(Exception):
    """A clear, user-facing failure (exit 2)."""


# --------------------------------------------------------------------------- settings


def odoo_options(conf: str | None) -> dict[str, str]:
    if not conf:
        return {}
    parser = configparser.ConfigParser(interpolation=None)
    if not parser.read(conf):
        raise BackupError(f"cannot read Odoo configuration {conf}")
    return dict(parser["options"]) if parser.has_section("options") else {}


def default_data_dir() -> Path:
    # Odoo's own default (odoo/tools/appdirs.py user_data_dir("Odoo")).
    base = os.environ.get("XDG_DATA_HOME") or os.path.expanduser("~/.local/share")
    return Path(base) / "Odoo"


def settings(args: argparse.Namespace) -> dict[str, Any]:
    opts = odoo_options(args.odoo_conf)
    data_dir = Path(args.data_dir or opts.get("data_dir") or default_data_dir())
    key_file = Path(args.key_file or os.environ.get("DTE_KEY_FILE") or opts.get("dte_key_file")
                    or data_dir / "l10n_cl_dte.key")
    pg = {
        "host": args.db_host or opts.get("db_host") or os.environ.get("PGHOST") or "127.0.0.1",
        "port": str(args.db_port or opts.get("db_port") or os.environ.get("PGPORT") or "5432"),
        "user": args.db_user or opts.get("db_user") or os.environ.get("PGUSER") or "",
    }
    if opts.get("db_password") and opts["db_password"] not in ("False", ""):
        pg["password"] = opts["db_password"]
    return {"data_dir": data_dir, "key_file": key_file, "pg": pg}


def pg_env(pg: dict[str, str]) -> dict[str, str]:
    env = dict(os.environ)
    env.update({"PGHOST": pg["host"], "PGPORT": pg["port"]})
    if pg.get("user"):
        env["PGUSER"] = pg["user"]
    if pg.get("password"):
        env["PGPASSWORD"] = pg["password"]
    return env


def run(cmd: list[str], env: dict[str, str], what: str, **kw: Any) -> subprocess.CompletedProcess[bytes]:
    exe = shutil.which(cmd[0])
    if not exe:
        raise BackupError(f"{cmd[0]} not found: install postgresql-client (scripts/setup)")
    r = subprocess.run([exe, *cmd[1:]], env=env, capture_output=True, **kw)
    if r.returncode != 0:
        raise BackupError(f"{what} failed: {r.stderr.decode(errors='replace').strip()[-800:]}")
    return r


def db_exists(name: str, env: dict[str, str]) -> bool:
    r = run(["psql", "-d", "postgres", "-Atqc", "SELECT 1 FROM pg_database WHERE datname = %s" % quote(name)],
            env, "psql")
    return r.stdout.strip() == b"1"


def quote(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


# --------------------------------------------------------------------------- key encryption


def passphrase(args: argparse.Namespace) -> bytes | None:
    if args.passphrase_file:
        try:
            value = Path(args.passphrase_file).read_bytes().rstrip(b"\r\n")
        except OSError as e:
            raise BackupError(f"cannot read passphrase file {args.passphrase_file}: {e.strerror}") from None
    else:
        value = os.environ.get("DTE_BACKUP_PASSPHRASE", "").encode()
    if value and len(value) < 12:
        raise BackupError("the backup passphrase must have at least 12 characters")
    return value or None


def _fernet(secret: bytes, salt: bytes) -> Any:
    from cryptography.fernet import Fernet
    from cryptography.hazmat.primitives.kdf.scrypt import Scrypt

    kdf = Scrypt(salt=salt, length=32, n=SCRYPT["n"], r=SCRYPT["r"], p=SCRYPT["p"])
    return Fernet(base64.urlsafe_b64encode(kdf.derive(secret)))


def encrypt_key(key: bytes, secret: bytes) -> bytes:
    salt = os.urandom(16)
    token = _fernet(secret, salt).encrypt(key)
    return json.dumps({"kdf": "scrypt", **SCRYPT, "salt": base64.b64encode(salt).decode(),
                       "fernet": token.decode()}).encode()


def decrypt_key(blob: bytes, secret: bytes) -> bytes:
    from cryptography.fernet import InvalidToken

    meta = json.loads(blob)
    try:
        return bytes(_fernet(secret, base64.b64decode(meta["salt"])).decrypt(meta["fernet"].encode()))
    except InvalidToken:
        raise BackupError("wrong backup passphrase: the DTE key in the archive cannot be decrypted") from None


# --------------------------------------------------------------------------- backup


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def add_bytes(tar: tarfile.TarFile, name: str, data: bytes) -> None:
    info = tarfile.TarInfo(name)
    info.size = len(data)
    info.mode = 0o600
    info.mtime = int(dt.datetime.now(dt.timezone.utc).timestamp())
    tar.addfile(info, io.BytesIO(data))


def backup(args: argparse.Namespace) -> Path:
    cfg = settings(args)
    env = pg_env(cfg["pg"])
    if not db_exists(args.db, env):
        raise BackupError(f"database {args.db} does not exist")
    secret = passphrase(args)
    key: bytes | None = None
    if not args.no_key:
        if secret is None:
            raise BackupError("give --passphrase-file (or $DTE_BACKUP_PASSPHRASE) to include the DTE key "
                              "encrypted, or --no-key to leave it out and keep the key file apart")
        if not cfg["key_file"].is_file():
            raise BackupError(f"the DTE key file {cfg['key_file']} does not exist (--key-file / $DTE_KEY_FILE)")
        key = cfg["key_file"].read_bytes()
    out_dir = Path(args.out)
    out_dir.mkdir(parents=True, exist_ok=True)
    stamp = dt.datetime.now(dt.timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    archive = out_dir / f"dte-backup-{args.db}-{stamp}.tar"
    filestore = cfg["data_dir"] / "filestore" / args.db
    with tempfile.TemporaryDirectory() as tmp:
        files: dict[str, Path] = {"db.dump": Path(tmp) / "db.dump"}
        run(["pg_dump", "-Fc", "--no-owner", "-f", str(files["db.dump"]), "-d", args.db], env, "pg_dump")
        if filestore.is_dir():
            files["filestore.tar.gz"] = Path(tmp) / "filestore.tar.gz"
            with tarfile.open(files["filestore.tar.gz"], mode="w:gz") as fs:
                fs.add(filestore, arcname=".")
        if key is not None and secret is not None:
            files["dte-key.enc"] = Path(tmp) / "dte-key.enc"
            files["dte-key.enc"].write_bytes(encrypt_key(key, secret))
        manifest = {
            "format": FORMAT, "database": args.db, "created": stamp,
            "filestore": filestore.is_dir(), "key_included": key is not None,
            "members": {n: sha256_file(f) for n, f in files.items()},
        }
        partial = archive.with_suffix(".tar.part")
        fd = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "wb") as f, tarfile.open(fileobj=f, mode="w") as tar:
            add_bytes(tar, "manifest.json", json.dumps(manifest, indent=2).encode())
            for name, path in files.items():
                info = tar.gettarinfo(str(path), arcname=name)
                info.mode, info.uid, info.gid, info.uname, info.gname = 0o600, 0, 0, "", ""
                with path.open("rb") as src:
                    tar.addfile(info, src)
        partial.rename(archive)  # a crash never leaves a half archive under the final name
    return archive


# --------------------------------------------------------------------------- restore


def read_archive(path: Path, tmp: Path) -> tuple[dict[str, Any], dict[str, Path]]:
    """Extracts the members into ``tmp`` and checks them against the manifest."""
    members: dict[str, Path] = {}
    try:
        with tarfile.open(path, mode="r") as tar:
            for m in tar:
                if not m.isfile() or "/" in m.name or m.name.startswith("."):
                    raise BackupError(f"{path}: unexpected member {m.name!r}: not a dte backup")
                src = tar.extractfile(m)
                assert src is not None
                members[m.name] = tmp / m.name
                with members[m.name].open("wb") as out:
                    shutil.copyfileobj(src, out)
    except (OSError, tarfile.TarError) as e:
        raise BackupError(f"cannot read {path}: {e}") from None
    if "manifest.json" not in members:
        raise BackupError(f"{path}: no manifest.json: not a dte backup")
    manifest = json.loads(members.pop("manifest.json").read_bytes())
    if manifest.get("format") != FORMAT:
        raise BackupError(f"{path}: unknown format {manifest.get('format')!r}")
    for name, digest in manifest["members"].items():
        if name not in members or sha256_file(members[name]) != digest:
            raise BackupError(f"{path}: member {name} is missing or corrupt (checksum mismatch)")
    return manifest, members


def safe_extract(archive: Path, dest: Path) -> None:
    with tarfile.open(archive, mode="r:gz") as fs:
        for m in fs.getmembers():
            target = (dest / m.name).resolve()
            if not (target == dest.resolve() or dest.resolve() in target.parents) or m.issym() or m.islnk():
                raise BackupError(f"filestore member {m.name!r} escapes the filestore: refused")
        fs.extractall(dest)


def restore(args: argparse.Namespace) -> str:
    cfg = settings(args)
    env = pg_env(cfg["pg"])
    with tempfile.TemporaryDirectory() as tmp:
        manifest, members = read_archive(Path(args.archive), Path(tmp))
        # Everything that can fail without touching anything comes first.
        key: bytes | None = None
        if manifest["key_included"] and not args.no_key:
            secret = passphrase(args)
            if secret is None:
                raise BackupError("the archive holds the DTE key encrypted: give --passphrase-file "
                                  "(or $DTE_BACKUP_PASSPHRASE), or --no-key to restore it yourself")
            key = decrypt_key(members["dte-key.enc"].read_bytes(), secret)
            existing = cfg["key_file"]
            if existing.exists() and existing.read_bytes().strip() != key.strip():
                raise BackupError(f"{existing} holds a different DTE key: restoring would make that "
                                  "installation's secrets unreadable. Use another --key-file.")
        if db_exists(args.db, env):
            raise BackupError(f"database {args.db} already exists: restore goes into a new database")
        filestore = cfg["data_dir"] / "filestore" / args.db
        if filestore.exists():
            raise BackupError(f"{filestore} already exists: restore goes into a new filestore")
        run(["createdb", "-T", "template0", args.db], env, "createdb")
        try:
            run(["pg_restore", "--no-owner", "--exit-on-error", "-d", args.db, str(members["db.dump"])],
                env, "pg_restore")
            if "filestore.tar.gz" in members:
                filestore.mkdir(parents=True)
                safe_extract(members["filestore.tar.gz"], filestore)
            if args.copy:
                # Like Odoo's "This database was copied": a new identity, so the copy and the
                # original running side by side are not taken for one another.
                run(["psql", "-d", args.db, "-v", "ON_ERROR_STOP=1", "-qc",
                     "DO $$ BEGIN IF to_regclass('ir_config_parameter') IS NOT NULL THEN "
                     "UPDATE ir_config_parameter SET value = gen_random_uuid()::text "
                     "WHERE key = 'database.uuid'; END IF; END $$"], env, "psql (new database.uuid)")
        except BaseException:
            # Nothing half-restored is left behind under the new name.
            subprocess.run(["dropdb", "--if-exists", args.db], env=env, capture_output=True)
            shutil.rmtree(filestore, ignore_errors=True)
            raise
    if key is not None:
        path = cfg["key_file"]
        if not path.exists():
            path.parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "wb") as f:
                f.write(key)
    return str(args.db)


# --------------------------------------------------------------------------- command line


def common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--odoo-conf", metavar="FILE", help="Odoo configuration: db_host/db_port/db_user/"
                   "db_password, data_dir and dte_key_file are read from it")
    p.add_argument("--db-host")
    p.add_argument("--db-port")
    p.add_argument("--db-user")
    p.add_argument("--data-dir", metavar="DIR", help="Odoo data_dir (its filestore/ holds attachments)")
    p.add_argument("--key-file", metavar="FILE", help="the DTE Fernet key file (default $DTE_KEY_FILE, "
                   "dte_key_file of the Odoo configuration, else <data_dir>/l10n_cl_dte.key)")
    p.add_argument("--passphrase-file", metavar="FILE",
                   help="passphrase protecting the DTE key in the archive (default $DTE_BACKUP_PASSPHRASE)")
    p.add_argument("--no-key", action="store_true", help="leave the DTE key out (keep the key file apart)")


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="dte-backup")
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("backup", help="dump database, filestore and (encrypted) DTE key into one archive")
    p.add_argument("--db", required=True, help="database to back up")
    p.add_argument("--out", required=True, metavar="DIR", help="folder for the archive")
    common(p)
    p = sub.add_parser("restore", help="restore an archive into a NEW database")
    p.add_argument("archive", metavar="ARCHIVE.tar")
    p.add_argument("--db", required=True, help="name of the new database")
    p.add_argument("--copy", action="store_true",
                   help="the original stays in use: give the restored Odoo database a new database.uuid")
    common(p)
    args = parser.parse_args(argv)
    try:
        if args.command == "backup":
            print(backup(args))
        else:
            print(f"restored into database {restore(args)}")
    except BackupError as e:
        print(f"{args.command}: error: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
