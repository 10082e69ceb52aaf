"""Peer: `facturacion-electronica` (PyPI; the library behind Odoo's l10n_cl_fe), used exactly as
l10n_cl_fe calls it: `facturacion_electronica.timbrar(datos)` with Emisor, firma_electronica
(the PKCS#12 in base64) and Documento=[{TipoDTE, caf_file=[CAF base64], documentos=[dte]}].

What its timbrar() really does per document (read from its source, firma.py/dte.py/clase_util.py):
builds the Documento with lxml from dicts, stamps the TED (DD serialised with lxml, newlines
removed, RSA-SHA1 with the CAF key via `cryptography`), renders the TED as a PDF417 PNG image
(pdf417gen + Pillow), pretty-prints, then signs by hand (C14N of Documento with lxml, SHA1
digest, SignedInfo built and canonicalised with lxml, RSA-SHA1 via `cryptography`, KeyValue +
X509Certificate), and, with verify=True (the default), validates the Signature against
xmldsignature_v10.xsd and the whole DTE against DTE_v10.xsd, parsing the XSD files anew on
every call. The PKCS#12 is opened again for every document (Firma is built per timbrar call).
Its verification helper, Firma.verificar_firma_xml, checks digest + RSA signature with the
certificate in X509Certificate (no TED, no CAF, no KeyValue/certificate match).

Runs in build/bench-venv/facturacion (it pins cryptography==41.0.7 and pyOpenSSL==23.2.0).

  peer_facturacion.py MATERIAL_DIR bench-sign SECONDS VERIFY(0|1) [OUT.xml]
  peer_facturacion.py MATERIAL_DIR bench-verify SECONDS SIGNED.xml
"""
from __future__ import annotations

import base64
import copy
import json
import logging
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import material as material_mod  # noqa: E402
from timing import rate  # noqa: E402

from facturacion_electronica import facturacion_electronica as fe  # noqa: E402
from facturacion_electronica.firma import Firma  # noqa: E402


def _caf_without_declaration(path: str) -> bytes:
    data = Path(path).read_bytes()
    return data.split(b"?>", 1)[1].lstrip() if data.startswith(b"<?xml") else data


def datos(material: dict, verify: bool) -> dict:
    doc = json.loads(Path(material["factura"]).read_text("utf-8"))
    enc = doc["Encabezado"]
    em = enc["Emisor"]
    lines = []
    for n, line in enumerate(doc["Detalle"], 1):
        out = {"NroLinDet": n, "NmbItem": line["NmbItem"], "QtyItem": line["QtyItem"],
               "UnmdItem": line["UnmdItem"], "PrcItem": line["PrcItem"],
               "Impuesto": [{"CodImp": 14, "price_include": False, "TasaImp": 19}]}
        gross = line["QtyItem"] * line["PrcItem"]
        if "DescuentoPct" in line:
            out["DescuentoPct"] = line["DescuentoPct"]
            out["DescuentoMonto"] = material_mod.round_half_up(gross * line["DescuentoPct"] / 100)
        out["MontoItem"] = gross - out.get("DescuentoMonto", 0)
        lines.append(out)
    return {
        "verify": verify,
        "test": True,
        "Emisor": {
            "RUTEmisor": em["RUTEmisor"], "RznSoc": em["RznSoc"], "GiroEmis": em["GiroEmis"],
            "Actecos": em["Acteco"], "DirOrigen": em["DirOrigen"], "CmnaOrigen": em["CmnaOrigen"],
            "CiudadOrigen": em["CiudadOrigen"], "CorreoEmisor": "facturacion@example.cl",
            "Modo": "certificacion", "NroResol": 0, "FchResol": "2026-11-01", "ValorIva": 19,
        },
        "firma_electronica": {
            "string_firma": base64.b64encode(Path(material["p12"]).read_bytes()).decode(),
            "string_password": material_mod.P12_PASSWORD,
            "rut_firmante": material_mod.SIGNER_RUT,
            "init_signature": True,
        },
        "Documento": [{
            "TipoDTE": 33,
            # It parses the decoded CAF as a str, which lxml refuses with an encoding
            # declaration: hand it the CAF without its first line, as l10n_cl_fe stores it.
            "caf_file": [base64.b64encode(_caf_without_declaration(material["caf"])).decode()],
            "documentos": [{
                "Encabezado": {
                    "IdDoc": {"Folio": 1, "FchEmis": enc["IdDoc"]["FchEmis"], "FmaPago": 2,
                              "FchVenc": enc["IdDoc"]["FchVenc"]},
                    "Receptor": dict(enc["Receptor"]),
                },
                "Detalle": lines,
            }],
        }],
    }


def main(argv: list[str]) -> int:
    logging.disable(logging.WARNING)  # it logs every unknown key; not what we measure
    material = material_mod.generate(Path(argv[1]))
    cmd = argv[2]
    if cmd == "bench-sign":
        base = datos(material, verify=argv[4] == "1")
        last: list[str] = []

        def step(i: int) -> int:
            vals = copy.deepcopy(base)  # timbrar consumes/mutates its input dicts
            vals["Documento"][0]["documentos"][0]["Encabezado"]["IdDoc"]["Folio"] = i % 900_000 + 1
            res = fe.timbrar(vals)
            if not res or res[0].get("error") or not res[0].get("sii_xml_dte"):
                raise RuntimeError((res or [{}])[0].get("error", "timbrar returned nothing"))
            last[:] = [res[0]["sii_xml_dte"]]
            return 1

        r = rate(step, seconds=float(argv[3]))
        if len(argv) > 5:
            Path(argv[5]).write_bytes(
                ('<?xml version="1.0" encoding="ISO-8859-1"?>\n' + last[0]).encode("iso-8859-1"))
        print(json.dumps(r))
        return 0
    if cmd == "bench-verify":
        xml_text = Path(argv[4]).read_bytes().decode("iso-8859-1")
        firma_vals = datos(material, True)["firma_electronica"]
        firma = Firma(dict(firma_vals))
        first = firma.verificar_firma_xml(xml_text)
        if first != (0, ""):
            print(json.dumps({"error": f"verificar_firma_xml: {first}"}))
            return 1

        def step(_i: int) -> int:
            assert firma.verificar_firma_xml(xml_text) == (0, "")
            return 1

        print(json.dumps(rate(step, seconds=float(argv[3]))))
        return 0
    print(__doc__)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv))
