"""Benchmark material made on the spot: a signer certificate, a CAF and one realistic factura.

Every contender (dte_native, the Python way, the PyPI peers) reads the same files from the
material folder, so they all sign the same document with the same keys. Nothing here is secret
and nothing is committed: the folder lives under build/.

The shapes follow what SII and the Chilean CAs issue (see /work/shared/sii/PROTOCOL.md §7-8):
  * "SII" CAF-signing key: RSA-1024; CAF range key: RSA-512 with e=3; FRMA = SHA1withRSA over
    the flattened DA, ISO-8859-1.
  * signer: self-signed RSA-2048 certificate with the RUT in subject serialNumber and in the SAN
    otherName 1.3.6.1.4.1.8321.1 (IA5String), exported as PEM and as PKCS#12.
"""
from __future__ import annotations

import base64
import datetime as dt
import json
import re
import subprocess
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from cryptography.hazmat.primitives.serialization import pkcs12
from cryptography.x509.oid import NameOID

ISSUER_RUT = "76192083-9"
ISSUER_NAME = "SASCO SpA"
SIGNER_RUT = "11222333-9"  # check digit of 11222333 is 9
P12_PASSWORD = "bench"
FOLIO_FROM, FOLIO_TO = 1, 1_000_000
TIMESTAMP = "2026-11-20T10:15:00"
ISSUE_DATE = "2026-11-20"

# One realistic factura (type 33): five lines, one with a discount, Latin-1 text.
FACTURA = {
    "Encabezado": {
        "IdDoc": {"TipoDTE": 33, "Folio": 1, "FchEmis": ISSUE_DATE, "FmaPago": 2,
                  "FchVenc": "2026-12-20"},
        "Emisor": {
            "RUTEmisor": ISSUER_RUT,
            "RznSoc": ISSUER_NAME,
            "GiroEmis": "Servicios integrales de informática",
            "Acteco": [726000],
            "DirOrigen": "Av. Providencia 1234, oficina 56",
            "CmnaOrigen": "Providencia",
            "CiudadOrigen": "Santiago",
        },
        "Receptor": {
            "RUTRecep": "60803000-K",
            "RznSocRecep": "Servicio de Impuestos Internos",
            "GiroRecep": "Gobierno",
            "DirRecep": "Teatinos 120",
            "CmnaRecep": "Santiago",
            "CiudadRecep": "Santiago",
        },
    },
    "Detalle": [
        {"NmbItem": "Conectores RJ45 categoría 6", "QtyItem": 450, "UnmdItem": "UN",
         "PrcItem": 70},
        {"NmbItem": "Cable UTP Cat6 (rollo 305 m)", "QtyItem": 3, "UnmdItem": "UN",
         "PrcItem": 89990, "DescuentoPct": 10},
        {"NmbItem": "Switch 24 puertos gigabit", "QtyItem": 2, "UnmdItem": "UN",
         "PrcItem": 154990},
        {"NmbItem": "Instalación y certificación de puntos de red", "QtyItem": 24,
         "UnmdItem": "HR", "PrcItem": 18500},
        {"NmbItem": "Canaleta PVC 20x10 mm, tira 2 m", "QtyItem": 60, "UnmdItem": "UN",
         "PrcItem": 1290},
    ],
}


def round_half_up(x: float) -> int:
    return int(x + 0.5) if x >= 0 else -int(-x + 0.5)


def normalize(doc: dict) -> dict:
    """Line amounts and totals as SII wants them (half-up rounding), for builders that need
    them precomputed (the Python way). dte_native computes them itself from FACTURA."""
    out = json.loads(json.dumps(doc))
    neto = 0
    for n, line in enumerate(out["Detalle"], 1):
        line["NroLinDet"] = n
        gross = line["QtyItem"] * line["PrcItem"]
        if "DescuentoPct" in line:
            line["DescuentoMonto"] = round_half_up(gross * line["DescuentoPct"] / 100)
        line["MontoItem"] = gross - line.get("DescuentoMonto", 0)
        neto += line["MontoItem"]
    iva = round_half_up(neto * 19 / 100)
    out["Encabezado"]["Totales"] = {"MntNeto": neto, "TasaIVA": "19", "IVA": iva,
                                    "MntTotal": neto + iva}
    return out


