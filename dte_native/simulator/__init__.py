"""A local stand-in for SII (Chile's tax service) speaking its wire formats.

Written independently of the C++ core (no `dte_native._core` here): it is how the core is checked.
Only the standard library, lxml, python-xmlsec and cryptography.

    from dte_native.simulator import Simulator
    sim = Simulator(port=0, config={"step_delay_s": 0})
    base = sim.start()          # "http://127.0.0.1:PORT"
    ...                         # point the SII client's base URLs at `base` (URL map: README.md)
    sim.stop()

Command line: ``dte simulator --port 8080`` or ``python -m dte_native.simulator --port 0``.
"""
from __future__ import annotations

import argparse
import json
import os
import signal
import sys
import threading
from pathlib import Path
from typing import Any

from . import checks, config as config_mod
from .server import SimCore, SimHTTPServer, make_server
from .store import Store

__all__ = ["Simulator", "main", "default_xsd_dir", "URL_MAP"]

# Path on the simulator for each SII endpoint (append to the base URL).
URL_MAP: dict[str, str] = {
    "seed": "/DTEWS/CrSeed.jws",
    "token": "/DTEWS/GetTokenFromSeed.jws",
    "upload": "/cgi_dte/UPL/DTEUpload",
    "query_est_up": "/DTEWS/QueryEstUp.jws",
    "query_est_dte": "/DTEWS/QueryEstDte.jws",
    "query_est_dte_av": "/DTEWS/services/QueryEstDteAv",
    "reclamo": "/WSREGISTRORECLAMODTE/registroreclamodteservice",
    "reclamo_cert": "/WSREGISTRORECLAMODTECERT/registroreclamodteservice",
    # Boleta REST: the API host (semilla, token, status) and the envío host, as path prefixes.
    "boleta_api": "/apicert",
    "boleta_envio": "/pangal",
}


def default_xsd_dir() -> Path | None:
    env = os.environ.get("DTE_XSD_DIR")
    if env:
        return Path(env)
    # Next to the source checkout, or (installed package) next to the current directory's repo.
    for repo in (Path(__file__).absolute().parents[2], Path.cwd()):
        guess = repo.parent / "shared" / "sii" / "xsd"
        if guess.is_dir():
            return guess
    return None


class Simulator:
    """One simulator instance on one port. Use in-process from tests or via `main()`."""

    def __init__(self, host: str = "127.0.0.1", port: int = 0, *, xsd_dir: str | Path | None = None,
                 sii_keys: str | Path | None = None, sii_certs: dict[str, str] | None = None,
                 config: dict[str, Any] | None = None, config_file: str | Path | None = None,
                 state_file: str | Path | None = None, verbose: bool = False) -> None:
        self.host, self.port = host, port
        self.cfg = config_mod.make(config, config_file)
        xsd = Path(xsd_dir) if xsd_dir else default_xsd_dir()
        self.schemas = checks.SchemaSet(xsd)
        self.sii_keys = checks.load_sii_keys(sii_keys, sii_certs)
        self.store = Store(self.cfg, self.sii_keys, self.schemas, state_file)
        self.core = SimCore(self.cfg, self.store, verbose)
        self._server: SimHTTPServer | None = None
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def start(self) -> str:
        server = self._server = make_server(self.host, self.port, self.core)
        self.port = int(server.server_address[1])
        self._thread = threading.Thread(target=server.serve_forever, name="sii-simulator", daemon=True)
        self._thread.start()
        return self.url

    def stop(self) -> None:
        self.core.stopping.set()
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None

    def configure(self, **changes: Any) -> None:
        self.core.update_config(changes)

    def advance_clock(self, seconds: float) -> None:
        with self.store.lock:
            self.cfg["clock_offset_s"] = float(self.cfg.get("clock_offset_s") or 0) + seconds

    def state(self) -> dict[str, Any]:
        return self.store.snapshot()

    def __enter__(self) -> "Simulator":
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def _parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="dte simulator", description="Local SII simulator (certification-like).")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=8080, help="0 picks a free port (the URL is printed)")
    p.add_argument("--xsd-dir", help="SII XSD folder (default: $DTE_XSD_DIR or ../shared/sii/xsd)")
    p.add_argument("--sii-keys", help="folder of trusted CAF keys named <IDK>.pem (public key or certificate)")
    p.add_argument("--sii-cert", action="append", default=[], metavar="IDK=FILE",
                   help="extra trusted CAF key/certificate for an IDK (e.g. SII's real 100.cer)")
    p.add_argument("--config", help="JSON configuration file (see README)")
    p.add_argument("--set", action="append", default=[], metavar="KEY=JSON",
                   help='override one config key, e.g. --set step_delay_s=0 --set faults=\'[...]\'')
    p.add_argument("--state", help="JSON file where accepted envelopes/documents are kept across runs")
    p.add_argument("--verbose", action="store_true", help="log every request")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = _parse_args(argv)
    overrides: dict[str, Any] = {}
    for item in args.set:
        key, _, value = item.partition("=")
        try:
            overrides[key] = json.loads(value)
        except json.JSONDecodeError:
            overrides[key] = value
    certs = dict(item.split("=", 1) for item in args.sii_cert)
    try:
        sim = Simulator(args.host, args.port, xsd_dir=args.xsd_dir, sii_keys=args.sii_keys, sii_certs=certs,
                        config=overrides, config_file=args.config, state_file=args.state, verbose=args.verbose)
    except (config_mod.ConfigError, OSError, ValueError) as exc:
        print(f"dte simulator: {exc}", file=sys.stderr)
        return 2
    url = sim.start()
    xsd = sim.schemas.folder if sim.schemas.available else "none (schema checks off)"
    print(f"SII simulator listening on {url}", flush=True)
    print(f"  XSD: {xsd}; trusted SII keys (IDK): {sorted(sim.sii_keys) or 'none'}", flush=True)
    for name, path in URL_MAP.items():
        print(f"  {name:18} {url}{path}", flush=True)
    done = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        try:
            signal.signal(sig, lambda *_: done.set())
        except ValueError:  # not the main thread
            pass
    try:
        done.wait()
    except KeyboardInterrupt:
        pass
    sim.stop()
    return 0
