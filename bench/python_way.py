"""The Python way: how a careful Python integrator signs and verifies a DTE without dte_native.

  * build the DTE with lxml, elements in XSD order, in SII's namespace;
  * TED: the DD flattened (C14N, no namespace, no whitespace between tags), ISO-8859-1,
    signed RSA-512 SHA1 PKCS#1 v1.5 with the CAF's RSASK via `cryptography`;
  * XMLDSig with python-xmlsec in SII's profile: inclusive C14N 20010315, rsa-sha1, sha1 digest,
    Reference URI="#ID" with no transform, KeyInfo = KeyValue then X509Data/X509Certificate;
  * verification with python-xmlsec (signature) and `cryptography` (TED FRMT with the CAF key,
    CAF FRMA with the SII key, certificate key = KeyValue, certificate valid at TmstFirma),
    optionally preceded by XSD validation with lxml (DTE_v10.xsd compiled once).

Single process, single thread: what one Odoo worker does. Run it with Debian's python3-lxml
and python3-xmlsec (they share one libxml2), e.g. from build/bench-venv/core.

  python_way.py MATERIAL_DIR sign N OUT.xml      sign N documents, write the last one
  python_way.py MATERIAL_DIR bench-sign SECONDS  JSON: documents/s
  python_way.py MATERIAL_DIR bench-verify SECONDS SIGNED.xml [XSD_DIR]
  python_way.py MATERIAL_DIR verify SIGNED.xml [XSD_DIR]   JSON report of one document
"""
from __future__ import annotations

import base64
import copy
import datetime as dt
import json
import re
import sys
from pathlib import Path

# lxml.etree before xmlsec: python-xmlsec imported first leaves libxml2 with an external-entity
# loader that refuses lxml's later file parses (python-xmlsec issue #96), so an XSD read from
# disk would fail with an empty XMLSyntaxError.
from lxml import etree
import xmlsec
from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa

SII = "http://www.sii.cl/SiiDte"
DS = "http://www.w3.org/2000/09/xmldsig#"
NS = {"s": SII, "ds": DS}
_BETWEEN_TAGS = re.compile(r">\s+<")

_SECURE_PARSER = etree.XMLParser(resolve_entities=False, no_network=True, load_dtd=False,
                                 huge_tree=False, remove_blank_text=False)


def _sub(parent: etree._Element, tag: str, text: object | None = None) -> etree._Element:
    el = etree.SubElement(parent, f"{{{SII}}}{tag}")
    if text is not None:
        el.text = str(text)
    return el


def _flat_c14n_latin1(el: etree._Element) -> bytes:
    """SII's "aplanado": the element without its namespace or whitespace between tags, as
    ISO-8859-1 bytes. Plain serialisation, not lxml's method="c14n": on a sub-element that
    one writes xmlns="" onto grandchildren (libxml2 subtree C14N) and breaks FRMA checks."""
    text = etree.tostring(el, encoding="unicode", with_tail=False)
    text = text.replace(f' xmlns="{SII}"', "", 1)
    return _BETWEEN_TAGS.sub("><", text).encode("iso-8859-1")


def _into_sii_ns(el: etree._Element) -> etree._Element:
    """A copy of a namespace-less element (the CAF from its file) in SII's namespace."""
    out = copy.deepcopy(el)
    for e in list(out.iter()):  # a list: renaming while iterating skips descendants
        if isinstance(e.tag, str) and not e.tag.startswith("{"):
            e.tag = f"{{{SII}}}{e.tag}"
    etree.cleanup_namespaces(out)
    return out


def _b64int(text: str) -> int:
    return int.from_bytes(base64.b64decode(text), "big")