def _b64int(n: int) -> str:
    return base64.b64encode(n.to_bytes((n.bit_length() + 7) // 8, "big")).decode()


def _rsa512_e3() -> rsa.RSAPrivateKey:
    try:
        return rsa.generate_private_key(public_exponent=3, key_size=512)
    except ValueError:  # newer cryptography refuses < 1024 bits: let OpenSSL make it
        pem = subprocess.run(["openssl", "genrsa", "-3", "512"], check=True,
                             capture_output=True).stdout
        key = serialization.load_pem_private_key(pem, password=None)
        assert isinstance(key, rsa.RSAPrivateKey)
        return key


def flatten(xml_text: str) -> str:
    return re.sub(r">\s+<", "><", xml_text.strip())


def make_caf(sii_key: rsa.RSAPrivateKey) -> tuple[str, rsa.RSAPrivateKey]:
    key = _rsa512_e3()
    pub = key.public_key().public_numbers()
    da = (
        "<DA>\n"
        f"<RE>{ISSUER_RUT}</RE>\n<RS>{ISSUER_NAME.upper()}</RS>\n<TD>33</TD>\n"
        f"<RNG><D>{FOLIO_FROM}</D><H>{FOLIO_TO}</H></RNG>\n<FA>2026-11-01</FA>\n"
        f"<RSAPK><M>{_b64int(pub.n)}</M><E>{_b64int(pub.e)}</E></RSAPK>\n<IDK>100</IDK>\n"
        "</DA>"
    )
    frma = base64.b64encode(sii_key.sign(flatten(da).encode("iso-8859-1"), padding.PKCS1v15(),
                                         hashes.SHA1())).decode()
    sk = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.TraditionalOpenSSL,
                           serialization.NoEncryption()).decode().strip()
    pk = key.public_key().public_bytes(serialization.Encoding.PEM,
                                       serialization.PublicFormat.SubjectPublicKeyInfo).decode().strip()
    caf = (
        '<?xml version="1.0" encoding="ISO-8859-1"?>\n<AUTORIZACION>\n<CAF version="1.0">\n'
        f'{da}\n<FRMA algoritmo="SHA1withRSA">{frma}</FRMA>\n</CAF>\n'
        f"<RSASK>{sk}</RSASK>\n<RSAPUBK>{pk}</RSAPUBK>\n</AUTORIZACION>\n"
    )
    return caf, key


def make_certificate() -> tuple[rsa.RSAPrivateKey, x509.Certificate]:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    name = x509.Name([
        x509.NameAttribute(NameOID.COUNTRY_NAME, "CL"),
        x509.NameAttribute(NameOID.COMMON_NAME, "Firmante de Prueba"),
        x509.NameAttribute(NameOID.SERIAL_NUMBER, SIGNER_RUT),
        x509.NameAttribute(NameOID.EMAIL_ADDRESS, "firmante@example.cl"),
    ])
    rut = SIGNER_RUT.encode()
    san = x509.SubjectAlternativeName([
        x509.OtherName(x509.ObjectIdentifier("1.3.6.1.4.1.8321.1"), b"\x16" + bytes([len(rut)]) + rut),
        x509.RFC822Name("firmante@example.cl"),
    ])
    now = dt.datetime.now(dt.timezone.utc)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name)
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(days=400))
            .not_valid_after(now + dt.timedelta(days=365))
            .add_extension(san, critical=False)
            .add_extension(x509.KeyUsage(True, True, False, False, False, False, False, False, False),
                           critical=True)
            .sign(key, hashes.SHA256()))
    return key, cert


def generate(folder: Path) -> dict:
    """Writes the material into `folder` (idempotent: reuses what is there) and returns paths."""
    folder.mkdir(parents=True, exist_ok=True)
    paths = {k: folder / v for k, v in {
        "sii_key": "sii-caf-key.pem", "sii_pub": "sii-caf-pub.pem", "caf": "caf-33.xml",
        "cert": "signer-cert.pem", "key": "signer-key.pem", "p12": "signer.p12",
        "factura": "factura-33.json", "factura_normalized": "factura-33-normalized.json",
    }.items()}
    if not all(p.exists() for p in paths.values()):
        sii_key = rsa.generate_private_key(public_exponent=65537, key_size=1024)
        caf, _ = make_caf(sii_key)
        key, cert = make_certificate()
        pem_nopw = serialization.NoEncryption()
        paths["sii_key"].write_bytes(sii_key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, pem_nopw))
        paths["sii_pub"].write_bytes(sii_key.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo))
        paths["caf"].write_bytes(caf.encode("iso-8859-1"))
        paths["cert"].write_bytes(cert.public_bytes(serialization.Encoding.PEM))
        paths["key"].write_bytes(key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, pem_nopw))
        paths["p12"].write_bytes(pkcs12.serialize_key_and_certificates(
            b"firmante", key, cert, None,
            serialization.BestAvailableEncryption(P12_PASSWORD.encode())))
        paths["factura"].write_text(json.dumps(FACTURA, ensure_ascii=False, indent=1), "utf-8")
        paths["factura_normalized"].write_text(
            json.dumps(normalize(FACTURA), ensure_ascii=False, indent=1), "utf-8")
    return {k: str(v) for k, v in paths.items()}


if __name__ == "__main__":
    import sys
    print(json.dumps(generate(Path(sys.argv[1])), indent=1))
