import base64
import datetime

import dte_native

from odoo import api, fields, models
from odoo.exceptions import UserError
from odoo.fields import Domain
from odoo.tools import float_compare, float_is_zero

# Document types this addon emits from journal entries.
DTE_TYPES = {'33', '34', '39', '41', '46', '52', '56', '61', '110', '111', '112'}
BOLETAS = {'39', '41'}
EXEMPT_TYPES = {'34', '41'}
EXPORT_TYPES = {'110', '111', '112'}
# Issued by the buyer (the company) from a purchase journal: factura de compra.
PURCHASE_TYPES = {'46'}
GUIA = '52'
ANONYMOUS_RUT = '66666666-6'
FOREIGN_RUT = '55555555-5'
CLP_SII_NAME = 'PESO CL'

# SII's codes of the additional taxes and retentions (CodImpAdic / TipoImp) that a line may carry
# (docs/INPUT.md). l10n_cl's tax codes are SII's, except the 18% sugary drinks, which l10n_cl
# files under 26 and SII under 271.
SII_TAX_CODES = {15, 17, 18, 19, 23, 24, 25, 26, 27, 271, 28, 30, 31, 32, 33, 34, 35, 36, 37, 38, 39, 41,
                 44, 45, 46, 47, 48, 49, 50, 51, 52, 53, 301, 321, 331, 341, 361, 371, 481}
# Specific taxes (fuel) have no rate: their amount comes from Odoo's tax lines.
SII_SPECIFIC_TAX_CODES = {28, 35, 51, 52}

# Incoterm code -> SII "cláusula de compraventa" (CodClauVenta, Aduana's table).
INCOTERM_SII_CODES = {
    'CIF': 1, 'CFR': 2, 'EXW': 3, 'FAS': 4, 'FOB': 5, 'DDP': 9, 'FCA': 10, 'CPT': 11, 'CIP': 12,
    'DAT': 17, 'DPU': 17, 'DAP': 18,
}
SII_OTHER_CLAUSE = 8

# The document's name in the SII box of the printed copy (SII's wording, in Spanish).
SII_TITLES = {
    '33': 'FACTURA ELECTRÓNICA', '34': 'FACTURA NO AFECTA O EXENTA ELECTRÓNICA',
    '39': 'BOLETA ELECTRÓNICA', '41': 'BOLETA EXENTA ELECTRÓNICA', '46': 'FACTURA DE COMPRA ELECTRÓNICA',
    '52': 'GUÍA DE DESPACHO ELECTRÓNICA', '56': 'NOTA DE DÉBITO ELECTRÓNICA', '61': 'NOTA DE CRÉDITO ELECTRÓNICA',
    '110': 'FACTURA DE EXPORTACIÓN ELECTRÓNICA', '111': 'NOTA DE DÉBITO DE EXPORTACIÓN ELECTRÓNICA',
    '112': 'NOTA DE CRÉDITO DE EXPORTACIÓN ELECTRÓNICA',
}

IND_TRASLADO = [
    ('1', '1 - Sale'), ('2', '2 - Sale to be confirmed'), ('3', '3 - Consignment'),
    ('4', '4 - Free delivery'), ('5', '5 - Internal transfer'), ('6', '6 - Other non-sale transfer'),
    ('7', '7 - Return'), ('8', '8 - Transfer for export'), ('9', '9 - Sale for export'),
]
TIPO_DESPACHO = [
    ('1', '1 - Buyer collects'), ('2', '2 - Issuer delivers to the buyer'),
    ('3', '3 - Issuer delivers to another site'),
]
SALE_MODES = [
    ('1', '1 - Firm sale (a firme)'), ('2', '2 - Sale under condition'), ('3', '3 - Free consignment'),
    ('4', '4 - Consignment with a firm minimum'), ('9', '9 - No payment'),
]
TRANSPORT_WAYS = [
    ('1', '1 - Sea, river and lake'), ('4', '4 - Air'), ('5', '5 - Post'), ('6', '6 - Rail'),
    ('7', '7 - Road'), ('8', '8 - Pipelines'), ('9', '9 - Power line'), ('10', '10 - Other'),
]


