"""SII wire formats: Axis RPC/encoded SOAP, the SII:RESPUESTA inner documents, RECEPCIONDTE,
multipart bodies and the JAX-WS style answers of RegistroReclamoDTE."""
from __future__ import annotations

import re
from xml.sax.saxutils import escape

from lxml import etree  # type: ignore[import-untyped]

from .checks import local, parse

SOAP_ENV = "http://schemas.xmlsoap.org/soap/envelope/"
SII_RESP_NS = "http://www.sii.cl/XMLSchema"
RECLAMO_NS = "http://ws.registroreclamodte.diii.sdi.sii.cl"


class SoapRequestError(ValueError):
    """The SOAP request could not be understood."""


def parse_soap(body: bytes) -> tuple[str, dict[str, str]]:
    """(operation local name, {param local name: text}) of an RPC or document/literal call."""
    try:
        root = parse(body)
    except etree.XMLSyntaxError as exc:
        raise SoapRequestError(f"XML mal formado: {exc}") from exc
    if local(root) != "Envelope":
        raise SoapRequestError("no es un SOAP Envelope")
    body_el = next((c for c in root if isinstance(c.tag, str) and local(c) == "Body"), None)
    if body_el is None:
        raise SoapRequestError("SOAP sin Body")
    op = next((c for c in body_el if isinstance(c.tag, str)), None)
    if op is None:
        raise SoapRequestError("SOAP Body vacio")
    params: dict[str, str] = {}
    for p in op:
        if isinstance(p.tag, str):
            params[local(p)] = p.text or ""
    return local(op), params


def respuesta(hdr: list[tuple[str, str]], body: list[tuple[str, str]] | None = None,
              body_first: bool = False) -> str:
    """An SII:RESPUESTA document as text (what SII escapes into *Return)."""
    h = "".join(f"<{k}>{escape(v)}</{k}>" for k, v in hdr)
    parts = [f"<SII:RESP_HDR>{h}</SII:RESP_HDR>"]
    if body is not None:
        b = "".join(f"<{k}>{escape(v)}</{k}>" for k, v in body)
        parts.insert(0 if body_first else 1, f"<SII:RESP_BODY>{b}</SII:RESP_BODY>")
    return ('<?xml version="1.0" encoding="UTF-8"?>'
            f'<SII:RESPUESTA xmlns:SII="{SII_RESP_NS}">{"".join(parts)}</SII:RESPUESTA>')


def rpc_response(service_ns: str, op: str, value: str) -> bytes:
    """Axis 1.x RPC/encoded answer: the string result is entity-escaped inside `<opReturn>`."""
    return (
        '<?xml version="1.0" encoding="UTF-8"?>'
        f'<soapenv:Envelope xmlns:soapenv="{SOAP_ENV}" xmlns:xsd="http://www.w3.org/2001/XMLSchema" '
        'xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance">'
        '<soapenv:Body>'
        f'<ns1:{op}Response soapenv:encodingStyle="http://schemas.xmlsoap.org/soap/encoding/" '
        f'xmlns:ns1="{service_ns}">'
        f'<{op}Return xsi:type="xsd:string">{escape(value, {chr(34): "&quot;"})}</{op}Return>'
        f'</ns1:{op}Response></soapenv:Body></soapenv:Envelope>'
    ).encode("utf-8")


def soap_fault(message: str, code: str = "soapenv:Server") -> bytes:
    return (
        '<?xml version="1.0" encoding="UTF-8"?>'
        f'<soapenv:Envelope xmlns:soapenv="{SOAP_ENV}"><soapenv:Body><soapenv:Fault>'
        f'<faultcode>{code}</faultcode><faultstring>{escape(message)}</faultstring>'
        '</soapenv:Fault></soapenv:Body></soapenv:Envelope>'
    ).encode("utf-8")


def reclamo_response(op: str, inner: str) -> bytes:
    return (
        '<?xml version="1.0" encoding="UTF-8"?>'
        f'<S:Envelope xmlns:S="{SOAP_ENV}"><S:Body>'
        f'<ns2:{op}Response xmlns:ns2="{RECLAMO_NS}"><return>{inner}</return></ns2:{op}Response>'
        '</S:Body></S:Envelope>'
    ).encode("utf-8")


def elements(pairs: list[tuple[str, str]]) -> str:
    return "".join(f"<{k}>{escape(str(v))}</{k}>" for k, v in pairs)


def recepcion_dte(fields: list[tuple[str, str]], errors: list[str] | None = None) -> bytes:
    detail = ""
    if errors:
        detail = "<DETAIL>" + "".join(f"<ERROR>{escape(e)}</ERROR>" for e in errors) + "</DETAIL>"
    return ('<?xml version="1.0"?>\n<RECEPCIONDTE>\n'
            + "".join(f"<{k}>{escape(v)}</{k}>\n" for k, v in fields)
            + detail + "</RECEPCIONDTE>\n").encode("utf-8")


HTML_PAGE = (b"<html><head><title>SII - Envio de Documentos</title></head><body>"
             b"<h1>Servicio de Impuestos Internos</h1><p>Upload de documentos electronicos.</p>"
             b"</body></html>")


class MultipartError(ValueError):
    """Broken multipart body: missing boundary, truncated part..."""


def parse_multipart(content_type: str, body: bytes) -> list[tuple[str, str | None, bytes]]:
    """[(field name, filename or None, raw bytes)] in the order sent; bytes kept exactly."""
    m = re.search(r'boundary="?([^";]+)"?', content_type or "", re.I)
    if not m or not content_type.lower().startswith("multipart/form-data"):
        raise MultipartError("Content-Type no es multipart/form-data con boundary")
    delim = b"--" + m.group(1).encode("latin-1")
    if delim + b"--" not in body:
        raise MultipartError("multipart truncado: falta el delimitador final")
    parts = body.split(delim)
    out: list[tuple[str, str | None, bytes]] = []
    for part in parts[1:]:
        if part.startswith(b"--"):
            break
        if part.startswith(b"\r\n"):
            part = part[2:]
        head, sep, content = part.partition(b"\r\n\r\n")
        if not sep:
            raise MultipartError("parte sin cabeceras")
        if content.endswith(b"\r\n"):
            content = content[:-2]
        headers = head.decode("latin-1")
        disp = re.search(r"content-disposition:[^\r\n]*", headers, re.I)
        if not disp:
            raise MultipartError("parte sin Content-Disposition")
        name = re.search(r'\bname="([^"]*)"', disp.group(0))
        filename = re.search(r'\bfilename="([^"]*)"', disp.group(0))
        out.append((name.group(1) if name else "", filename.group(1) if filename else None, content))
    return out
