"""Test material for the SII simulator, made here with cryptography + lxml + python-xmlsec.

Independent of the C++ core on purpose: an SII test key, CAFs signed with it, a certificate with
the RUT in the SAN, DTEs with a TED signed standalone, envelopes signed the SII way, and a small
raw HTTP client that speaks SII's wire formats.
"""
from __future__ import annotations

import base64
import datetime as dt
import http.client
import importlib
import importlib.util
import sys
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit
from xml.sax.saxutils import escape

# lxml.etree before xmlsec: python-xmlsec imported first leaves libxml2 with an external-entity
# loader that refuses lxml's later file parses (python-xmlsec issue #96), so an XSD read from
# disk would fail with an empty XMLSyntaxError.
from lxml import etree
import xmlsec
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from cryptography.x509.oid import NameOID

REPO = Path(__file__).resolve().parents[2]
SHARED = REPO.parent / "shared" / "sii"  # the shared material beside the checkout
SII_NS = "http://www.sii.cl/SiiDte"
PROG_UA = "Mozilla/4.0 (compatible; PROG 1.0; Windows NT 5.0; YComp 5.0.2.4)"
BOLETA_UA = "Mozilla/4.0 ( compatible; PROG 1.0; Windows NT)"



def chile_today() -> str:
    """Today in Chile (the date SII and the simulator go by), independent of dte_native."""
    from zoneinfo import ZoneInfo
    return dt.datetime.now(ZoneInfo("America/Santiago")).date().isoformat()

def load_simulator() -> Any:
    """This checkout's `dte_native.simulator`. When the package cannot be imported (the compiled
    core is not built: dte_native/__init__ imports it) or resolves to an installed copy, load the
    simulator package alone under a private name: it never needs the core."""
    pkg = REPO / "dte_native" / "simulator"
    try:
        module = importlib.import_module("dte_native.simulator")
        # Test this checkout, not a stale installed copy.
        if Path(module.__file__).resolve().parent == pkg.resolve():
            return module
    except ImportError:
        pass
    name = "_dte_simulator_standalone"
    if name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.spec_from_file_location(name, pkg / "__init__.py", submodule_search_locations=[str(pkg)])
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


def xsd_dir() -> Path | None:
    import os
    env = os.environ.get("DTE_XSD_DIR")
    for cand in ([Path(env)] if env else []) + [SHARED / "xsd"]:
        if (cand / "EnvioDTE_v10.xsd").is_file():
            return cand
    return None


# ----------------------------------------------------------------------------- RUT

def dv(body: int) -> str:
    s = sum(int(d) * (2 + i % 6) for i, d in enumerate(reversed(str(body))))
    r = 11 - s % 11
    return "0" if r == 11 else "K" if r == 10 else str(r)


def rut(body: int) -> str:
    return f"{body}-{dv(body)}"


COMPANY = rut(76543210)
SENDER = rut(11111111)
CUSTOMER = rut(77777777)


# ----------------------------------------------------------------------------- keys and certificates

def b64(n: int) -> str:
    return base64.b64encode(n.to_bytes((n.bit_length() + 7) // 8, "big")).decode()


def pem_private(key: rsa.RSAPrivateKey) -> bytes:
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.TraditionalOpenSSL,
                             serialization.NoEncryption())


def pem_public(key: rsa.RSAPublicKey) -> bytes:
    return key.public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)


def sign_sha1(key: rsa.RSAPrivateKey, data: bytes) -> str:
    return base64.b64encode(key.sign(data, padding.PKCS1v15(), hashes.SHA1())).decode()


@dataclass
class Signer:
    key: rsa.RSAPrivateKey
    cert: x509.Certificate
    rut: str

    @property
    def cert_pem(self) -> bytes:
        return self.cert.public_bytes(serialization.Encoding.PEM)


def make_signer(person_rut: str = SENDER, name: str = "Juan Perez", key_size: int = 1024) -> Signer:
    key = rsa.generate_private_key(public_exponent=65537, key_size=key_size)
    subject = x509.Name([x509.NameAttribute(NameOID.COUNTRY_NAME, "CL"), x509.NameAttribute(NameOID.COMMON_NAME, name)])
    value = person_rut.encode()
    san = x509.SubjectAlternativeName([x509.OtherName(x509.ObjectIdentifier("1.3.6.1.4.1.8321.1"),
                                                      b"\x0c" + bytes([len(value)]) + value)])
    now = dt.datetime.now(dt.timezone.utc)
    cert = (x509.CertificateBuilder().subject_name(subject).issuer_name(subject).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(now - dt.timedelta(days=1))
            .not_valid_after(now + dt.timedelta(days=365)).add_extension(san, critical=False)
            .sign(key, hashes.SHA256()))
    return Signer(key, cert, person_rut)


