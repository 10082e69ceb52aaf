"""Crash safety of the DTE send path with the real Odoo 19 and PostgreSQL (issue 10); run it
through scripts/crash-loop, which documents the options.

Per round: a batch of invoices is created, posted (folio under the CAF row lock), queued with the
Send to SII button and sent and polled by the addon's crons, all inside an `odoo-bin shell`
(scripts/crash_loop_odoo.py). That process is killed with SIGKILL at random moments, 1 to
--max-kills times per round, and started again until it reports every document final. The SII
simulator runs as a separate process that survives the kills, so it can tell how many times it
received each document. After each round the database and the simulator are checked:

* folios: the folios of all DTEs of the CAF are exactly folio_from .. next_folio-1, each once
  (none burnt by a rollback, none given twice), and each posted invoice has one DTE whose folio is
  its number;
* no document sent twice: every DTE is in exactly one envelope the simulator registered
  (identical re-sends that SII refuses at the gate, STATUS 99, are counted apart);
* every DTE is final in Odoo (accepted or rejected) and agrees with the simulator's verdict.
"""
from __future__ import annotations

import argparse
import getpass
import json
import os
import random
import re
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from collections import Counter
from pathlib import Path

import psycopg2

ROOT = Path(__file__).resolve().parent.parent
ISSUER_RUT = '76543210-3'
FINAL_MAP = {'accepted': {'DOK'}, 'accepted_with_objections': {'RPR'}, 'rejected': {'RCH'}}


def log(*parts: object) -> None:
    print('crash-loop:', *parts, flush=True)


class Odoo:
    def __init__(self, args: argparse.Namespace, db: str) -> None:
        self.args = args
        self.db = db
        addons = f'{args.odoo}/addons,{args.odoo}/odoo/addons,{args.addons}'
        self.common = [f'--addons-path={addons}', '-D', str(args.data_dir), '--db_host', args.db_host,
                       '--db_port', str(args.db_port), '--db_user', args.db_user]
        self.py = str(Path(os.environ.get('DTE_VENV', ROOT / '.venv')) / 'bin' / 'python')

    def cmd(self, *extra: str) -> list[str]:
        return [self.py, f'{self.args.odoo}/odoo-bin', *extra[:1], *self.common, *extra[1:]]

    def run(self, *extra: str, log_file: Path) -> None:
        with open(log_file, 'ab') as out:
            rc = subprocess.call(self.cmd(*extra), cwd='/', stdout=out, stderr=subprocess.STDOUT)
        if rc:
            sys.exit(f'crash-loop: odoo-bin {extra[0]} failed (exit {rc}), see {log_file}')

    def shell(self, env: dict[str, str]) -> subprocess.Popen[bytes]:
        driver = open(ROOT / 'scripts' / 'crash_loop_odoo.py', 'rb')
        return subprocess.Popen(self.cmd('shell', '-d', self.db, '--log-level=warn'), cwd='/', stdin=driver,
                                stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env={**os.environ, **env})


class Attempt:
    """One driver process; its output is read in a thread so READY / DONE are seen at once."""

    def __init__(self, odoo: Odoo, env: dict[str, str], log_file: Path) -> None:
        self.proc = odoo.shell(env)
        self.ready = threading.Event()
        self.lines: list[str] = []
        self.log_file = log_file
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        with open(self.log_file, 'a', encoding='utf-8') as out:
            for raw in self.proc.stdout:
                line = raw.decode('utf-8', 'replace')
                out.write(line)
                out.flush()
                self.lines.append(line)
                if 'crash-driver: READY' in line:
                    self.ready.set()

    def done(self) -> bool:
        return any('crash-driver: DONE' in line for line in self.lines)

    def kill(self) -> bool:
        """SIGKILL unless the driver already finished its work (then it is left to exit)."""
        if self.proc.poll() is not None or self.done():
            return False
        os.kill(self.proc.pid, signal.SIGKILL)
        self.proc.wait()
        self.reader.join(5)
        return True

    def wait(self, timeout: float) -> int | None:
        try:
            rc = self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            os.kill(self.proc.pid, signal.SIGKILL)
            self.proc.wait()
            return None
        self.reader.join(5)
        return rc


def free_port() -> int:
    with socket.socket() as s:
        s.bind(('127.0.0.1', 0))
        return int(s.getsockname()[1])


def sim_state(url: str) -> dict:
    with urllib.request.urlopen(url + '/_sim/state', timeout=30) as r:
        return json.load(r)


