"""Peer: `cl-sii` (PyPI, Cordada's lib-cl-sii-python). It does not sign DTEs; it verifies XML
signatures (`cl_sii.libs.xml_utils.verify_xml_signature`, built on signxml) and parses DTEs
(`cl_sii.dte.parse`). It has no TED/CAF verification. We measure, on the same signed document:

  * signature: parse_untrusted_xml (defusedxml) + verify_xml_signature with the signer's
    certificate as the trusted certificate (the document's X509Certificate, loaded per document);
  * signature + schema + parse: the above plus validate_dte_xml (its schema object, compiled
    once at import) and parse_dte_xml (the DTE's data as a typed object).

Runs in build/bench-venv/cl-sii (its lxml/cryptography wheels must not mix with Debian's xmlsec).

  peer_cl_sii.py MATERIAL_DIR bench-verify SECONDS SIGNED.xml
"""
from __future__ import annotations

import base64
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from timing import rate  # noqa: E402

from cl_sii.dte import parse as dte_parse  # noqa: E402
from cl_sii.libs import crypto_utils, xml_utils  # noqa: E402

DS = "{http://www.w3.org/2000/09/xmldsig#}"


def verify_signature(data: bytes) -> object:
    doc = xml_utils.parse_untrusted_xml(data)
    cert_b64 = doc.find(f".//{DS}X509Certificate").text
    cert = crypto_utils.load_der_x509_cert(base64.b64decode(cert_b64))
    xml_utils.verify_xml_signature(doc, trusted_x509_cert=cert)
    return doc


def verify_full(data: bytes) -> object:
    doc = verify_signature(data)
    dte_parse.validate_dte_xml(doc)
    return dte_parse.parse_dte_xml(doc)


def main(argv: list[str]) -> int:
    if argv[2] != "bench-verify":
        print(__doc__)
        return 2
    data = Path(argv[4]).read_bytes()
    out: dict = {}
    for name, fn in (("signature", verify_signature), ("signature_schema_parse", verify_full)):
        try:
            fn(data)
        except Exception as exc:  # report, do not hide: a peer that cannot verify is a finding
            out[name] = {"error": f"{type(exc).__name__}: {exc}"}
            continue
        out[name] = rate(lambda _i, fn=fn: (fn(data), 1)[1], seconds=float(argv[3]))
    print(json.dumps(out))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