@dataclass
class Caf:
    xml: str                 # the flattened <CAF> element as SII issues it
    key: rsa.RSAPrivateKey   # RSASK
    rut: str
    tipo: int
    desde: int
    hasta: int

    def autorizacion(self) -> bytes:
        sk = pem_private(self.key).decode()
        pk = pem_public(self.key.public_key()).decode()
        return (f'<?xml version="1.0"?>\n<AUTORIZACION>{self.xml}<RSASK>{sk}</RSASK>'
                f'<RSAPUBK>{pk}</RSAPUBK></AUTORIZACION>\n').encode("iso-8859-1")


def make_caf(sii_key: rsa.RSAPrivateKey, company: str = COMPANY, tipo: int = 33, desde: int = 1,
             hasta: int = 100, fa: str | None = None, idk: int = 100) -> Caf:
    key = rsa.generate_private_key(public_exponent=3, key_size=512)
    nums = key.public_key().public_numbers()
    fa = fa or chile_today()
    da = (f"<DA><RE>{company}</RE><RS>EMPRESA DE PRUEBA</RS><TD>{tipo}</TD><RNG><D>{desde}</D><H>{hasta}</H></RNG>"
          f"<FA>{fa}</FA><RSAPK><M>{b64(nums.n)}</M><E>{b64(nums.e)}</E></RSAPK><IDK>{idk}</IDK></DA>")
    frma = sign_sha1(sii_key, da.encode("iso-8859-1"))
    return Caf(f'<CAF version="1.0">{da}<FRMA algoritmo="SHA1withRSA">{frma}</FRMA></CAF>', key, company, tipo, desde, hasta)


# ----------------------------------------------------------------------------- XMLDSig

def _sign(root: etree._Element, parent: etree._Element, signer: Signer, uri: str, enveloped: bool) -> None:
    sig = xmlsec.template.create(root, xmlsec.constants.TransformInclC14N, xmlsec.constants.TransformRsaSha1)
    parent.append(sig)
    ref = xmlsec.template.add_reference(sig, xmlsec.constants.TransformSha1, uri=uri)
    if enveloped:
        xmlsec.template.add_transform(ref, xmlsec.constants.TransformEnveloped)
    ki = xmlsec.template.ensure_key_info(sig)
    xmlsec.template.add_key_value(ki)
    xmlsec.template.x509_data_add_certificate(xmlsec.template.add_x509_data(ki))
    key = xmlsec.Key.from_memory(pem_private(signer.key), xmlsec.constants.KeyDataFormatPem)
    key.load_cert_from_memory(signer.cert_pem, xmlsec.constants.KeyDataFormatCertPem)
    ctx = xmlsec.SignatureContext()
    ctx.key = key
    if uri:
        xmlsec.tree.add_ids(root, ["ID"])
    ctx.sign(sig)


def signed_seed(seed: str, signer: Signer) -> str:
    root = etree.fromstring(f"<getToken><item><Semilla>{seed}</Semilla></item></getToken>")
    _sign(root, root, signer, "", enveloped=True)
    return etree.tostring(root, encoding="unicode")


# ----------------------------------------------------------------------------- documents

@dataclass
class Line:
    name: str
    qty: int
    price: int
    exempt: bool = False

    @property
    def amount(self) -> int:
        return self.qty * self.price


def _half_up(x: float) -> int:
    return int(x + 0.5)