class AccountMove(models.Model):
    _inherit = 'account.move'

    l10n_cl_reference_ids = fields.One2many(
        'l10n_cl.account.invoice.reference', 'move_id', string='Reference Records', copy=False)
    l10n_cl_dte_document_ids = fields.One2many('l10n_cl_dte.document', 'move_id', readonly=True, copy=False)
    # Stored so that the related SII status fields can be recomputed (and searched) by the ORM.
    l10n_cl_dte_document_id = fields.Many2one(
        'l10n_cl_dte.document', compute='_compute_l10n_cl_dte_document_id', string='DTE', store=True)
    l10n_cl_dte_state = fields.Selection(related='l10n_cl_dte_document_id.state', string='SII Status')
    l10n_cl_dte_sii_message = fields.Text(related='l10n_cl_dte_document_id.sii_message', string='SII Answer')
    l10n_cl_dte_doc_code = fields.Char(related='l10n_latam_document_type_id.code', string='DTE type code')
    # Guía de despacho (52)
    l10n_cl_dte_ind_traslado = fields.Selection(
        IND_TRASLADO, 'Transfer Kind (IndTraslado)', default='1',
        help='Why the goods move (guías de despacho): required by SII on every guía.')
    l10n_cl_dte_tipo_despacho = fields.Selection(
        TIPO_DESPACHO, 'Dispatch (TipoDespacho)', help='Who carries the goods (guías de despacho).')
    l10n_cl_dte_vehicle_plate = fields.Char('Vehicle Plate (Patente)', size=8)
    l10n_cl_dte_carrier_id = fields.Many2one('res.partner', 'Carrier', help='Transport company (RUTTrans).')
    l10n_cl_dte_driver_name = fields.Char('Driver Name', size=30)
    l10n_cl_dte_driver_vat = fields.Char('Driver RUT')
    # Exports (110, 111, 112): customs data (Transporte.Aduana)
    l10n_cl_dte_sale_mode = fields.Selection(SALE_MODES, 'Sale Mode (CodModVenta)', default='1')
    l10n_cl_dte_transport_way = fields.Selection(TRANSPORT_WAYS, 'Transport Way (CodViaTransp)')
    l10n_cl_dte_port_loading_code = fields.Integer(
        'Port of Loading (CodPtoEmbarque)', help="SII/Aduana port code, e.g. 906 San Antonio, 901 Valparaíso.")
    l10n_cl_dte_port_unloading_code = fields.Integer(
        'Port of Unloading (CodPtoDesemb)', help="SII/Aduana code of the foreign port.")
    l10n_cl_dte_package_type_code = fields.Integer(
        'Package Type (CodTpoBultos)', help="Aduana's package code, e.g. 73 container, 17 pallet, 11 box.")
    l10n_cl_dte_package_count = fields.Integer('Packages (bultos)')
    l10n_cl_dte_package_marks = fields.Char('Package Marks', size=255)
    l10n_cl_dte_destination_country_id = fields.Many2one(
        'res.country', 'Destination Country', help="Default: the customer's country.")

    @api.depends('l10n_cl_dte_document_ids')
    def _compute_l10n_cl_dte_document_id(self):
        for move in self:
            move.l10n_cl_dte_document_id = move.l10n_cl_dte_document_ids.sorted('id', reverse=True)[:1]

    # --- which moves are DTEs ----------------------------------------------------------------

    def _l10n_cl_dte_applies(self):
        self.ensure_one()
        code = self.l10n_latam_document_type_id.code
        journal_type = 'purchase' if code in PURCHASE_TYPES else 'sale'
        return (
            self.company_id.account_fiscal_country_id.code == 'CL'
            and self.journal_id.type == journal_type
            and self.journal_id.l10n_cl_dte_enabled
            and self.l10n_latam_use_documents
            and code in DTE_TYPES
        )

    def _get_l10n_latam_documents_domain(self):
        # Guías de despacho (52, internal type stock_picking) are offered on DTE sale journals:
        # without the stock module a guía is issued from a journal entry of that type.
        domain = super()._get_l10n_latam_documents_domain()
        if (self.journal_id.type == 'sale' and self.journal_id.l10n_cl_dte_enabled
                and self.move_type == 'out_invoice'
                and self.company_id.account_fiscal_country_id.code == 'CL'):
            domain = Domain.OR([domain, [('country_id.code', '=', 'CL'), ('code', '=', GUIA)]])
        return domain

    @api.model
    def _l10n_cl_normalize_currency_name(self, currency_name):
        """SII's name of a currency (TpoMoneda, e.g. DOLAR USA); l10n_cl's report calls it."""
        currency = self.env['res.currency'].with_context(active_test=False).search(
            [('name', '=', currency_name)], limit=1)
        return (currency.l10n_cl_short_name or currency_name or '')[:15]

    @api.model
    def _format_length(self, text, text_len):
        """Text cut to SII's field length; l10n_cl's report calls it for exports."""
        return (text or '')[:text_len]

    # --- gathering the facade's input --------------------------------------------------------

    @staticmethod
    def _l10n_cl_dte_rut(vat):
        if vat and dte_native.rut_is_valid(vat):
            return dte_native.rut_normalize(vat)
        return vat or ''

    def _l10n_cl_dte_line_is_exempt(self, line):
        return not line.tax_ids.flatten_taxes_hierarchy().filtered(lambda t: t.l10n_cl_sii_code == 14)

    @api.model
    def _l10n_cl_dte_tax_code(self, tax):
        """SII's CodImpAdic of an additional tax or retention (None for IVA and plain taxes)."""
        sii = tax.l10n_cl_sii_code
        if not sii or sii == 14:
            return None
        if sii == 26 and float_compare(tax.amount, 18.0, precision_digits=2) == 0:
            return 271
        if sii not in SII_TAX_CODES:
            raise UserError(self.env._(
                'Tax %(tax)s has SII code %(code)s, which is not an additional tax or retention of SII\'s '
                'table: it cannot go on a DTE.', tax=tax.display_name, code=sii))
        return sii

    def _l10n_cl_dte_currency_mode(self):
        """'clp' (pesos), 'other' (a foreign-currency national document: pesos + OtraMoneda) or
        'export' (amounts in the document's currency)."""
        self.ensure_one()
        if self.l10n_latam_document_type_id.code in EXPORT_TYPES:
            return 'export'
        return 'clp' if self.currency_id == self.company_id.currency_id else 'other'

    def _l10n_cl_dte_exchange_rate(self):
        """Pesos per unit of the document's currency, as Odoo booked it."""
        self.ensure_one()
        if self.invoice_currency_rate:
            # Odoo's rate is units of the document currency per peso.
            return round(1 / self.invoice_currency_rate, 4)
        return round(self.currency_id._get_conversion_rate(
            self.currency_id, self.company_id.currency_id, self.company_id,
            self.invoice_date or fields.Date.context_today(self)), 4)

    def _l10n_cl_dte_line_amount(self, line, mode, boleta):
        """The line's amount as the DTE states it (net; gross on boletas): pesos, or the document
        currency on exports."""
        if boleta or mode == 'export':
            return line.price_total if boleta else line.price_subtotal
        if mode == 'clp':
            return line.price_subtotal
        # Foreign currency, national document: the pesos Odoo booked for this line.
        sign = -1 if line.price_subtotal < 0 else 1
        return sign * abs(line.balance)

    def _l10n_cl_dte_emisor(self, boleta, export):
        company = self.company_id
        issuer = company.partner_id
        emisor = {
            'RUTEmisor': self._l10n_cl_dte_rut(company.vat),
            'RznSoc': company.name,
            'GiroEmis': company.l10n_cl_activity_description or '',
            'DirOrigen': ' '.join(filter(None, [issuer.street, issuer.street2])),
            'CmnaOrigen': issuer.city or '',
        }
        if issuer.state_id:
            emisor['CiudadOrigen'] = issuer.state_id.name
        if not boleta:
            emisor['Acteco'] = company._l10n_cl_dte_acteco_list()
            if company.l10n_cl_dte_email:
                emisor['CorreoEmisor'] = company.l10n_cl_dte_email
            if company.phone:
                emisor['Telefono'] = company.phone[:20]
        return emisor

    def _l10n_cl_dte_receptor(self, boleta, export):
        commercial = self.partner_id.commercial_partner_id
        receiver_rut = self._l10n_cl_dte_rut(commercial.vat)
        if boleta:
            receptor = {'RUTRecep': receiver_rut or ANONYMOUS_RUT}
            if receiver_rut and receiver_rut != ANONYMOUS_RUT:
                receptor['RznSocRecep'] = commercial.name
            return receptor
        if export:
            chilean = bool(commercial.vat) and commercial.country_id.code == 'CL' \
                and dte_native.rut_is_valid(commercial.vat)
            receptor = {'RUTRecep': receiver_rut if chilean else FOREIGN_RUT,
                        'RznSocRecep': commercial.name or ''}
            if not chilean:
                foreign = {}
                if commercial.vat:
                    foreign['NumId'] = commercial.vat[:20]
                if commercial.country_id.l10n_cl_customs_code:
                    foreign['Nacionalidad'] = commercial.country_id.l10n_cl_customs_code[:3]
                if foreign:
                    receptor['Extranjero'] = foreign
            if commercial.l10n_cl_activity_description:
                receptor['GiroRecep'] = commercial.l10n_cl_activity_description
            street = ' '.join(filter(None, [commercial.street, commercial.street2]))
            if street:
                receptor['DirRecep'] = street
            if commercial.city:
                receptor['CiudadRecep'] = commercial.city
            if commercial.email:
                receptor['CorreoRecep'] = commercial.email
            return receptor
        receptor = {
            'RUTRecep': receiver_rut,
            'RznSocRecep': commercial.name or '',
            'GiroRecep': commercial.l10n_cl_activity_description or '',
            'DirRecep': ' '.join(filter(None, [commercial.street, commercial.street2])),
            'CmnaRecep': commercial.city or '',
        }
        if commercial.state_id:
            receptor['CiudadRecep'] = commercial.state_id.name
        if commercial.email:
            receptor['CorreoRecep'] = commercial.email
        return receptor

    def _l10n_cl_dte_transporte(self, code):
        """Transporte: carrier and destination of guías, customs data (Aduana) of exports."""
        transporte = {}
        if code == GUIA:
            if self.l10n_cl_dte_vehicle_plate:
                transporte['Patente'] = self.l10n_cl_dte_vehicle_plate
            if self.l10n_cl_dte_carrier_id.vat:
                transporte['RUTTrans'] = self._l10n_cl_dte_rut(self.l10n_cl_dte_carrier_id.vat)
            if self.l10n_cl_dte_driver_vat and self.l10n_cl_dte_driver_name:
                transporte['Chofer'] = {'RUTChofer': self._l10n_cl_dte_rut(self.l10n_cl_dte_driver_vat),
                                        'NombreChofer': self.l10n_cl_dte_driver_name}
            destination = self.partner_shipping_id or self.partner_id
            street = ' '.join(filter(None, [destination.street, destination.street2]))
            if street:
                transporte['DirDest'] = street
            if destination.city:
                transporte['CmnaDest'] = destination.city
            if destination.state_id:
                transporte['CiudadDest'] = destination.state_id.name
        elif code in EXPORT_TYPES:
            aduana = {}
            if self.l10n_cl_dte_sale_mode:
                aduana['CodModVenta'] = int(self.l10n_cl_dte_sale_mode)
            if self.invoice_incoterm_id:
                aduana['CodClauVenta'] = INCOTERM_SII_CODES.get(
                    (self.invoice_incoterm_id.code or '').upper(), SII_OTHER_CLAUSE)
                aduana['TotClauVenta'] = round(self.amount_total, 2)
            if self.l10n_cl_dte_transport_way:
                aduana['CodViaTransp'] = int(self.l10n_cl_dte_transport_way)
            if self.l10n_cl_dte_port_loading_code:
                aduana['CodPtoEmbarque'] = self.l10n_cl_dte_port_loading_code
            if self.l10n_cl_dte_port_unloading_code:
                aduana['CodPtoDesemb'] = self.l10n_cl_dte_port_unloading_code
            if self.l10n_cl_dte_package_count:
                aduana['TotBultos'] = self.l10n_cl_dte_package_count
                if self.l10n_cl_dte_package_type_code:
                    bultos = {'CodTpoBultos': self.l10n_cl_dte_package_type_code,
                              'CantBultos': self.l10n_cl_dte_package_count}
                    if self.l10n_cl_dte_package_marks:
                        bultos['Marcas'] = self.l10n_cl_dte_package_marks
                    aduana['TipoBultos'] = [bultos]
            receiver_code = self.partner_id.commercial_partner_id.country_id.l10n_cl_customs_code
            destination_code = (self.l10n_cl_dte_destination_country_id
                                or self.partner_id.commercial_partner_id.country_id).l10n_cl_customs_code
            if receiver_code and receiver_code.isdigit():
                aduana['CodPaisRecep'] = int(receiver_code)
            if destination_code and destination_code.isdigit():
                aduana['CodPaisDestin'] = int(destination_code)
            if aduana:
                transporte['Aduana'] = aduana
        return transporte

    def _l10n_cl_dte_specific_taxes(self):
        """Totales.ImptoReten stated from Odoo's tax lines, when a line carries a specific tax
        (fuel: no rate, SII needs the amount). None when every tax has a rate (dte_native computes)."""
        amounts, rates = {}, {}
        for tax_line in self.line_ids.filtered('tax_line_id'):
            code = self._l10n_cl_dte_tax_code(tax_line.tax_line_id)
            if code is None:
                continue
            amounts[code] = amounts.get(code, 0) + abs(tax_line.balance)
            if tax_line.tax_line_id.amount_type == 'percent':
                rates[code] = abs(tax_line.tax_line_id.amount)
        if not set(amounts) & SII_SPECIFIC_TAX_CODES:
            return None
        result = []
        for code, amount in sorted(amounts.items()):
            imp = {'TipoImp': code, 'MontoImp': round(amount)}
            if code in rates:
                imp['TasaImp'] = rates[code]
            result.append(imp)
        return result

    def _l10n_cl_dte_input(self, folio):
        """The invoice as dte_native's input document (SII element names, see docs/INPUT.md).
        Only data: no XML, totals are computed and checked by dte_native."""
        self.ensure_one()
        code = self.l10n_latam_document_type_id.code
        boleta = code in BOLETAS
        export = code in EXPORT_TYPES
        exempt_type = code in EXEMPT_TYPES or export
        mode = self._l10n_cl_dte_currency_mode()
        if mode == 'other' and boleta:
            raise UserError(self.env._('DTE %s: boletas are issued in Chilean pesos only.', code))
        issue_date = self.invoice_date or fields.Date.context_today(self)

        id_doc = {'TipoDTE': int(code), 'Folio': folio, 'FchEmis': issue_date.isoformat()}
        if boleta:
            id_doc['IndServicio'] = 3
        elif self.invoice_date_due and self.invoice_date_due > issue_date and code != GUIA:
            id_doc['FchVenc'] = self.invoice_date_due.isoformat()
        if code == GUIA:
            if not self.l10n_cl_dte_ind_traslado:
                raise UserError(self.env._('A guía de despacho needs its transfer kind (IndTraslado).'))
            id_doc['IndTraslado'] = int(self.l10n_cl_dte_ind_traslado)
            if self.l10n_cl_dte_tipo_despacho:
                id_doc['TipoDespacho'] = int(self.l10n_cl_dte_tipo_despacho)

        encabezado = {'IdDoc': id_doc, 'Emisor': self._l10n_cl_dte_emisor(boleta, export),
                      'Receptor': self._l10n_cl_dte_receptor(boleta, export)}
        transporte = self._l10n_cl_dte_transporte(code)
        if transporte:
            encabezado['Transporte'] = transporte
        if export:
            encabezado['Totales'] = {'TpoMoneda': self._l10n_cl_normalize_currency_name(self.currency_id.name)}
            if mode == 'export' and self.currency_id != self.company_id.currency_id:
                encabezado['OtraMoneda'] = {'TpoMoneda': CLP_SII_NAME, 'TpoCambio': self._l10n_cl_dte_exchange_rate()}
        elif mode == 'other':
            encabezado['OtraMoneda'] = {
                'TpoMoneda': self._l10n_cl_normalize_currency_name(self.currency_id.name),
                'TpoCambio': self._l10n_cl_dte_exchange_rate()}
        specific = None if export or boleta else self._l10n_cl_dte_specific_taxes()
        if specific:
            encabezado.setdefault('Totales', {})['ImptoReten'] = specific

        # Exports in a foreign currency have cents; everything else is whole pesos.
        digits = 2 if export and self.currency_id != self.company_id.currency_id else 0

        def money(value):
            return round(value, digits) if digits else round(value)

        details, global_discounts = [], []
        for line in self.invoice_line_ids.filtered(lambda l: l.display_type == 'product'):
            exempt = exempt_type or self._l10n_cl_dte_line_is_exempt(line)
            amount = self._l10n_cl_dte_line_amount(line, mode, boleta)
            if amount < 0:
                discount = {'TpoMov': 'D', 'GlosaDR': (line.name or line.product_id.name or '')[:45],
                            'TpoValor': '$', 'ValorDR': money(abs(amount))}
                if exempt and not exempt_type:
                    discount['IndExeDR'] = 1
                global_discounts.append(discount)
                continue
            if float_is_zero(line.quantity, precision_digits=6):
                continue
            net_factor = 1 - (line.discount or 0.0) / 100.0
            price = amount / (line.quantity * net_factor) if net_factor else line.price_unit
            price = round(price, 6)
            monto = money(amount)
            item_name = line.product_id.name or (line.name or '').split('\n')[0] or '-'
            detail = {'NmbItem': item_name[:80], 'QtyItem': round(line.quantity, 6), 'PrcItem': price,
                      'MontoItem': monto}
            if line.name and line.name != item_name:
                detail['DscItem'] = line.name[:1000]
            if line.product_uom_id:
                detail['UnmdItem'] = line.product_uom_id.name[:4]
            gross_line = money(line.quantity * price)
            if line.discount and gross_line > monto:
                detail['DescuentoMonto'] = money(gross_line - monto)
            if exempt and not exempt_type:
                detail['IndExe'] = 1
            if not boleta and not export:
                codes = [c for c in (self._l10n_cl_dte_tax_code(t)
                                     for t in line.tax_ids.flatten_taxes_hierarchy()) if c is not None]
                if len(codes) > 2:
                    raise UserError(self.env._(
                        'Line "%s" carries more than two additional taxes or retentions: SII allows two.',
                        item_name))
                if codes:
                    detail['CodImpAdic'] = codes
            details.append(detail)

        document = {'Encabezado': encabezado, 'Detalle': details}
        if global_discounts:
            document['DscRcgGlobal'] = global_discounts
        references = self._l10n_cl_dte_references()
        if references:
            document['Referencia'] = references
        return document

    def _l10n_cl_dte_references(self):
        self.ensure_one()
        refs = []
        origin = self.reversed_entry_id if self.move_type == 'out_refund' else self.env['account.move']
        if 'debit_origin_id' in self._fields and self.debit_origin_id:
            origin = self.debit_origin_id
        if origin and origin.l10n_latam_document_type_id:
            whole = origin.currency_id.compare_amounts(origin.amount_total, self.amount_total) == 0
            code_ref = 1 if whole and self.move_type == 'out_refund' else 3
            refs.append({
                'TpoDocRef': origin.l10n_latam_document_type_id.code,
                'FolioRef': origin.l10n_latam_document_number or '',
                'FchRef': (origin.invoice_date or origin.date).isoformat(),
                'CodRef': code_ref,
                'RazonRef': (self.ref or (self.env._('Cancels document') if code_ref == 1
                                         else self.env._('Corrects amounts')))[:90],
            })
        refs += self.l10n_cl_reference_ids._l10n_cl_dte_values()
        return refs

    # --- posting: precheck, folio, sign ------------------------------------------------------

    def _l10n_cl_dte_certificate(self):
        cert = self.env['l10n_cl_dte.certificate']._l10n_cl_dte_for_company(self.company_id)
        if not cert:
            raise UserError(self.env._(
                'Company %s has no valid signing certificate (missing, expired or not yet valid). '
                'Upload one in Accounting > Configuration > DTE Certificates.', self.company_id.name))
        return cert

    @staticmethod
    def _l10n_cl_dte_format_findings(findings):
        return '\n'.join('- %s (%s: %s)' % (f.message, f.code, f.field) if f.field else
                         '- %s (%s)' % (f.message, f.code) for f in findings)

    def _l10n_cl_dte_precheck(self, cert_native, today):
        """Everything that can be known before a folio is taken. Raises UserError."""
        self.ensure_one()
        caf = self.env['l10n_cl_dte.caf']._l10n_cl_dte_candidate(
            self.company_id, int(self.l10n_latam_document_type_id.code), today)
        if not caf:
            raise UserError(self.env._(
                'No folios left for %(type)s in company %(company)s: every CAF is exhausted or expired. '
                'Request a new CAF from SII and upload it in Accounting > Configuration > CAF.',
                type=self.l10n_latam_document_type_id.display_name, company=self.company_id.name))
        document = self._l10n_cl_dte_input(caf.next_folio)
        findings = dte_native.precheck(
            document, caf._l10n_cl_dte_load(), cert_native, today=today,
            keyring=self.env['l10n_cl_dte.caf']._l10n_cl_dte_keyring())
        errors = [f for f in findings if f.is_error]
        if errors:
            raise UserError(self.env._(
                'The document %(name)s cannot be issued as a DTE; fix these and post again '
                '(no folio was used):\n%(errors)s',
                name=self.partner_id.display_name, errors=self._l10n_cl_dte_format_findings(errors)))

    def _post(self, soft=True):
        today = fields.Date.context_today(self)
        dte_moves = self.filtered(
            lambda m: m.state == 'draft' and m._l10n_cl_dte_applies()
            and not (soft and m.auto_post != 'no' and m.date > today))
        certs = {}
        for move in dte_moves:
            company = move.company_id
            if company not in certs:
                cert = move._l10n_cl_dte_certificate()
                certs[company] = cert._l10n_cl_dte_load()
            move._l10n_cl_dte_precheck(certs[company], today)

        # Folios are taken under a row lock on their CAF, held until this transaction ends: a
        # rollback anywhere below gives them back.
        assigned = {}
        for move in dte_moves.sorted('id'):
            caf, folio = self.env['l10n_cl_dte.caf']._l10n_cl_dte_take_folio(
                move.company_id, int(move.l10n_latam_document_type_id.code), today)
            move.name = move._l10n_cl_get_formatted_sequence(folio)
            assigned[move] = (caf, folio)

        posted = super()._post(soft)

        for move, (caf, folio) in assigned.items():
            if move.state == 'posted':
                move._l10n_cl_dte_sign(caf, folio, certs[move.company_id], today)
        return posted

    def _l10n_cl_dte_sign(self, caf, folio, cert_native, today):
        self.ensure_one()
        document = self._l10n_cl_dte_input(folio)
        try:
            signed = dte_native.sign(
                document, caf._l10n_cl_dte_load(), cert_native, today=today,
                keyring=self.env['l10n_cl_dte.caf']._l10n_cl_dte_keyring())
        except dte_native.DteError as e:
            raise UserError(self.env._('The DTE could not be signed: %s', e)) from None
        mode = self._l10n_cl_dte_currency_mode()
        if mode == 'export':
            # Exports state the document's currency with cents; SignedDte.total is whole units.
            expected, tolerance = abs(self.amount_total), 1
        else:
            # A foreign-currency document books each line in pesos: Odoo's rounding of the IVA
            # line may differ from SII's rounding of the net total by one peso.
            expected, tolerance = round(abs(self.amount_total_signed)), (0 if mode == 'clp' else 1)
        if abs(signed.total - expected) > tolerance:
            raise UserError(self.env._(
                'The DTE total (%(dte)s) differs from the invoice total (%(invoice)s): check line prices '
                'and taxes (IVA 19%%, exempt lines and SII\'s additional taxes and retentions are supported).',
                dte=signed.total, invoice=expected))
        self.env['l10n_cl_dte.document'].sudo().create({
            'move_id': self.id,
            'company_id': self.company_id.id,
            'caf_id': caf.id,
            'doc_type': signed.doc_type,
            'folio': signed.folio,
            'issue_date': datetime.date.fromisoformat(signed.issue_date) if signed.issue_date else self.invoice_date,
            'amount_total': signed.total,
            'receiver_rut': signed.receiver_rut,
            'signed_xml_file': base64.b64encode(signed.xml),
            'signed_xml_filename': '%s.xml' % signed.id,
            'ted_xml': signed.ted_xml,
        })

    # --- after posting ---------------------------------------------------------------------

    def button_draft(self):
        for move in self:
            live = move.l10n_cl_dte_document_ids.filtered(lambda d: d.state != 'cancelled')
            if live.filtered(lambda d: d.state != 'rejected'):
                raise UserError(self.env._(
                    '%s is a signed DTE: its folio is used. Issue a credit note instead of resetting it to draft.',
                    move.display_name))
            # SII rejected it: the folio stays burned (annulled) and posting again takes a new one.
            live.sudo()._set_state('cancelled', self.env._(
                'Folio %(folio)s annulled after the SII rejection; the corrected document takes a new folio. '
                'Report the annulled folio to SII (Anulación de folios) if SII requires it.',
                folio=live[:1].folio))
        return super().button_draft()

    def action_l10n_cl_dte_new_folio(self):
        """Re-issues SII-rejected DTEs with new folios (the rejected folio stays annulled) and queues
        them for sending. To change the document first, reset it to draft instead."""
        moves = self.filtered(lambda m: m.l10n_cl_dte_state == 'rejected')
        if not moves:
            raise UserError(self.env._('Only documents rejected by SII are re-issued with a new folio.'))
        moves.button_draft()
        moves.action_post()
        moves.l10n_cl_dte_document_id.action_send_to_sii()
        return {
            'type': 'ir.actions.client', 'tag': 'display_notification',
            'params': {'type': 'success', 'sticky': False, 'next': {'type': 'ir.actions.act_window_close'},
                       'message': self.env._('New folio(s): %s. Queued for SII.',
                                             ', '.join(moves.mapped('name')))},
        }

    def action_l10n_cl_dte_send(self):
        docs = self.l10n_cl_dte_document_ids.filtered(lambda d: d.state in ('to_send', 'rejected'))
        if not docs:
            raise UserError(self.env._('There is no DTE waiting to be sent among the selected documents.'))
        docs.action_send_to_sii()
        return {
            'type': 'ir.actions.client', 'tag': 'display_notification',
            'params': {'type': 'info', 'sticky': False,
                       'message': self.env._('%s DTE(s) queued; they are sent to SII in the background.', len(docs))},
        }

    def _l10n_cl_dte_sii_title(self):
        self.ensure_one()
        code = self.l10n_latam_document_type_id.code
        return SII_TITLES.get(code) or (self.l10n_latam_document_type_id.name or '').upper()

    def _l10n_cl_dte_barcode_png_b64(self):
        """The TED's PDF417 stamp (PNG, base64) for the printed invoice."""
        self.ensure_one()
        doc = self.l10n_cl_dte_document_id
        if not doc.ted_xml:
            return False
        png = dte_native.barcode_png(doc.ted_xml, ecc_level=5, module_px=2, row_height=3)
        return base64.b64encode(png).decode('ascii')
