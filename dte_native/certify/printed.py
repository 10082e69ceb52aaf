"""Printed samples ("muestras impresas") as PDF, drawn with ReportLab (Debian:
python3-reportlab): the red box with RUT, document name, folio and SII office; issuer and
receiver; lines; totals; references; and the TED as the core's PDF417 barcode with SII's legend.
The cedible copy adds the Ley 19.983 acknowledgement box and "CEDIBLE" (guías: "CEDIBLE CON SU
FACTURA")."""
from __future__ import annotations

import io
from typing import Any

from .. import _api
from . import xmlread

NAMES = {
    33: "FACTURA ELECTRONICA", 34: "FACTURA NO AFECTA O EXENTA ELECTRONICA", 39: "BOLETA ELECTRONICA",
    41: "BOLETA EXENTA ELECTRONICA", 43: "LIQUIDACION FACTURA ELECTRONICA",
    46: "FACTURA DE COMPRA ELECTRONICA", 52: "GUIA DE DESPACHO ELECTRONICA", 56: "NOTA DE DEBITO ELECTRONICA",
    61: "NOTA DE CREDITO ELECTRONICA", 110: "FACTURA DE EXPORTACION ELECTRONICA",
    111: "NOTA DE DEBITO DE EXPORTACION ELECTRONICA", 112: "NOTA DE CREDITO DE EXPORTACION ELECTRONICA",
}
RECIBO = ("El acuse de recibo que se declara en este acto, de acuerdo a lo dispuesto en la letra b) del "
          "Art. 4, y la letra c) del Art. 5 de la Ley 19.983, acredita que la entrega de mercaderias o "
          "servicio(s) prestado(s) ha(n) sido recibido(s).")


def _fmt(value: str) -> str:
    try:
        n = xmlread.number(value)
    except ArithmeticError:
        return value
    if isinstance(n, int):
        return f"{n:,}".replace(",", ".")
    return f"{n:,.2f}".replace(",", "X").replace(".", ",").replace("X", ".")


