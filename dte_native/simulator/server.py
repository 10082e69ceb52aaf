"""HTTP front of the simulator: one ThreadingHTTPServer, routes by path (and by host for the
boleta REST hosts), fault injection, admin endpoints under /_sim/."""
from __future__ import annotations

import fnmatch
import json
import random
import re
import socket
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

from . import checks, config as config_mod, rcv, wire
from .store import Store

SOAP_SERVICES = {
    "/DTEWS/CrSeed.jws": ("seed", "DTEWS/CrSeed.jws"),
    "/DTEWS/GetTokenFromSeed.jws": ("token", "DTEWS/GetTokenFromSeed.jws"),
    "/DTEWS/QueryEstUp.jws": ("estup", "DTEWS/QueryEstUp.jws"),
    "/DTEWS/QueryEstDte.jws": ("estdte", "DTEWS/QueryEstDte.jws"),
    "/DTEWS/services/QueryEstDteAv": ("estdteav", "DTEWS/services/QueryEstDteAv"),
    "/DTEWS/services/wsDTECorreo": ("correo", "DTEWS/services/wsDTECorreo"),
}
RECLAMO_PATHS = ("/WSREGISTRORECLAMODTE/registroreclamodteservice",
                 "/WSREGISTRORECLAMODTECERT/registroreclamodteservice")
UPLOAD_PATH = "/cgi_dte/UPL/DTEUpload"
# Path prefixes that stand for the boleta REST hosts when everything runs on one localhost port.
REST_PREFIXES = {"/boleta": None, "/apicert": "api", "/api": "api", "/pangal": "envio", "/rahue": "envio"}
REST_HOSTS = {"apicert": "api", "api": "api", "pangal": "envio", "rahue": "envio"}
TOKEN_ESTADO = {"missing": "003", "unknown": "003", "expired": "002", "revoked": "001"}
TOKEN_GLOSA = {"001": "Cookie/Token Inactivo", "002": "Token Inactivo", "003": "Token no existe"}


class _Abort(Exception):
    """Stop handling the request without answering (dropped connection)."""