def make_dte(caf: Caf, signer: Signer, folio: int, lines: list[Line], tipo: int | None = None,
             receptor: str = CUSTOMER, fch: str | None = None, refs: list[dict[str, Any]] | None = None,
             tamper_total: int = 0) -> bytes:
    """A signed standalone DTE (only the SiiDte namespace in scope), as bytes to embed verbatim."""
    tipo = tipo or caf.tipo
    fch = fch or chile_today()
    boleta = tipo in (39, 41)
    affected = sum(ln.amount for ln in lines if not ln.exempt)
    exe = sum(ln.amount for ln in lines if ln.exempt)
    if boleta:
        total = affected + exe
        neto = _half_up(affected / 1.19)
        iva = affected - neto
        totales = f"<MntNeto>{neto}</MntNeto>{'<MntExe>%d</MntExe>' % exe if exe else ''}<IVA>{iva}</IVA><MntTotal>{total}</MntTotal>"
    else:
        neto, iva = affected, _half_up(affected * 19 / 100)
        total = neto + exe + iva
        totales = (f"<MntNeto>{neto}</MntNeto>{'<MntExe>%d</MntExe>' % exe if exe else ''}"
                   f"<TasaIVA>19</TasaIVA><IVA>{iva}</IVA><MntTotal>{total + tamper_total}</MntTotal>")
    if boleta:
        iddoc = f"<TipoDTE>{tipo}</TipoDTE><Folio>{folio}</Folio><FchEmis>{fch}</FchEmis><IndServicio>3</IndServicio>"
        emisor = (f"<RUTEmisor>{caf.rut}</RUTEmisor><RznSocEmisor>EMPRESA DE PRUEBA</RznSocEmisor>"
                  "<GiroEmisor>VENTAS</GiroEmisor><DirOrigen>CALLE 1</DirOrigen><CmnaOrigen>SANTIAGO</CmnaOrigen>")
        receptor_xml = f"<RUTRecep>{receptor}</RUTRecep><RznSocRecep>CLIENTE</RznSocRecep>"
    else:
        iddoc = f"<TipoDTE>{tipo}</TipoDTE><Folio>{folio}</Folio><FchEmis>{fch}</FchEmis>"
        emisor = (f"<RUTEmisor>{caf.rut}</RUTEmisor><RznSoc>EMPRESA DE PRUEBA</RznSoc><GiroEmis>VENTAS</GiroEmis>"
                  "<Acteco>726000</Acteco><DirOrigen>CALLE 1</DirOrigen><CmnaOrigen>SANTIAGO</CmnaOrigen>")
        receptor_xml = (f"<RUTRecep>{receptor}</RUTRecep><RznSocRecep>CLIENTE S.A.</RznSocRecep>"
                        "<GiroRecep>COMERCIO</GiroRecep><DirRecep>CALLE 2</DirRecep><CmnaRecep>PROVIDENCIA</CmnaRecep>")
    detalle = "".join(
        f"<Detalle><NroLinDet>{i}</NroLinDet>{'<IndExe>1</IndExe>' if ln.exempt else ''}<NmbItem>{escape(ln.name)}</NmbItem>"
        f"<QtyItem>{ln.qty}</QtyItem><PrcItem>{ln.price}</PrcItem><MontoItem>{ln.amount}</MontoItem></Detalle>"
        for i, ln in enumerate(lines, 1))
    referencias = "".join(
        f"<Referencia><NroLinRef>{i}</NroLinRef><TpoDocRef>{r['tipo']}</TpoDocRef><FolioRef>{r['folio']}</FolioRef>"
        f"<FchRef>{fch}</FchRef><CodRef>{r.get('codref', 1)}</CodRef><RazonRef>ANULA</RazonRef></Referencia>"
        for i, r in enumerate(refs or [], 1))
    tsted = dt.datetime.now().strftime("%Y-%m-%dT%H:%M:%S")
    # The DD written directly in its flattened form: what is signed is exactly this string.
    dd = (f"<DD><RE>{caf.rut}</RE><TD>{tipo}</TD><F>{folio}</F><FE>{fch}</FE><RR>{receptor}</RR>"
          f"<RSR>CLIENTE S.A.</RSR><MNT>{total}</MNT><IT1>{escape(lines[0].name[:40])}</IT1>{caf.xml}"
          f"<TSTED>{tsted}</TSTED></DD>")
    frmt = sign_sha1(caf.key, dd.encode("iso-8859-1"))
    ted = f'<TED version="1.0">{dd}<FRMT algoritmo="SHA1withRSA">{frmt}</FRMT></TED>'
    doc_id = f"F{folio}T{tipo}"
    xml = (f'<DTE xmlns="{SII_NS}" version="1.0"><Documento ID="{doc_id}"><Encabezado><IdDoc>{iddoc}</IdDoc>'
           f"<Emisor>{emisor}</Emisor><Receptor>{receptor_xml}</Receptor><Totales>{totales}</Totales></Encabezado>"
           f"{detalle}{referencias}{ted}<TmstFirma>{tsted}</TmstFirma></Documento></DTE>")
    root = etree.fromstring(xml.encode("utf-8"))
    _sign(root, root, signer, "#" + doc_id, enveloped=False)
    return etree.tostring(root)