class PythonWay:
    def __init__(self, material: dict):
        self.doc = json.loads(Path(material["factura_normalized"]).read_text("utf-8"))
        caf_root = etree.fromstring(Path(material["caf"]).read_bytes(), _SECURE_PARSER)
        self.caf_element = _into_sii_ns(caf_root.find("CAF"))
        for e in self.caf_element.iter():  # flatten whitespace inside the CAF once
            e.tail = None
            if len(e):
                e.text = None
        caf_key = serialization.load_pem_private_key(
            caf_root.findtext("RSASK").strip().encode(), password=None)
        assert isinstance(caf_key, rsa.RSAPrivateKey)
        self.caf_key = caf_key
        self.key = xmlsec.Key.from_memory(Path(material["key"]).read_bytes(),
                                          xmlsec.constants.KeyDataFormatPem, None)
        self.key.load_cert_from_memory(Path(material["cert"]).read_bytes(),
                                       xmlsec.constants.KeyDataFormatCertPem)

    # -- emission --------------------------------------------------------------------------
    def build(self, folio: int) -> tuple[etree._Element, etree._Element]:
        d = self.doc
        enc = d["Encabezado"]
        doc_id = f"T33F{folio}"
        root = etree.Element(f"{{{SII}}}DTE", nsmap={None: SII}, version="1.0")
        documento = _sub(root, "Documento")
        documento.set("ID", doc_id)
        e = _sub(documento, "Encabezado")
        idd = _sub(e, "IdDoc")
        _sub(idd, "TipoDTE", 33)
        _sub(idd, "Folio", folio)
        for k in ("FchEmis", "FmaPago", "FchVenc"):
            _sub(idd, k, enc["IdDoc"][k])
        em = _sub(e, "Emisor")
        src = enc["Emisor"]
        _sub(em, "RUTEmisor", src["RUTEmisor"])
        _sub(em, "RznSoc", src["RznSoc"][:100])
        _sub(em, "GiroEmis", src["GiroEmis"][:80])
        for a in src["Acteco"]:
            _sub(em, "Acteco", a)
        for k in ("DirOrigen", "CmnaOrigen", "CiudadOrigen"):
            _sub(em, k, src[k])
        rc = _sub(e, "Receptor")
        for k in ("RUTRecep", "RznSocRecep", "GiroRecep", "DirRecep", "CmnaRecep", "CiudadRecep"):
            _sub(rc, k, enc["Receptor"][k])
        tot = _sub(e, "Totales")
        for k in ("MntNeto", "TasaIVA", "IVA", "MntTotal"):
            _sub(tot, k, enc["Totales"][k])
        for line in d["Detalle"]:
            det = _sub(documento, "Detalle")
            for k in ("NroLinDet", "NmbItem", "QtyItem", "UnmdItem", "PrcItem", "DescuentoPct",
                      "DescuentoMonto", "MontoItem"):
                if k in line:
                    _sub(det, k, line[k])
        return root, documento

    def stamp(self, documento: etree._Element, folio: int, timestamp: str) -> None:
        enc = self.doc["Encabezado"]
        ted = _sub(documento, "TED")
        ted.set("version", "1.0")
        dd = _sub(ted, "DD")
        _sub(dd, "RE", enc["Emisor"]["RUTEmisor"])
        _sub(dd, "TD", 33)
        _sub(dd, "F", folio)
        _sub(dd, "FE", enc["IdDoc"]["FchEmis"])
        _sub(dd, "RR", enc["Receptor"]["RUTRecep"])
        _sub(dd, "RSR", enc["Receptor"]["RznSocRecep"][:40])
        _sub(dd, "MNT", enc["Totales"]["MntTotal"])
        _sub(dd, "IT1", self.doc["Detalle"][0]["NmbItem"][:40])
        dd.append(copy.deepcopy(self.caf_element))
        _sub(dd, "TSTED", timestamp)
        frmt = self.caf_key.sign(_flat_c14n_latin1(dd), padding.PKCS1v15(), hashes.SHA1())
        f = _sub(ted, "FRMT", base64.b64encode(frmt).decode())
        f.set("algoritmo", "SHA1withRSA")
        _sub(documento, "TmstFirma", timestamp)

    def sign_xml(self, root: etree._Element, doc_id: str) -> None:
        sig = xmlsec.template.create(root, xmlsec.constants.TransformInclC14N,
                                     xmlsec.constants.TransformRsaSha1)
        root.append(sig)
        xmlsec.template.add_reference(sig, xmlsec.constants.TransformSha1, uri="#" + doc_id)
        ki = xmlsec.template.ensure_key_info(sig)
        xmlsec.template.add_key_value(ki)
        x509_data = xmlsec.template.add_x509_data(ki)
        xmlsec.template.x509_data_add_certificate(x509_data)
        xmlsec.tree.add_ids(root, ["ID"])
        ctx = xmlsec.SignatureContext()
        ctx.key = self.key
        ctx.sign(sig)

    def sign(self, folio: int, timestamp: str) -> bytes:
        root, documento = self.build(folio)
        self.stamp(documento, folio, timestamp)
        self.sign_xml(root, documento.get("ID"))
        return etree.tostring(root, encoding="ISO-8859-1", xml_declaration=True)