def render_pdf(dte_xml: bytes, *, office: str = "SANTIAGO CENTRO", resolution: tuple[int, str] = (0, ""),
               cedible: bool = False) -> bytes:
    """One page (letter) for a signed DTE."""
    from reportlab.lib import colors  # type: ignore[import-untyped]
    from reportlab.lib.pagesizes import letter  # type: ignore[import-untyped]
    from reportlab.lib.units import mm  # type: ignore[import-untyped]
    from reportlab.lib.utils import ImageReader  # type: ignore[import-untyped]
    from reportlab.pdfgen import canvas  # type: ignore[import-untyped]

    root = xmlread.parse(dte_xml)
    doc = xmlread.document(root)
    enc = xmlread.find(doc, "Encabezado")
    def t(*path: str) -> str:
        return xmlread.text(enc, *path)

    doc_type = int(t("IdDoc", "TipoDTE") or 0)
    buf = io.BytesIO()
    c = canvas.Canvas(buf, pagesize=letter)
    width, height = letter
    c.setTitle(f"{NAMES.get(doc_type, doc_type)} N {t('IdDoc', 'Folio')}")

    # The SII box: red, top right.
    bx, by, bw, bh = width - 85 * mm, height - 45 * mm, 75 * mm, 32 * mm
    c.setStrokeColor(colors.red)
    c.setFillColor(colors.red)
    c.setLineWidth(2)
    c.rect(bx, by, bw, bh)
    c.setFont("Helvetica-Bold", 11)
    c.drawCentredString(bx + bw / 2, by + bh - 9 * mm, f"R.U.T.: {_api.rut_format(t('Emisor', 'RUTEmisor'))}")
    name = NAMES.get(doc_type, str(doc_type))
    c.setFont("Helvetica-Bold", 9 if len(name) > 30 else 11)
    c.drawCentredString(bx + bw / 2, by + bh - 17 * mm, name)
    c.setFont("Helvetica-Bold", 11)
    c.drawCentredString(bx + bw / 2, by + bh - 25 * mm, f"N\u00ba {t('IdDoc', 'Folio')}")
    c.setFont("Helvetica-Bold", 9)
    c.drawCentredString(bx + bw / 2, by - 5 * mm, f"S.I.I. - {office}")

    # Issuer.
    c.setFillColor(colors.black)
    c.setStrokeColor(colors.black)
    c.setLineWidth(0.5)
    y = height - 20 * mm
    c.setFont("Helvetica-Bold", 12)
    c.drawString(15 * mm, y, (t("Emisor", "RznSoc") or t("Emisor", "RznSocEmisor"))[:60])
    c.setFont("Helvetica", 8)
    for line in (t("Emisor", "GiroEmis") or t("Emisor", "GiroEmisor"),
                 f"{t('Emisor', 'DirOrigen')}, {t('Emisor', 'CmnaOrigen')}",
                 t("Emisor", "CorreoEmisor")):
        if line.strip(", "):
            y -= 4 * mm
            c.drawString(15 * mm, y, line[:80])

    # Receiver and dates.
    y = height - 58 * mm
    c.setFont("Helvetica", 8)
    fields = [("Fecha emision", t("IdDoc", "FchEmis")),
              ("Senor(es)", t("Receptor", "RznSocRecep")),
              ("R.U.T.", t("Receptor", "RUTRecep")),
              ("Giro", t("Receptor", "GiroRecep")),
              ("Direccion", " ".join(x for x in (t("Receptor", "DirRecep"), t("Receptor", "CmnaRecep")) if x))]
    if t("IdDoc", "IndTraslado"):
        fields.append(("Tipo traslado", t("IdDoc", "IndTraslado")))
    if t("Totales", "TpoMoneda"):
        fields.append(("Moneda", t("Totales", "TpoMoneda")))
    for label, value in fields:
        if value:
            c.drawString(15 * mm, y, f"{label}:")
            c.drawString(45 * mm, y, value[:90])
            y -= 4 * mm

    # Lines.
    y -= 3 * mm
    cols = [(15, "Item"), (115, "Cant."), (135, "Precio"), (160, "Desc."), (180, "Valor")]
    c.setFont("Helvetica-Bold", 8)
    for x, label in cols:
        c.drawString(x * mm, y, label)
    c.line(15 * mm, y - 1.5 * mm, width - 15 * mm, y - 1.5 * mm)
    c.setFont("Helvetica", 8)
    for det in xmlread.findall(doc, "Detalle"):
        y -= 5 * mm
        if y < 90 * mm:
            c.drawString(15 * mm, y, "...")
            break
        def dt(name: str, det: Any = det) -> str:
            return xmlread.text(det, name)

        c.drawString(15 * mm, y, (dt("NmbItem") + (" (exento)" if dt("IndExe") == "1" else ""))[:60])
        c.drawRightString(130 * mm, y, _fmt(dt("QtyItem")) if dt("QtyItem") else "")
        c.drawRightString(155 * mm, y, _fmt(dt("PrcItem")) if dt("PrcItem") else "")
        c.drawRightString(175 * mm, y, (dt("DescuentoPct") + "%") if dt("DescuentoPct") else "")
        c.drawRightString(width - 15 * mm, y, _fmt(dt("MontoItem") or "0"))
    for dr in xmlread.findall(doc, "DscRcgGlobal"):
        y -= 5 * mm
        kind = "Descuento" if xmlread.text(dr, "TpoMov") == "D" else "Recargo"
        c.drawString(15 * mm, y, f"{kind} global {xmlread.text(dr, 'ValorDR')}{xmlread.text(dr, 'TpoValor')} "
                     f"{xmlread.text(dr, 'GlosaDR')}"[:90])

    # References.
    refs = xmlread.findall(doc, "Referencia")
    if refs:
        y -= 8 * mm
        c.setFont("Helvetica-Bold", 8)
        c.drawString(15 * mm, y, "Referencias")
        c.setFont("Helvetica", 8)
        for r in refs:
            y -= 4 * mm
            def rt(name: str, r: Any = r) -> str:
                return xmlread.text(r, name)

            c.drawString(15 * mm, y, f"{rt('TpoDocRef')} N {rt('FolioRef')} del {rt('FchRef')} "
                         f"{('CodRef ' + rt('CodRef')) if rt('CodRef') else ''} {rt('RazonRef')}"[:110])

    # Totals, bottom right.
    ty = 75 * mm
    c.setFont("Helvetica", 9)
    for label, tag in (("Monto neto", "MntNeto"), ("Monto exento", "MntExe"),
                       (f"IVA {t('Totales', 'TasaIVA')}%", "IVA"), ("Total", "MntTotal")):
        value = t("Totales", tag)
        if value or tag == "MntTotal":
            c.drawString(140 * mm, ty, label)
            c.drawRightString(width - 15 * mm, ty, _fmt(value or "0"))
            ty -= 5 * mm
    for imp in xmlread.findall(xmlread.find(enc, "Totales"), "ImptoReten"):
        c.drawString(140 * mm, ty, f"Impuesto {xmlread.text(imp, 'TipoImp')}")
        c.drawRightString(width - 15 * mm, ty, _fmt(xmlread.text(imp, "MontoImp")))
        ty -= 5 * mm

    # The TED: PDF417 (core), with SII's legend under it.
    ted = xmlread.find(doc, "TED")
    if ted is not None:
        from lxml import etree  # type: ignore[import-untyped]

        png = _api.barcode_png(etree.tostring(ted, encoding="unicode"), module_px=2, row_height=3)
        img = ImageReader(io.BytesIO(png))
        iw, ih = img.getSize()
        w = 75 * mm
        h = w * ih / iw
        c.drawImage(img, 15 * mm, 30 * mm, width=w, height=h)
        c.setFont("Helvetica", 7)
        c.drawCentredString(15 * mm + w / 2, 26 * mm, "Timbre Electronico SII")
        number, year = resolution
        c.drawCentredString(15 * mm + w / 2, 22 * mm, f"Res. {number} de {year} - Verifique documento: www.sii.cl")

    if cedible:
        box_y = 18 * mm
        c.rect(100 * mm, box_y, width - 115 * mm, 32 * mm)
        c.setFont("Helvetica", 7)
        for i, label in enumerate(("Nombre:", "R.U.T.:", "Fecha:", "Recinto:", "Firma:")):
            c.drawString(102 * mm, box_y + 27 * mm - i * 4.5 * mm, label)
        words, line = RECIBO.split(), ""
        lines = []
        for word in words:
            if len(line) + len(word) > 95:
                lines.append(line)
                line = word
            else:
                line = f"{line} {word}".strip()
        lines.append(line)
        text = c.beginText(102 * mm, box_y + 5.5 * mm)
        text.setFont("Helvetica", 5)
        for ln in lines:
            text.textLine(ln)
        c.drawText(text)
        c.setFont("Helvetica-Bold", 12)
        c.drawRightString(width - 15 * mm, 10 * mm, "CEDIBLE CON SU FACTURA" if doc_type == 52 else "CEDIBLE")
    c.showPage()
    c.save()
    return buf.getvalue()