def make_envio(dtes: list[bytes], signer: Signer, company: str = COMPANY, boleta: bool = False,
               receptor: str = "60803000-K", subtot: dict[int, int] | None = None,
               rut_envia: str | None = None) -> bytes:
    """EnvioDTE/EnvioBOLETA with the DTEs inserted verbatim, SetDTE signed last, ISO-8859-1."""
    root_name, xsd = ("EnvioBOLETA", "EnvioBOLETA_v11.xsd") if boleta else ("EnvioDTE", "EnvioDTE_v10.xsd")
    if subtot is None:
        subtot = {}
        for d in dtes:
            t = int(etree.fromstring(d).findtext(f"{{{SII_NS}}}Documento/{{{SII_NS}}}Encabezado/{{{SII_NS}}}IdDoc/{{{SII_NS}}}TipoDTE"))
            subtot[t] = subtot.get(t, 0) + 1
    sub = "".join(f"<SubTotDTE><TpoDTE>{t}</TpoDTE><NroDTE>{n}</NroDTE></SubTotDTE>" for t, n in sorted(subtot.items()))
    now = dt.datetime.now().strftime("%Y-%m-%dT%H:%M:%S")
    head = (f'<{root_name} xmlns="{SII_NS}" xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance" '
            f'xsi:schemaLocation="{SII_NS} {xsd}" version="1.0">\n<SetDTE ID="SetDoc">\n'
            f'<Caratula version="1.0">\n<RutEmisor>{company}</RutEmisor>\n<RutEnvia>{rut_envia or signer.rut}</RutEnvia>\n'
            f"<RutReceptor>{receptor}</RutReceptor>\n<FchResol>2014-08-22</FchResol>\n<NroResol>0</NroResol>\n"
            f"<TmstFirmaEnv>{now}</TmstFirmaEnv>\n{sub}\n</Caratula>\n").encode()
    body = head + b"\n".join(dtes) + f"\n</SetDTE>\n</{root_name}>".encode()
    root = etree.fromstring(body)
    _sign(root, root, signer, "#SetDoc", enveloped=False)
    return etree.tostring(root, xml_declaration=True, encoding="ISO-8859-1")


# ----------------------------------------------------------------------------- a raw SII client

class Http:
    def __init__(self, base: str, timeout: float = 10.0) -> None:
        u = urlsplit(base)
        self.host, self.port, self.timeout = u.hostname or "127.0.0.1", u.port or 80, timeout

    def request(self, method: str, path: str, body: bytes = b"", headers: dict[str, str] | None = None,
                timeout: float | None = None) -> tuple[int, dict[str, str], bytes]:
        conn = http.client.HTTPConnection(self.host, self.port, timeout=timeout or self.timeout)
        try:
            hdrs = dict(headers or {})
            if method != "GET" or body:
                hdrs.setdefault("Content-Length", str(len(body)))
            conn.request(method, path, body=body if body or method != "GET" else None, headers=hdrs)
            resp = conn.getresponse()
            return resp.status, {k.lower(): v for k, v in resp.getheaders()}, resp.read()
        finally:
            conn.close()


def soap_envelope(op: str, ns: str, params: list[tuple[str, str]]) -> bytes:
    args = "".join(f'<{k} xsi:type="xsd:string">{escape(v)}</{k}>' for k, v in params)
    return ('<?xml version="1.0" encoding="UTF-8"?>'
            '<soapenv:Envelope xmlns:soapenv="http://schemas.xmlsoap.org/soap/envelope/" '
            'xmlns:xsd="http://www.w3.org/2001/XMLSchema" xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance">'
            f'<soapenv:Body><ns1:{op} xmlns:ns1="{ns}">{args}</ns1:{op}></soapenv:Body></soapenv:Envelope>').encode()


