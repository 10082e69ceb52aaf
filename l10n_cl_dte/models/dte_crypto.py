"""Encryption at rest of the signer's PKCS#12, its password and the CAF private keys.

The Fernet key never enters the database: a dump of the database alone does not reveal the
secrets. It lives in a file named by the ``DTE_KEY_FILE`` environment variable or the
``dte_key_file`` option of the Odoo configuration, else ``<data_dir>/l10n_cl_dte.key``, created
0600 on first use.
"""
import os
import threading
from pathlib import Path

from cryptography.fernet import Fernet, InvalidToken

from odoo.exceptions import UserError
from odoo.tools import config

_lock = threading.Lock()


def key_path():
    explicit = os.environ.get('DTE_KEY_FILE') or config.get('dte_key_file')
    if explicit:
        return Path(explicit)
    return Path(config['data_dir']) / 'l10n_cl_dte.key'


def _load_key():
    path = key_path()
    with _lock:
        if path.exists():
            return path.read_bytes().strip()
        path.parent.mkdir(parents=True, exist_ok=True)
        key = Fernet.generate_key()
        try:
            # O_EXCL: two workers starting together must not write two different keys.
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:
            return path.read_bytes().strip()
        with os.fdopen(fd, 'wb') as f:
            f.write(key + b'\n')
        return key


def encrypt(data):
    """bytes or str -> Fernet token (ASCII str)."""
    if isinstance(data, str):
        data = data.encode('utf-8')
    return Fernet(_load_key()).encrypt(data).decode('ascii')


def decrypt(env, token):
    """Fernet token -> bytes; UserError when the key file is not the one that encrypted it."""
    try:
        return Fernet(_load_key()).decrypt(token.encode('ascii'))
    except InvalidToken:
        raise UserError(env._(
            'A DTE secret cannot be decrypted with the key in %s: the key file was replaced or '
            'belongs to another installation. Restore it, or upload the certificate and CAFs again.',
            key_path())) from None