class SimHTTPServer(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    sim: "SimCore"


class SimCore:
    """Shared state of one simulator instance (config, store, fault RNG, stop event)."""

    def __init__(self, cfg: dict[str, Any], store: Store, verbose: bool = False) -> None:
        self.cfg = cfg
        self.store = store
        self.verbose = verbose
        self.fault_rng = random.Random(int(cfg["seed"]) + 1)
        self.fault_lock = threading.Lock()
        self.stopping = threading.Event()

    def pick_fault(self, service: str) -> dict[str, Any] | None:
        with self.fault_lock:
            for rule in self.cfg.get("faults") or []:
                if not fnmatch.fnmatch(service, rule.get("service", "*")):
                    continue
                if rule.get("count") is not None and rule["count"] <= 0:
                    continue
                if self.fault_rng.random() >= float(rule.get("probability", 1.0)):
                    continue
                if rule.get("count") is not None:
                    rule["count"] -= 1
                self.store.event("fault", service=service, kind=rule["kind"])
                return dict(rule)
        return None

    def update_config(self, changes: dict[str, Any]) -> None:
        config_mod.validate({**self.cfg, **changes})
        with self.fault_lock, self.store.lock:
            self.cfg.update(changes)
            if "seed" in changes:
                self.store.rng.seed(int(changes["seed"]))
                self.fault_rng.seed(int(changes["seed"]) + 1)


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: SimHTTPServer
    server_version = "SII-Simulator/1.0"

    # ------------------------------------------------------------------ plumbing

    @property
    def sim(self) -> SimCore:
        return self.server.sim

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 (stdlib signature)
        if self.sim.verbose:
            super().log_message(format, *args)

    def send(self, status: int, body: bytes, ctype: str = "text/xml; charset=UTF-8",
             headers: dict[str, str] | None = None) -> None:
        fault = getattr(self, "_fault", None)
        if fault and fault["kind"] == "truncated":
            body = body[: max(1, len(body) // 2)]
        if fault and fault["kind"] == "latin1_glosa":
            # The header keeps claiming UTF-8 while the bytes are Latin-1, as SII sometimes does.
            txt = body.decode("utf-8")
            txt = re.sub(r"(&lt;/GLOSA[_A-Z]*&gt;|</GLOSA[_A-Z]*>|</descResp>)", r" Recepción\1", txt, count=1)
            body = txt.encode("iso-8859-1", "replace")
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def send_json(self, status: int, obj: Any) -> None:
        self.send(status, json.dumps(obj, ensure_ascii=False, indent=1).encode("utf-8"),
                  "application/json; charset=UTF-8")

    def send_text(self, status: int, msg: str) -> None:
        self.send(status, msg.encode("utf-8"), "text/plain; charset=UTF-8")

    def read_body(self, limit: int | None = None) -> tuple[bytes, bool]:
        """(body, complete). Refuses chunked and missing Content-Length with 411."""
        if "chunked" in (self.headers.get("Transfer-Encoding") or "").lower():
            self.close_connection = True
            self.send_text(411, "Length Required: chunked transfer encoding not accepted")
            raise _Abort
        cl = self.headers.get("Content-Length")
        if cl is None or not cl.strip().isdigit():
            self.close_connection = True
            self.send_text(411, "Length Required")
            raise _Abort
        length = int(cl)
        if limit is not None and length > limit:
            self.close_connection = True
            return b"", False
        chunks, got = [], 0
        while got < length:
            piece = self.rfile.read(min(65536, length - got))
            if not piece:
                break
            chunks.append(piece)
            got += len(piece)
        return b"".join(chunks), got == length

    def cookie_token(self) -> str | None:
        m = re.search(r"(?:^|;\s*)TOKEN=([^;\s]+)", self.headers.get("Cookie") or "")
        return m.group(1) if m else None

    def apply_fault(self, service: str, token: str | None = None) -> dict[str, Any] | None:
        """Act on a fault rule for `service`. Returns the rule when the normal handler must still
        run (and look at it), raises _Abort when the request ends here."""
        self._fault = fault = self.sim.pick_fault(service)
        if fault is None:
            return None
        kind = fault["kind"]
        if kind == "latency":
            self.sim.stopping.wait(float(fault.get("seconds", 1.0)))
            return fault
        if kind in ("drop", "timeout"):
            if kind == "timeout":
                self.sim.stopping.wait(float(fault.get("seconds", 30.0)))
            self.close_connection = True
            try:
                self.connection.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            raise _Abort
        if kind == "http_error":
            self.send_text(int(fault.get("status", 503)), fault.get("body", "Service Unavailable"))
            raise _Abort
        if kind == "html":
            self.send(200, wire.HTML_PAGE, "text/html; charset=ISO-8859-1")
            raise _Abort
        if kind == "error500":
            self.send(200, b"Error 500", "text/html")
            raise _Abort
        if kind == "soap_fault":
            self.send(500, wire.soap_fault(fault.get("body", "Internal Server Error")))
            raise _Abort
        if kind == "token_expired" and token:
            self.sim.store.revoke(token)
        return fault

    # ------------------------------------------------------------------ dispatch

    def do_GET(self) -> None:
        self._dispatch("GET")

    def do_POST(self) -> None:
        self._dispatch("POST")

    def do_PUT(self) -> None:
        self._dispatch("POST")

    def _dispatch(self, method: str) -> None:
        self._fault = None
        url = urlsplit(self.path)
        path = url.path
        try:
            if path.startswith("/_sim/"):
                self.admin(method, path, url.query)
            elif path in SOAP_SERVICES and method == "POST":
                self.soap(*SOAP_SERVICES[path])
            elif path in SOAP_SERVICES and "wsdl" in url.query.lower():
                self.send(200, b"<!-- WSDL: see shared/sii/wsdl -->")
            elif path == UPLOAD_PATH and method == "POST":
                self.upload()
            elif path in RECLAMO_PATHS and method == "POST":
                self.reclamo()
            elif "/recursos/v1/" in path:
                self.rest(method, path, url.query)
            elif path.startswith(rcv.FACADE_PREFIX) and method == "POST":
                self.rcv_facade(path[len(rcv.FACADE_PREFIX):])
            else:
                self.send_text(404, "Not Found")
        except _Abort:
            return
        except (BrokenPipeError, ConnectionResetError):
            return

    # ------------------------------------------------------------------ admin

    def admin(self, method: str, path: str, query: str) -> None:
        sim = self.sim
        if path == "/_sim/state":
            self.send_json(200, sim.store.snapshot())
            return
        if path == "/_sim/config":
            if method == "POST":
                body, _ = self.read_body()
                try:
                    sim.update_config(json.loads(body or b"{}"))
                except (ValueError, config_mod.ConfigError) as exc:
                    self.send_json(400, {"error": str(exc)})
                    return
            self.send_json(200, sim.cfg)
            return
        if path == "/_sim/clock":
            if method == "POST":
                body, _ = self.read_body()
                req = json.loads(body or b"{}")
                with sim.store.lock:
                    if "advance_s" in req:
                        sim.cfg["clock_offset_s"] = float(sim.cfg.get("clock_offset_s") or 0) + float(req["advance_s"])
                    if "advance_days" in req:
                        sim.cfg["clock_offset_s"] = float(sim.cfg.get("clock_offset_s") or 0) + 86400 * float(req["advance_days"])
                    if "offset_s" in req:
                        sim.cfg["clock_offset_s"] = float(req["offset_s"])
            self.send_json(200, {"now": sim.store.local_dt().isoformat(timespec="seconds"),
                                 "clock_offset_s": sim.cfg.get("clock_offset_s")})
            return
        if path == "/_sim/reset" and method == "POST":
            self.read_body()
            sim.store.reset()
            self.send_json(200, {"reset": True})
            return
        if path in ("/_sim/annul", "/_sim/caf") and method == "POST":
            body, _ = self.read_body()
            try:
                req = json.loads(body or b"{}")
                args = (str(req["rut"]), int(req["tipo"]), int(req["desde"]), int(req["hasta"]))
                if path == "/_sim/annul":
                    self.send_json(200, sim.store.annul(*args))
                else:
                    sim.store.register_caf(*args)
                    self.send_json(200, {"caf_ranges": sim.store.snapshot()["caf_ranges"]})
            except (ValueError, KeyError, TypeError) as exc:
                self.send_json(400, {"error": f"expected JSON {{rut, tipo, desde, hasta}}: {exc}"})
            return
        if path == "/_sim/revoke" and method == "POST":
            body, _ = self.read_body()
            req = json.loads(body or b"{}")
            self.send_json(200, {"revoked": sim.store.revoke(req.get("token"))})
            return
        self.send_text(404, "Not Found")

    # ------------------------------------------------------------------ SOAP (maullin/palena)

    def soap(self, service: str, ns_path: str) -> None:
        body, _ = self.read_body()
        ns = f"https://{self.sim.cfg['soap_host']}.sii.cl/{ns_path}"
        try:
            op, params = wire.parse_soap(body)
        except wire.SoapRequestError as exc:
            self.send(500, wire.soap_fault(str(exc), "soapenv:Client"))
            return
        store = self.sim.store
        fault = self.apply_fault(service, params.get("Token"))
        if service == "seed":
            if op != "getSeed":
                return self._unknown_op(op)
            seed = store.new_seed()
            inner = wire.respuesta([("ESTADO", "00")], [("SEMILLA", seed)], body_first=True)
            self.send(200, wire.rpc_response(ns, "getSeed", inner))
            return
        if service == "token":
            if op != "getToken":
                return self._unknown_op(op)
            estado, glosa, token = store.issue_token(params.get("pszXml", "").encode("utf-8"), "soap")
            inner = wire.respuesta([("ESTADO", estado), ("GLOSA", glosa)], [("TOKEN", token)] if token else None)
            self.send(200, wire.rpc_response(ns, "getToken", inner))
            return
        expected = {"estup": "getEstUp", "estdte": "getEstDte", "estdteav": "getEstDteAv",
                    "correo": "reenvioCorreo"}[service]
        if op != expected:
            return self._unknown_op(op)
        reason, _rut = store.check_token(params.get("Token"), "soap")
        if service == "correo":
            # wsDTECorreo has its own token code: 104 "Token Inactivo o No Existe".
            if reason != "ok" or _rut is None:
                estado, glosa = (fault or {}).get("signal") or "104", "Token Inactivo o No Existe"
            else:
                estado, glosa = store.resend_mail(_rut, params.get("RutEmpresa", ""), params.get("DvEmpresa", ""),
                                                  params.get("TrackId", ""))
            inner = wire.respuesta([("ESTADO", estado), ("GLOSA", glosa)])
            self.send(200, wire.rpc_response(ns, op, inner))
            return
        if reason != "ok":
            estado = (fault or {}).get("signal") or TOKEN_ESTADO[reason]
            inner = wire.respuesta([("ESTADO", estado), ("GLOSA", TOKEN_GLOSA.get(estado, "Token invalido")),
                                    ("NUM_ATENCION", store.num_atencion())])
            self.send(200, wire.rpc_response(ns, op, inner))
            return
        if service == "estup":
            hdr, resp_body = store.est_up(params.get("RutCompania", ""), params.get("TrackId", ""))
            self.send(200, wire.rpc_response(ns, op, wire.respuesta(hdr, resp_body)))
            return
        fecha = params.get("FechaEmisionDte", "")
        iso = f"{fecha[4:8]}-{fecha[2:4]}-{fecha[0:2]}" if re.fullmatch(r"\d{8}", fecha) else ""
        company = ("RutCompania", "DvCompania") if service == "estdte" else ("RutEmpresa", "DvEmpresa")
        if not iso or not params.get(company[0], "").isdigit():
            hdr = [("ESTADO", "-3"), ("GLOSA_ESTADO", "Error en parametros de entrada"),
                   ("ERR_CODE", "-3"), ("GLOSA_ERR", "Error en parametros de entrada"),
                   ("NUM_ATENCION", store.num_atencion())]
            self.send(200, wire.rpc_response(ns, op, wire.respuesta(hdr)))
            return
        estado, err, glosa = store.estado_dte(
            f"{params.get(company[0])}-{params.get(company[1], '')}", params.get("TipoDte", "0"),
            params.get("FolioDte", "0"), f"{params.get('RutReceptor')}-{params.get('DvReceptor')}", iso,
            params.get("MontoDte", ""), params.get("FirmaDte") if service == "estdteav" else None)
        hdr = [("ESTADO", estado), ("GLOSA_ESTADO", glosa.split(".")[0]), ("ERR_CODE", str(err)),
               ("GLOSA_ERR", glosa), ("NUM_ATENCION", store.num_atencion())]
        self.send(200, wire.rpc_response(ns, op, wire.respuesta(hdr)))

    def _unknown_op(self, op: str) -> None:
        self.send(500, wire.soap_fault(f"No such operation '{op}'", "soapenv:Client"))

    # ------------------------------------------------------------------ DTEUpload

    def upload(self) -> None:
        cfg, store = self.sim.cfg, self.sim.store
        limit = int(cfg["max_upload_bytes"]) + 64 * 1024
        body, complete = self.read_body(limit)
        token = self.cookie_token()
        fault = self.apply_fault("upload", token)
        if cfg.get("upload_ua_token") and cfg["upload_ua_token"] not in (self.headers.get("User-Agent") or ""):
            # Without "PROG 1.0" the CGI believes it talks to a browser.
            self.send(200, wire.HTML_PAGE, "text/html; charset=ISO-8859-1")
            return
        now = store.local_dt().strftime("%Y-%m-%d %H:%M:%S")

        def answer(status: int, fields: dict[str, str] | None = None, errors: list[str] | None = None,
                   trackid: str = "") -> None:
            f = fields or {}
            out = [("RUTSENDER", f.get("sender", "")), ("RUTCOMPANY", f.get("company", "")),
                   ("FILE", f.get("file", "")), ("TIMESTAMP", now), ("STATUS", str(status))]
            if trackid:
                out.append(("TRACKID", trackid))
            self.send(200, wire.recepcion_dte(out, errors))

        if not body and not complete:
            answer(2, errors=["Archivo demasiado grande"])
            return
        if not complete:
            answer(3, errors=["Archivo truncado: tamaño distinto del declarado"])
            return
        try:
            parts = wire.parse_multipart(self.headers.get("Content-Type", ""), body)
        except wire.MultipartError as exc:
            answer(3, errors=[str(exc)])
            return
        fields_in = {name: content for name, _fn, content in parts}
        filename = next((fn for name, fn, _c in parts if name == "archivo"), None) or ""
        sender = f"{fields_in.get('rutSender', b'').decode('latin-1')}-{fields_in.get('dvSender', b'').decode('latin-1').upper()}"
        company = f"{fields_in.get('rutCompany', b'').decode('latin-1')}-{fields_in.get('dvCompany', b'').decode('latin-1').upper()}"
        f = {"sender": sender, "company": company, "file": filename}
        order = [name for name, _fn, _c in parts]
        if order != ["rutSender", "dvSender", "rutCompany", "dvCompany", "archivo"]:
            store.event("upload_field_order", order=order)
        reason, token_rut = store.check_token(token, "soap")
        if reason != "ok":
            answer(5, f)
            return
        data = fields_in.get("archivo")
        if not data or len(data) > int(cfg["max_upload_bytes"]):
            answer(2, f, ["Archivo vacio o demasiado grande"])
            return
        if not checks.rut_valid(sender) or not checks.rut_valid(company):
            answer(1 if not checks.rut_valid(sender) else 6, f, ["RUT invalido"])
            return
        auth = store.authorization(company, sender)
        if token_rut != checks.rut_norm(sender):
            auth = auth or 1
        if auth:
            answer(auth, f)
            return
        res = store.receive(data, filename, sender, company, "upload",
                            force_duplicate=bool(fault and fault["kind"] == "duplicate"))
        answer(res.status, f, res.errors if res.status == 7 else None, res.trackid)

    # ------------------------------------------------------------------ RegistroReclamoDTE

    def reclamo(self) -> None:
        body, _ = self.read_body()
        store = self.sim.store
        try:
            op, params = wire.parse_soap(body)
        except wire.SoapRequestError as exc:
            self.send(500, wire.soap_fault(str(exc), "S:Client"))
            return
        token = self.cookie_token()
        self.apply_fault("reclamo", token)
        reason, caller = store.check_token(token, "soap")
        if reason != "ok" or caller is None:
            self.send(500, wire.soap_fault("Error de Autenticacion: TOKEN invalido"))
            return
        args = (params.get("rutEmisor", ""), params.get("dvEmisor", ""), params.get("tipoDoc", ""),
                params.get("folio", ""))
        if op == "ingresarAceptacionReclamoDoc":
            code, desc = store.claim(caller, *args, params.get("accionDoc", ""))
            inner = wire.elements([("codResp", str(code)), ("descResp", desc)])
        elif op == "listarEventosHistDoc":
            code, desc, events = store.list_events(caller, *args)
            inner = wire.elements([("codResp", str(code)), ("descResp", desc)])
            inner += "".join(f"<listaEventosDoc>{wire.elements(list(e.items()))}</listaEventosDoc>" for e in events)
        elif op == "consultarDocDteCedible":
            code, desc = store.cedible(caller, *args)
            inner = wire.elements([("codResp", str(code)), ("descResp", desc)])
        elif op == "consultarFechaRecepcionSii":
            inner = store.fecha_recepcion(*args) or ""
        else:
            self._unknown_op(op)
            return
        self.send(200, wire.reclamo_response(op, inner))

    # ------------------------------------------------------------------ RCV (portal facade)

    def rcv_facade(self, op: str) -> None:
        body, _ = self.read_body()
        token = self.cookie_token()
        self.apply_fault("rcv", token)
        try:
            request = json.loads(body or b"{}")
        except ValueError:
            self.send_json(400, {"error": "JSON invalido"})
            return
        if not isinstance(request, dict):
            self.send_json(400, {"error": "JSON invalido"})
            return
        raw_meta = request.get("metaData")
        meta: dict[str, Any] = raw_meta if isinstance(raw_meta, dict) else {}
        reason, caller = self.sim.store.check_token(token, "soap")
        # The portal wants the token twice: as the cookie and as metaData.conversationId.
        if reason != "ok" or caller is None or meta.get("conversationId") != token:
            self.send_json(200, rcv.answer(None, 1, rcv.TOKEN_MESSAGE, op))
            return
        if op not in ("getResumen", "getDetalleCompraExport", "getDetalleVentaExport"):
            self.send_text(404, "Not Found")
            return
        self.send_json(200, rcv.handle(self.sim.store, op, request, caller))

    # ------------------------------------------------------------------ boleta REST

    def rest(self, method: str, path: str, query: str) -> None:
        host_kind = None
        for prefix, kind in REST_PREFIXES.items():
            if path.startswith(prefix + "/recursos/"):
                path, host_kind = path[len(prefix):], kind
                break
        if host_kind is None:
            host_kind = REST_HOSTS.get((self.headers.get("Host") or "").split(".")[0].split(":")[0].lower())
        store, cfg = self.sim.store, self.sim.cfg
        strict = bool(cfg.get("strict_boleta_hosts"))
        base = "/recursos/v1/boleta.electronica"
        if path == base + ".semilla" and method == "GET":
            self.apply_fault("boleta_seed")
            seed = store.new_seed()
            self.send(200, wire.respuesta([("ESTADO", "00")], [("SEMILLA", seed)], body_first=True).encode(),
                      "application/xml; charset=UTF-8")
            return
        if path == base + ".token" and method == "POST":
            body, _ = self.read_body()
            self.apply_fault("boleta_token")
            estado, glosa, token = store.issue_token(body, "rest")
            self.send(200, wire.respuesta([("ESTADO", estado), ("GLOSA", glosa)],
                                          [("TOKEN", token)] if token else None).encode(),
                      "application/xml; charset=UTF-8")
            return
        if path == base + ".envio" and method == "POST":
            self.rest_envio(strict and host_kind == "api")
            return
        m = re.fullmatch(re.escape(base) + r"\.envio/(\d+)-([\dkK])-(\d+)", path)
        if m and method == "GET":
            if not self._rest_token("boleta_status"):
                return
            status = store.boleta_status(m.group(1), m.group(3))
            if status is None:
                self.send_text(404, "Envio no encontrado")
            else:
                self.send_json(200, status)
            return
        m = re.fullmatch(re.escape(base) + r"/(\d+)-([\dkK])-(\d+)-(\d+)/estado", path)
        if m and method == "GET":
            if not self._rest_token("boleta_doc"):
                return
            q = {k: v[0] for k, v in parse_qs(query).items()}
            fecha = q.get("fechaEmision", "")
            fm = re.fullmatch(r"(\d\d)-(\d\d)-(\d{4})", fecha)
            if not fm or not q.get("rut_receptor") or not q.get("monto"):
                self.send_text(400, "Parametros invalidos")
                return
            estado, err, glosa = store.estado_dte(
                f"{m.group(1)}-{m.group(2).upper()}", m.group(3), m.group(4),
                f"{q['rut_receptor']}-{q.get('dv_receptor', '')}", f"{fm.group(3)}-{fm.group(2)}-{fm.group(1)}",
                q["monto"])
            self.send_json(200, {"codigo": estado, "descripcion": glosa})
            return
        self.send_text(404, "Not Found")

    def _rest_token(self, service: str) -> bool:
        token = self.cookie_token()
        self.apply_fault(service, token)
        if not token:
            self.send_text(400, "No trae TOKEN")
            return False
        reason, _rut = self.sim.store.check_token(token, "rest")
        if reason != "ok":
            self.send_text(401, "Token no valido")
            return False
        return True

    def rest_envio(self, wrong_host: bool) -> None:
        cfg, store = self.sim.cfg, self.sim.store
        body, complete = self.read_body(int(cfg["max_upload_bytes"]) + 64 * 1024)
        if wrong_host:
            self.send(500, wire.soap_fault("Acceso Denegado"))
            return
        token = self.cookie_token()
        fault = self.apply_fault("boleta_envio", token)
        ua = self.headers.get("User-Agent") or ""
        allow = cfg.get("boleta_ua_allow") or []
        if allow and not any(a in ua for a in allow):
            self.send_text(401, "Token no valido")
            return
        if not token:
            self.send_text(400, "No trae TOKEN")
            return
        reason, token_rut = store.check_token(token, "rest")
        if reason != "ok":
            self.send_text(401, "Token no valido")
            return
        if not complete:
            self.send_text(400, "Archivo truncado")
            return
        try:
            parts = wire.parse_multipart(self.headers.get("Content-Type", ""), body)
        except wire.MultipartError as exc:
            self.send_text(400, str(exc))
            return
        fields_in = {name: content for name, _fn, content in parts}
        filename = next((fn for name, fn, _c in parts if name == "archivo"), None) or ""
        sender = f"{fields_in.get('rutSender', b'').decode()}-{fields_in.get('dvSender', b'').decode().upper()}"
        company = f"{fields_in.get('rutCompany', b'').decode()}-{fields_in.get('dvCompany', b'').decode().upper()}"
        ts = store.local_dt().strftime("%Y-%m-%d %H:%M:%S")
        base = {"rut_emisor": company, "rut_envia": sender, "trackid": None, "fecha_recepcion": ts, "file": filename}
        auth = store.authorization(company, sender) or (1 if token_rut != checks.rut_norm(sender) else 0)
        if auth:
            self.send_json(200, {**base, "estado": "RCH", "glosa": "Usuario o empresa no autorizados"})
            return
        data = fields_in.get("archivo") or b""
        res = store.receive(data, filename, sender, company, "rest",
                            force_duplicate=bool(fault and fault["kind"] == "duplicate"))
        if res.status == 0:
            self.send_json(200, {**base, "trackid": int(res.trackid), "estado": "REC"})
        else:
            estado = {7: "RSC", 8: "RFR", 99: "RPT"}.get(res.status, "RCH")
            self.send_json(200, {**base, "estado": estado, "glosa": "; ".join(res.errors[:5])})


def make_server(host: str, port: int, core: SimCore) -> SimHTTPServer:
    server = SimHTTPServer((host, port), Handler)
    server.sim = core
    return server