def inner_of(soap: bytes) -> etree._Element:
    """Parse the SOAP answer, take the escaped *Return string and parse that as XML."""
    root = etree.fromstring(soap)
    ret = next(e for e in root.iter() if isinstance(e.tag, str) and etree.QName(e).localname.endswith("Return"))
    return etree.fromstring(ret.text.encode("utf-8"))


def hdr(inner: etree._Element, name: str) -> str:
    return inner.findtext(f"{{http://www.sii.cl/XMLSchema}}RESP_HDR/{name}") or ""


def body_values(inner: etree._Element, name: str) -> list[str]:
    return [e.text or "" for e in inner.findall(f"{{http://www.sii.cl/XMLSchema}}RESP_BODY/{name}")]


class SiiClient:
    def __init__(self, base: str) -> None:
        self.http = Http(base)

    def soap(self, path: str, op: str, params: list[tuple[str, str]], cookie: str | None = None) -> tuple[int, bytes]:
        headers = {"Content-Type": "text/xml; charset=utf-8", "SOAPAction": '""'}
        if cookie:
            headers["Cookie"] = f"TOKEN={cookie}"
        status, _h, body = self.http.request("POST", path, soap_envelope(op, f"https://maullin.sii.cl{path}", params), headers)
        return status, body

    def seed(self) -> str:
        _s, body = self.soap("/DTEWS/CrSeed.jws", "getSeed", [])
        inner = inner_of(body)
        assert hdr(inner, "ESTADO") == "00"
        return inner.findtext("{http://www.sii.cl/XMLSchema}RESP_BODY/SEMILLA") or ""

    def token_raw(self, signed_xml: str) -> etree._Element:
        _s, body = self.soap("/DTEWS/GetTokenFromSeed.jws", "getToken", [("pszXml", signed_xml)])
        return inner_of(body)

    def token(self, signer: Signer) -> str:
        inner = self.token_raw(signed_seed(self.seed(), signer))
        assert hdr(inner, "ESTADO") == "00", etree.tostring(inner)
        return inner.findtext("{http://www.sii.cl/XMLSchema}RESP_BODY/TOKEN") or ""

    def upload(self, token: str | None, data: bytes, sender: str = SENDER, company: str = COMPANY,
               ua: str = PROG_UA, path: str = "/cgi_dte/UPL/DTEUpload") -> tuple[int, bytes]:
        boundary = uuid.uuid4().hex
        parts = b""
        for name, value in (("rutSender", sender.split("-")[0]), ("dvSender", sender.split("-")[1]),
                            ("rutCompany", company.split("-")[0]), ("dvCompany", company.split("-")[1])):
            parts += (f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"\r\n\r\n{value}\r\n').encode()
        parts += (f'--{boundary}\r\nContent-Disposition: form-data; name="archivo"; filename="envio.xml"\r\n'
                  f"Content-Type: text/xml\r\n\r\n").encode() + data + f"\r\n--{boundary}--\r\n".encode()
        headers = {"Content-Type": f"multipart/form-data; boundary={boundary}", "User-Agent": ua,
                   "Accept": "application/json"}
        if token:
            headers["Cookie"] = f"TOKEN={token}"
        status, _h, body = self.http.request("POST", path, parts, headers)
        return status, body

    def est_up(self, token: str, trackid: str, company: str = COMPANY) -> etree._Element:
        body_, dv_ = company.split("-")
        _s, body = self.soap("/DTEWS/QueryEstUp.jws", "getEstUp",
                             [("RutCompania", body_), ("DvCompania", dv_), ("TrackId", trackid), ("Token", token)])
        return inner_of(body)

    def reclamo(self, token: str, op: str, tipo: int, folio: int, accion: str | None = None,
                company: str = COMPANY) -> tuple[int, etree._Element]:
        params = [("rutEmisor", company.split("-")[0]), ("dvEmisor", company.split("-")[1]),
                  ("tipoDoc", str(tipo)), ("folio", str(folio))]
        if accion:
            params.append(("accionDoc", accion))
        status, body = self.soap("/WSREGISTRORECLAMODTECERT/registroreclamodteservice", op, params, cookie=token)
        return status, etree.fromstring(body)


def recepcion(body: bytes) -> dict[str, str]:
    root = etree.fromstring(body)
    assert root.tag == "RECEPCIONDTE", body
    out = {c.tag: c.text or "" for c in root if c.tag != "DETAIL"}
    out["errors"] = "\n".join(e.text or "" for e in root.iter("ERROR"))
    return out