def check_round(conn, url: str, rnd: int) -> dict:
    """Raises AssertionError with the broken invariant; returns the round's counts."""
    cr = conn.cursor()
    cr.execute("SELECT id, folio_from, folio_to, next_folio FROM l10n_cl_dte_caf WHERE doc_type = 33")
    cafs = cr.fetchall()
    assert len(cafs) == 1, f'one CAF of type 33 expected, found {cafs}'
    caf_id, folio_from, _folio_to, next_folio = cafs[0]
    cr.execute("SELECT folio FROM l10n_cl_dte_document WHERE caf_id = %s ORDER BY folio", (caf_id,))
    folios = [r[0] for r in cr.fetchall()]
    assert folios == list(range(folio_from, next_folio)), (
        f'folios not contiguous and unique: CAF {folio_from}..{next_folio - 1}, documents {folios}')
    cr.execute("""SELECT m.id, m.state, m.name, count(d.id), min(d.folio)
                    FROM account_move m LEFT JOIN l10n_cl_dte_document d ON d.move_id = m.id
                   WHERE m.ref LIKE %s GROUP BY m.id ORDER BY m.id""", (f'crash-r{rnd:03d}-%',))
    moves = cr.fetchall()
    for move_id, state, name, ndocs, folio in moves:
        assert state == 'posted', f'move {move_id} ({name}) is {state}'
        assert ndocs == 1, f'move {move_id} ({name}) has {ndocs} DTEs'
        assert int(re.findall(r'\d+', name)[-1]) == folio, f'move {name} carries folio {folio}'
    cr.execute("SELECT folio, state FROM l10n_cl_dte_document WHERE caf_id = %s", (caf_id,))
    odoo_docs = dict(cr.fetchall())
    conn.rollback()

    state = sim_state(url)
    received = Counter()
    verdict: dict[int, str] = {}
    for env in state['envelopes']:
        for d in env.get('docs', []):
            if d['key'].startswith(ISSUER_RUT + '|33|'):
                received[d['folio']] += 1
                verdict[d['folio']] = d['estado']
    refused = sum(1 for e in state['events'] if e.get('type') == 'upload_duplicate')
    twice = {f: n for f, n in received.items() if n > 1}
    assert not twice, f'documents received more than once by SII: {twice}'
    unknown = set(received) - set(odoo_docs)
    assert not unknown, f'SII received folios Odoo has no DTE for: {sorted(unknown)}'
    for folio, st in odoo_docs.items():
        assert st in FINAL_MAP, f'folio {folio} ends {st}, not accepted or rejected'
        assert received[folio] == 1, f'folio {folio} is {st} in Odoo but SII received it {received[folio]} times'
        assert verdict[folio] in FINAL_MAP[st], f'folio {folio}: Odoo says {st}, SII says {verdict[folio]}'
    cr.execute("SELECT count(*) FROM l10n_cl_dte_exchange WHERE summary LIKE 'After an interrupted upload%%'")
    in_doubt = cr.fetchone()[0]
    conn.rollback()
    states = Counter(odoo_docs.values())
    return {'documents': len(odoo_docs), 'round_moves': len(moves), 'states': dict(states),
            'interrupted_uploads_settled': in_doubt, 'refused_resends': refused}


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    p.add_argument('rounds', nargs='?', type=int, default=10)
    p.add_argument('--batch', type=int, default=6, help='invoices per round (default 6)')
    p.add_argument('--max-kills', type=int, default=3, help='kills per round: 1..N at random (default 3)')
    p.add_argument('--reject-share', type=float, default=0.2, help='share of documents SII rejects')
    p.add_argument('--seed', type=int, default=None)
    p.add_argument('--keep', action='store_true', help='keep the database and the work dir')
    p.add_argument('--odoo', default=os.environ.get('ODOO_PATH'))
    args = p.parse_args()
    if not args.odoo or not Path(args.odoo, 'odoo-bin').is_file():
        sys.exit('crash-loop: set ODOO_PATH to an Odoo 19 source tree')
    args.db_host = os.environ.get('ODOO_DB_HOST', '127.0.0.1')
    args.db_port = int(os.environ.get('ODOO_DB_PORT', '5432'))
    args.db_user = os.environ.get('ODOO_DB_USER') or getpass.getuser()
    args.data_dir = Path(os.environ.get('ODOO_DATA_DIR', ROOT / 'build' / 'odoo-data'))
    template = os.environ.get('ODOO_TEMPLATE_DB', 'dte_odoo_template')
    seed = args.seed if args.seed is not None else random.randrange(10**6)
    rng = random.Random(seed)
    os.environ.setdefault('DTE_KEY_FILE', str(args.data_dir / 'l10n_cl_dte.key'))

    work = ROOT / 'build' / 'crash-loop' / str(os.getpid())
    work.mkdir(parents=True, exist_ok=True)
    db = f'dte_crash_{os.getpid()}'
    # The addon is copied once: code edited in the tree during a run must not meet a database
    # installed from older code (restarts would load new fields without their columns).
    args.addons = work / 'addons'
    shutil.copytree(ROOT / 'l10n_cl_dte', args.addons / 'l10n_cl_dte', dirs_exist_ok=True,
                    ignore=shutil.ignore_patterns('__pycache__'))
    odoo = Odoo(args, db)
    setup_log = work / 'setup.log'
    log(f'seed {seed}, {args.rounds} rounds of {args.batch} invoices, work dir {work}')

    conn0 = psycopg2.connect(host=args.db_host, port=args.db_port, user=args.db_user, dbname='postgres')
    conn0.autocommit = True
    c0 = conn0.cursor()
    c0.execute('SELECT 1 FROM pg_database WHERE datname = %s', (template,))
    if not c0.fetchone():
        sys.exit(f'crash-loop: template database {template} missing: run scripts/test-odoo once to build it')

    from dte_native import testkit  # the test certificate, CAF and SII key of this run

    folios = args.rounds * args.batch + 10
    kit = testkit.write_kit(work / 'kit', rut=ISSUER_RUT, types=[33], folio_from=1, folio_to=folios)
    sim = None
    try:
        log(f'database {db}: duplicate {template}, install l10n_cl_dte')
        odoo.run('db', 'duplicate', '-f', template, db, log_file=setup_log)
        odoo.run('server', '-d', db, '-i', 'l10n_cl_dte', '--stop-after-init', '--log-level=warn',
                 log_file=setup_log)

        port = free_port()
        url = f'http://127.0.0.1:{port}'
        sim_log = open(work / 'simulator.log', 'ab')
        sim = subprocess.Popen(
            [odoo.py, '-m', 'dte_native.simulator', '--host', '127.0.0.1', '--port', str(port),
             '--sii-keys', str(kit.sii_keys_dir), '--set', 'step_delay_s=0',
             '--set', f'reject_share={args.reject_share}', '--set', f'seed={seed}'],
            cwd=ROOT, stdout=sim_log, stderr=subprocess.STDOUT)
        for _ in range(100):
            try:
                sim_state(url)
                break
            except OSError:
                if sim.poll() is not None:
                    sys.exit(f'crash-loop: the simulator exited, see {work}/simulator.log')
                time.sleep(0.2)
        log(f'simulator pid {sim.pid} at {url}')

        kit_env = {'sii_keys_dir': str(kit.sii_keys_dir), 'cert': str(kit.cert_path),
                   'password': str(work / 'kit' / 'cert.password'), 'caf': str(kit.caf_paths[33])}
        a = Attempt(odoo, {'CRASH_MODE': 'setup', 'CRASH_KIT': json.dumps(kit_env), 'CRASH_SIM_URL': url}, setup_log)
        if a.wait(600) != 0 or not any('setup done' in line for line in a.lines):
            sys.exit(f'crash-loop: setup failed, see {setup_log}')

        conn = psycopg2.connect(host=args.db_host, port=args.db_port, user=args.db_user, dbname=db)
        kills = attempts = 0
        work_s = 8.0  # estimate of a round's work after READY; updated from uninterrupted runs
        summary: dict = {}
        t0 = time.monotonic()
        for rnd in range(1, args.rounds + 1):
            planned = rng.randint(1, args.max_kills)
            env = {'CRASH_MODE': 'round', 'CRASH_ROUND': str(rnd), 'CRASH_BATCH': str(args.batch)}
            round_log = work / f'round-{rnd:03d}.log'
            done_kills = 0
            while True:
                attempts += 1
                a = Attempt(odoo, env, round_log)
                if not a.ready.wait(300):
                    a.kill()
                    sys.exit(f'crash-loop: driver never got ready, see {round_log}')
                started = time.monotonic()
                if done_kills < planned:
                    delay = rng.uniform(0, work_s)
                    if a.proc.poll() is None:
                        try:
                            a.proc.wait(delay)
                        except subprocess.TimeoutExpired:
                            pass
                    if a.kill():
                        done_kills += 1
                        kills += 1
                        with open(round_log, 'a') as out:
                            out.write(f'--- SIGKILL after {delay:.2f} s\n')
                        continue
                    work_s = max(2.0, work_s * 0.8)  # the work was over before the kill: aim earlier
                rc = a.wait(600)
                if a.done():
                    if done_kills >= planned:
                        work_s = max(work_s * 0.7, time.monotonic() - started)
                    break
                if rc is None or rc != 0 and done_kills >= planned:
                    sys.exit(f'crash-loop: round {rnd} driver failed (exit {rc}), see {round_log}')
            try:
                counts = check_round(conn, url, rnd)
            except AssertionError as e:
                log(f'round {rnd}: INVARIANT BROKEN: {e}')
                log(f'logs in {work}; database {db} kept')
                args.keep = True
                return 1
            summary = {'rounds': rnd, 'kills': kills, 'driver_runs': attempts, **counts}
            log(f'round {rnd}: {done_kills} kill(s), ok: {json.dumps(counts)}')
        summary['seconds'] = round(time.monotonic() - t0)
        log('PASSED', json.dumps(summary))
        (work / 'summary.json').write_text(json.dumps(summary, indent=1))
        conn.close()
        return 0
    finally:
        if sim is not None:
            sim.terminate()
            sim.wait(10)
        if not args.keep:
            subprocess.call(odoo.cmd('db', 'drop', db), cwd='/', stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
        else:
            log(f'kept database {db} and {work}')


if __name__ == '__main__':
    sys.exit(main())
