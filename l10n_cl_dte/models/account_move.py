import base64
import datetime

import dte_native

from odoo import api, fields, models
from odoo.exceptions import UserError
from odoo.tools import float_is_zero

# Document types this addon emits from invoices (exports 110-112 need customs data not gathered yet).
DTE_TYPES = {'33', '34', '39', '41', '56', '61'}
BOLETAS = {'39', '41'}
EXEMPT_TYPES = {'34', '41'}
ANONYMOUS_RUT = '66666666-6'


class AccountMove(models.Model):
    _inherit = 'account.move'

    l10n_cl_reference_ids = fields.One2many(
        'l10n_cl.account.invoice.reference', 'move_id', string='Reference Records', copy=False)
    l10n_cl_dte_document_ids = fields.One2many('l10n_cl_dte.document', 'move_id', readonly=True, copy=False)
    l10n_cl_dte_document_id = fields.Many2one(
        'l10n_cl_dte.document', compute='_compute_l10n_cl_dte_document_id', string='DTE')
    l10n_cl_dte_state = fields.Selection(related='l10n_cl_dte_document_id.state', string='SII Status')

    @api.depends('l10n_cl_dte_document_ids')
    def _compute_l10n_cl_dte_document_id(self):
        for move in self:
            move.l10n_cl_dte_document_id = move.l10n_cl_dte_document_ids.sorted('id', reverse=True)[:1]

    # --- which moves are DTEs ----------------------------------------------------------------

    def _l10n_cl_dte_applies(self):
        self.ensure_one()
        return (
            self.company_id.account_fiscal_country_id.code == 'CL'
            and self.journal_id.type == 'sale'
            and self.journal_id.l10n_cl_dte_enabled
            and self.l10n_latam_use_documents
            and self.l10n_latam_document_type_id.code in DTE_TYPES
        )

    # --- gathering the facade's input --------------------------------------------------------

    @staticmethod
    def _l10n_cl_dte_rut(vat):
        if vat and dte_native.rut_is_valid(vat):
            return dte_native.rut_normalize(vat)
        return vat or ''

    def _l10n_cl_dte_line_is_exempt(self, line):
        return not line.tax_ids.filtered(lambda t: t.l10n_cl_sii_code == 14)

    def _l10n_cl_dte_input(self, folio):
        """The invoice as dte_native's input document (SII element names, see docs/INPUT.md).
        Only data: no XML, totals are computed and checked by dte_native."""
        self.ensure_one()
        code = self.l10n_latam_document_type_id.code
        boleta = code in BOLETAS
        exempt_type = code in EXEMPT_TYPES
        company = self.company_id
        issuer = company.partner_id
        partner = self.partner_id
        commercial = partner.commercial_partner_id
        if self.currency_id != company.currency_id:
            raise UserError(self.env._('DTE %s: only documents in Chilean pesos are supported.', code))
        issue_date = self.invoice_date or fields.Date.context_today(self)

        id_doc = {'TipoDTE': int(code), 'Folio': folio, 'FchEmis': issue_date.isoformat()}
        if boleta:
            id_doc['IndServicio'] = 3
        elif self.invoice_date_due and self.invoice_date_due > issue_date:
            id_doc['FchVenc'] = self.invoice_date_due.isoformat()

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

        receiver_rut = self._l10n_cl_dte_rut(commercial.vat)
        if boleta:
            receptor = {'RUTRecep': receiver_rut or ANONYMOUS_RUT}
            if receiver_rut and receiver_rut != ANONYMOUS_RUT:
                receptor['RznSocRecep'] = commercial.name
        else:
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

        details, global_discounts = [], []
        for line in self.invoice_line_ids.filtered(lambda l: l.display_type == 'product'):
            exempt = exempt_type or self._l10n_cl_dte_line_is_exempt(line)
            # Boletas carry gross prices (IVA included), everything else net ones.
            amount = line.price_total if boleta else line.price_subtotal
            if amount < 0:
                discount = {'TpoMov': 'D', 'GlosaDR': (line.name or line.product_id.name or '')[:45],
                            'TpoValor': '$', 'ValorDR': round(abs(amount))}
                if exempt and not exempt_type:
                    discount['IndExeDR'] = 1
                global_discounts.append(discount)
                continue
            if float_is_zero(line.quantity, precision_digits=6):
                continue
            net_factor = 1 - (line.discount or 0.0) / 100.0
            price = amount / (line.quantity * net_factor) if net_factor else line.price_unit
            price = round(price, 6)
            monto = round(amount)
            item_name = line.product_id.name or (line.name or '').split('\n')[0] or '-'
            detail = {'NmbItem': item_name[:80], 'QtyItem': round(line.quantity, 6), 'PrcItem': price,
                      'MontoItem': monto}
            if line.name and line.name != item_name:
                detail['DscItem'] = line.name[:1000]
            if line.product_uom_id:
                detail['UnmdItem'] = line.product_uom_id.name[:4]
            gross_line = round(line.quantity * price)
            if line.discount and gross_line > monto:
                detail['DescuentoMonto'] = gross_line - monto
            if exempt and not exempt_type:
                detail['IndExe'] = 1
            details.append(detail)

        document = {
            'Encabezado': {'IdDoc': id_doc, 'Emisor': emisor, 'Receptor': receptor},
            'Detalle': details,
        }
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
        expected = round(abs(self.amount_total_signed))
        if signed.total != expected:
            raise UserError(self.env._(
                'The DTE total (%(dte)s) differs from the invoice total (%(invoice)s): check line prices '
                'and taxes (only IVA 19%% and exempt lines are supported).', dte=signed.total, invoice=expected))
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
            if move.l10n_cl_dte_document_ids.filtered(lambda d: d.state != 'cancelled'):
                raise UserError(self.env._(
                    '%s is a signed DTE: its folio is used. Issue a credit note instead of resetting it to draft.',
                    move.display_name))
        return super().button_draft()

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

    def _l10n_cl_dte_barcode_png_b64(self):
        """The TED's PDF417 stamp (PNG, base64) for the printed invoice."""
        self.ensure_one()
        doc = self.l10n_cl_dte_document_id
        if not doc.ted_xml:
            return False
        png = dte_native.barcode_png(doc.ted_xml, ecc_level=5, module_px=2, row_height=3)
        return base64.b64encode(png).decode('ascii')