class PythonVerifier:
    """Full verification of one standalone signed DTE, each check named like dte_native's."""

    def __init__(self, material: dict, xsd_dir: str | None = None):
        self.sii_key = serialization.load_pem_public_key(Path(material["sii_pub"]).read_bytes())
        self.schema = None
        if xsd_dir:
            self.schema = etree.XMLSchema(etree.parse(str(Path(xsd_dir) / "DTE_v10.xsd")))

    def verify(self, data: bytes) -> dict:
        checks: dict[str, bool | str] = {}
        root = etree.fromstring(data, _SECURE_PARSER)
        if self.schema is not None:
            checks["schema"] = self.schema.validate(root)
        documento = root.find("s:Documento", NS)
        sig = root.find("ds:Signature", NS)
        doc_id = documento.get("ID")
        checks["dte.signature_target"] = (
            sig.find("ds:SignedInfo/ds:Reference", NS).get("URI") == "#" + doc_id)
        # The key: the certificate's, which must be the KeyValue's too.
        cert = x509.load_der_x509_certificate(base64.b64decode(
            sig.findtext("ds:KeyInfo/ds:X509Data/ds:X509Certificate", namespaces=NS)))
        pub = cert.public_key().public_numbers()
        rsa_kv = sig.find("ds:KeyInfo/ds:KeyValue/ds:RSAKeyValue", NS)
        checks["cert.key_match"] = (
            _b64int(rsa_kv.findtext("ds:Modulus", namespaces=NS)) == pub.n
            and _b64int(rsa_kv.findtext("ds:Exponent", namespaces=NS)) == pub.e)
        signed_at = dt.datetime.fromisoformat(documento.findtext("s:TmstFirma", namespaces=NS))
        nb = cert.not_valid_before.replace(tzinfo=None)
        na = cert.not_valid_after.replace(tzinfo=None)
        checks["cert.validity"] = nb <= signed_at <= na
        xmlsec.tree.add_ids(root, ["ID"])
        ctx = xmlsec.SignatureContext()
        ctx.key = xmlsec.Key.from_memory(cert.public_bytes(serialization.Encoding.DER),
                                         xmlsec.constants.KeyDataFormatCertDer, None)
        try:
            ctx.verify(sig)
            checks["dte.signature"] = True
        except xmlsec.Error as exc:
            checks["dte.signature"] = f"failed: {exc}"
        # TED: FRMT with the CAF's public key, FRMA with SII's key, DD against the document.
        ted = documento.find("s:TED", NS)
        dd = ted.find("s:DD", NS)
        caf = dd.find("s:CAF", NS)
        da = caf.find("s:DA", NS)
        caf_pub = rsa.RSAPublicNumbers(_b64int(da.findtext("s:RSAPK/s:E", namespaces=NS)),
                                       _b64int(da.findtext("s:RSAPK/s:M", namespaces=NS))).public_key()
        checks["ted.frmt"] = _rsa_sha1_ok(caf_pub, ted.findtext("s:FRMT", namespaces=NS),
                                          _flat_c14n_latin1(dd))
        checks["ted.caf"] = _rsa_sha1_ok(self.sii_key, caf.findtext("s:FRMA", namespaces=NS),
                                         _flat_c14n_latin1(da))
        enc = documento.find("s:Encabezado", NS)
        folio = int(enc.findtext("s:IdDoc/s:Folio", namespaces=NS))
        g = lambda el, path: el.findtext(path, namespaces=NS)  # noqa: E731
        checks["ted.consistency"] = (
            g(dd, "s:RE") == g(enc, "s:Emisor/s:RUTEmisor") == g(da, "s:RE")
            and g(dd, "s:TD") == g(enc, "s:IdDoc/s:TipoDTE") == g(da, "s:TD")
            and int(g(dd, "s:F")) == folio
            and int(g(da, "s:RNG/s:D")) <= folio <= int(g(da, "s:RNG/s:H"))
            and g(dd, "s:FE") == g(enc, "s:IdDoc/s:FchEmis")
            and g(dd, "s:RR") == g(enc, "s:Receptor/s:RUTRecep")
            and g(dd, "s:MNT") == g(enc, "s:Totales/s:MntTotal"))
        return {"ok": all(v is True for v in checks.values()), "checks": checks}


def _rsa_sha1_ok(key, b64sig: str, data: bytes) -> bool:
    try:
        key.verify(base64.b64decode(b64sig), data, padding.PKCS1v15(), hashes.SHA1())
        return True
    except InvalidSignature:
        return False


def main(argv: list[str]) -> int:
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    import material as material_mod
    from timing import rate

    material = material_mod.generate(Path(argv[1]))
    cmd = argv[2]
    if cmd == "sign":
        way = PythonWay(material)
        out = b""
        for i in range(int(argv[3])):
            out = way.sign(i + 1, material_mod.TIMESTAMP)
        Path(argv[4]).write_bytes(out)
        return 0
    if cmd == "verify":
        ver = PythonVerifier(material, argv[4] if len(argv) > 4 else None)
        report = ver.verify(Path(argv[3]).read_bytes())
        print(json.dumps(report))
        return 0 if report["ok"] else 1
    if cmd == "bench-sign":
        way = PythonWay(material)
        r = rate(lambda i: (way.sign(i % 900_000 + 1, material_mod.TIMESTAMP), 1)[1],
                 seconds=float(argv[3]))
        print(json.dumps(r))
        return 0
    if cmd == "bench-verify":
        data = Path(argv[4]).read_bytes()
        ver = PythonVerifier(material, argv[5] if len(argv) > 5 else None)
        report = ver.verify(data)
        if not report["ok"]:
            print(json.dumps({"error": "document does not verify", "report": report}))
            return 1

        def step(_i: int) -> int:
            assert ver.verify(data)["ok"]
            return 1
        r = rate(step, seconds=float(argv[3]))
        r["report"] = report
        print(json.dumps(r))
        return 0
    print(__doc__)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv))
