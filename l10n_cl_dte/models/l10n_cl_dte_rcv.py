"""The Registro de Compras y Ventas (RCV) of a period reconciled with Odoo's posted documents.

The register is downloaded from SII (dte_native.books.download_rcv, through the same transport
as the DTEs) or uploaded as the CSV SII's portal exports; either way the CSV is kept on the record
and parsed by dte_native.books.parse_rcv (SII's dialect, row-level errors), then compared by
dte_native.books.reconcile on (issuer RUT, type, folio); each finding becomes a line with
actions: open our document, create the missing vendor bill."""
import logging
import base64
import datetime

import dte_native
from dte_native import books as dte_books

from odoo import api, fields, models
from odoo.exceptions import UserError

from .l10n_cl_dte_book import _period_bounds, _rut, move_amounts

_logger = logging.getLogger(__name__)

REGISTERS = [('REGISTRO', 'Registered'), ('PENDIENTE', 'Pending'), ('NO_INCLUIR', 'Not included'),
             ('RECLAMADO', 'Claimed')]
FINDINGS = [
    ('missing_locally', 'Only at SII'),
    ('missing_in_rcv', 'Only in Odoo'),
    ('amount_mismatch', 'Amount differs'),
    ('tax_mismatch', 'Tax differs'),
    ('state_mismatch', 'State differs'),
    ('duplicate', 'Duplicate'),
]
# Not detailed in SII's RCV: boletas are summarised (RVD), guías are not tax documents.
NOT_IN_RCV = {35, 38, 39, 41, 50, 52}


class L10nClDteRcv(models.Model):
    """One RCV register of a period (ventas, or one compras state) and its reconciliation."""
    _name = 'l10n_cl_dte.rcv'
    _description = 'SII purchase and sales register (RCV) reconciliation'
    _inherit = ['mail.thread']
    _order = 'period desc, id desc'

    name = fields.Char(compute='_compute_name', store=True)
    company_id = fields.Many2one('res.company', required=True, default=lambda self: self.env.company, index=True)
    kind = fields.Selection([('venta', 'Sales (ventas)'), ('compra', 'Purchases (compras)')],
                            required=True, default='compra')
    register = fields.Selection(REGISTERS, default='REGISTRO', required=True,
                                help='The compras register the file holds (ventas only have REGISTRO).')
    period = fields.Char(required=True, default=lambda self: fields.Date.context_today(self).strftime('%Y-%m'),
                         help='Tax period YYYY-MM.')
    csv_file = fields.Binary('RCV file (CSV)', attachment=True, copy=False,
                             help='The CSV exported from SII\'s portal (Registro de Compras y Ventas > Descargar).')
    csv_filename = fields.Char(copy=False)
    source = fields.Selection([('upload', 'Uploaded file'), ('sii', 'Downloaded from SII')], default='upload',
                              readonly=True, copy=False)
    state = fields.Selection([('draft', 'Draft'), ('done', 'Reconciled')], default='draft', readonly=True)
    row_count = fields.Integer('RCV rows', readonly=True)
    error_count = fields.Integer('Rows rejected', readonly=True)
    parse_errors = fields.Text('Rows left out', readonly=True)
    parse_warnings = fields.Text('Warnings', readonly=True)
    line_ids = fields.One2many('l10n_cl_dte.rcv.line', 'rcv_id', readonly=True)
    finding_count = fields.Integer(compute='_compute_finding_count')
    tolerance = fields.Integer('Tolerance (CLP)', default=0,
                               help='Differences up to this many pesos are not reported.')

    @api.depends('kind', 'register', 'period')
    def _compute_name(self):
        for rcv in self:
            register = '' if rcv.kind == 'venta' else ' %s' % rcv.register
            rcv.name = 'RCV %s %s%s' % (rcv.kind or '', rcv.period or '', register)

    @api.depends('line_ids')
    def _compute_finding_count(self):
        for rcv in self:
            rcv.finding_count = len(rcv.line_ids)

    def write(self, vals):
        if 'csv_file' in vals and 'source' not in vals:
            vals = dict(vals, source='upload')
        return super().write(vals)

    # --- the register ----------------------------------------------------------------------

    def _parse(self):
        self.ensure_one()
        if not self.csv_file:
            raise UserError(self.env._('Upload the RCV CSV exported from SII first.'))
        data = base64.b64decode(self.with_context(bin_size=False).csv_file)
        parsed = dte_books.parse_rcv(data, state=self.register if self.kind == 'compra' else None)
        if parsed.register_kind and parsed.register_kind != self.kind:
            raise UserError(self.env._('This file is the %(found)s register, not %(expected)s.',
                                       found=parsed.register_kind, expected=self.kind))
        if not parsed.rows and parsed.errors:
            raise UserError(self.env._('No row of the file could be read:\n%s',
                                       '\n'.join(str(e) for e in parsed.errors[:20])))
        return parsed

    def _local_documents(self, rows):
        """Our posted documents of the period as the core's LocalDocument, and the moves by id."""
        self.ensure_one()
        start, end = _period_bounds(self.period)
        move_types = ('out_invoice', 'out_refund') if self.kind == 'venta' else ('in_invoice', 'in_refund')
        moves = self.env['account.move'].search([
            ('company_id', '=', self.company_id.id), ('state', '=', 'posted'), ('move_type', 'in', move_types),
            ('l10n_latam_document_type_id', '!=', False), ('date', '>=', start), ('date', '<=', end)])
        owner = _rut(self.company_id.vat)
        in_register = {(r.issuer_rut or owner, r.doc_type, r.folio) for r in rows}
        documents = []
        for move in moves:
            code = move.l10n_latam_document_type_id.code
            number = move.l10n_latam_document_number or ''
            if not code.isdigit() or not number.isdigit() or int(code) in NOT_IN_RCV:
                continue
            issuer = owner if self.kind == 'venta' else _rut(move.commercial_partner_id.vat)
            key = (issuer, int(code), int(number))
            # Only the registered compras are the whole picture; against the other registers
            # (pending, claimed...) a bill of ours is compared only when SII lists it there.
            if self.kind == 'compra' and self.register != 'REGISTRO' and key not in in_register:
                continue
            amounts = move_amounts(move)
            documents.append(dte_books.LocalDocument(
                issuer_rut=issuer, doc_type=key[1], folio=key[2], total=amounts['total'], net=amounts['net'],
                vat=amounts['vat'], exempt=amounts['exempt'],
                state='REGISTRO' if self.kind == 'compra' else '', reference=str(move.id)))
        return documents

    def _sii_download(self):
        """Downloads the register from SII (portal facade; the simulator's own when the company
        uses the simulator) and keeps SII's CSV on the record. Raises UserError on failure."""
        self.ensure_one()
        from dte_native import errors  # noqa: PLC0415
        company_rut = _rut(self.company_id.vat)
        if not company_rut:
            raise UserError(self.env._('Company %s has no valid RUT.', self.company_id.name))
        client = self.env['l10n_cl_dte.document'].new({'company_id': self.company_id.id})._sii_client()
        try:
            download = dte_books.download_rcv(
                client, company_rut, self.period, 'ventas' if self.kind == 'venta' else 'compras',
                state=self.register if self.kind == 'compra' else '')
        except errors.DteError as e:
            _logger.warning('RCV %s: download from SII failed: %s', self.name, e)
            raise UserError(self.env._('The RCV could not be downloaded from SII: %s', e)) from None
        self.write({
            # An empty register comes back as no CSV at all.
            'csv_file': base64.b64encode(download.csv) if download.csv else False,
            'csv_filename': 'RCV_%s_%s_%s.csv' % (self.kind, self.period, self.register) if download.csv else False,
            'source': 'sii',
        })
        return download

    def action_download_and_reconcile(self):
        for rcv in self:
            rcv._reconcile(rcv._sii_download().parsed)
        return True

    def action_reconcile(self):
        for rcv in self:
            rcv._reconcile(rcv._parse())
        return True

    def _reconcile(self, parsed):
        self.ensure_one()
        rcv = self
        owner = _rut(rcv.company_id.vat)
        if not owner:
            raise UserError(self.env._('Company %s has no valid RUT.', rcv.company_id.name))
        findings = dte_books.reconcile(parsed.rows, rcv._local_documents(parsed.rows), owner_rut=owner,
                                       tolerance=rcv.tolerance)
        rows_by_line = {r.line: r for r in parsed.rows}
        values = []
        for f in findings:
            row = rows_by_line.get(f.rcv_line)
            value = {
                'kind': f.kind, 'issuer_rut': f.issuer_rut, 'doc_type': f.doc_type, 'folio': str(f.folio),
                'field_name': f.field, 'ours': f.ours, 'sii': f.sii, 'message': f.message,
                'rcv_line': f.rcv_line,
                'move_id': int(f.reference) if f.reference.isdigit() else False,
            }
            if row:
                value.update(
                    counterpart_rut=row.counterpart_rut, counterpart_name=row.counterpart_name,
                    issue_date=row.issue_date or False, amount_exempt=row.exempt, amount_net=row.net,
                    amount_vat=row.vat, amount_total=row.total, rcv_state=row.state)
            values.append(value)
        rcv.line_ids.unlink()
        rcv.write({
            'line_ids': [(0, 0, v) for v in values],
            'row_count': len(parsed.rows),
            'error_count': len(parsed.errors),
            'parse_errors': '\n'.join(str(e) for e in parsed.errors) or False,
            'parse_warnings': '\n'.join(parsed.warnings) or False,
            'state': 'done',
        })
        rcv.message_post(body=self.env._(
            '%(rows)s RCV rows (%(errors)s rejected) reconciled: %(findings)s findings.',
            rows=len(parsed.rows), errors=len(parsed.errors), findings=len(values)))

    def action_open_findings(self):
        self.ensure_one()
        return {'type': 'ir.actions.act_window', 'name': self.name, 'res_model': 'l10n_cl_dte.rcv.line',
                'view_mode': 'list,form', 'domain': [('rcv_id', '=', self.id)]}


class L10nClDteRcvLine(models.Model):
    """One difference between the RCV and Odoo."""
    _name = 'l10n_cl_dte.rcv.line'
    _description = 'RCV reconciliation finding'
    _order = 'rcv_id, kind, doc_type, id'

    rcv_id = fields.Many2one('l10n_cl_dte.rcv', required=True, ondelete='cascade', index=True)
    company_id = fields.Many2one(related='rcv_id.company_id', store=True)
    rcv_kind = fields.Selection(related='rcv_id.kind')
    kind = fields.Selection(FINDINGS, 'Finding', required=True)
    issuer_rut = fields.Char('Issuer RUT')
    doc_type = fields.Integer('Document type')
    folio = fields.Char()  # up to 10 digits at SII: beyond a PostgreSQL integer
    field_name = fields.Char('Field')
    ours = fields.Char('Odoo')
    sii = fields.Char('SII')
    message = fields.Char()
    rcv_line = fields.Integer('Line in file')
    rcv_state = fields.Char('RCV register')
    counterpart_rut = fields.Char('Counterpart RUT')
    counterpart_name = fields.Char('Counterpart')
    issue_date = fields.Date()
    amount_exempt = fields.Integer('Exempt (SII)')
    amount_net = fields.Integer('Net (SII)')
    amount_vat = fields.Integer('VAT (SII)')
    amount_total = fields.Integer('Total (SII)')
    move_id = fields.Many2one('account.move', 'Odoo document', ondelete='set null')

    def action_open_document(self):
        self.ensure_one()
        if not self.move_id:
            raise UserError(self.env._('This finding has no Odoo document.'))
        return {'type': 'ir.actions.act_window', 'res_model': 'account.move', 'res_id': self.move_id.id,
                'view_mode': 'form'}

    def _supplier(self):
        """The supplier by RUT, created from the RCV's name when Odoo does not know it."""
        rut = dte_native.rut_normalize(self.issuer_rut)
        Partner = self.env['res.partner']
        partner = Partner.search([('vat', '=', rut), ('company_id', 'in', (False, self.company_id.id))], limit=1)
        if not partner:
            # Stored RUTs may carry dots or the CL prefix: compare normalised.
            candidates = Partner.search([('vat', 'ilike', rut.split('-')[0][-6:])])
            partner = candidates.filtered(lambda p: _rut(p.vat) == rut)[:1]
        if not partner:
            partner = Partner.create({
                'name': self.counterpart_name or rut, 'is_company': True, 'vat': rut,
                'country_id': self.env.ref('base.cl').id,
                'l10n_latam_identification_type_id': self.env.ref('l10n_cl.it_RUT').id,
                'l10n_cl_sii_taxpayer_type': '1',
            })
        return partner.commercial_partner_id

    def _purchase_tax(self):
        return self.env['account.tax'].search([
            ('company_id', 'in', self.company_id.parent_ids.ids), ('type_tax_use', '=', 'purchase'),
            ('l10n_cl_sii_code', '=', 14), ('amount', '=', 19), ('amount_type', '=', 'percent')], limit=1)

    def action_create_bill(self):
        """The vendor bill SII has and Odoo lacks, as a draft to check and post: supplier by RUT,
        document type and folio, date, one taxed line (net, IVA 19%) and one exempt line."""
        bills = self.env['account.move']
        for line in self:
            if line.kind != 'missing_locally' or line.rcv_kind != 'compra':
                raise UserError(self.env._('Only purchases SII has and Odoo lacks can become a bill.'))
            if line.move_id:
                bills |= line.move_id
                continue
            doc_type = self.env['l10n_latam.document.type'].search(
                [('code', '=', str(line.doc_type)), ('country_id.code', '=', 'CL')], limit=1)
            if not doc_type:
                raise UserError(self.env._('Unknown SII document type %s.', line.doc_type))
            journal = self.env['account.journal'].search([
                ('company_id', '=', line.company_id.id), ('type', '=', 'purchase')], limit=1)
            if not journal:
                raise UserError(self.env._('Company %s has no purchase journal.', line.company_id.name))
            invoice_lines = []
            if line.amount_net:
                tax = line._purchase_tax()
                if not tax:
                    raise UserError(self.env._('No purchase IVA 19%% tax in company %s.', line.company_id.name))
                invoice_lines.append((0, 0, {'name': self.env._('Taxed purchase (RCV)'), 'quantity': 1,
                                             'price_unit': line.amount_net, 'tax_ids': [(6, 0, tax.ids)]}))
            if line.amount_exempt:
                invoice_lines.append((0, 0, {'name': self.env._('Exempt purchase (RCV)'), 'quantity': 1,
                                             'price_unit': line.amount_exempt, 'tax_ids': [(5, 0, 0)]}))
            date = line.issue_date or datetime.date.today()
            bill = self.env['account.move'].with_company(line.company_id).create({
                'move_type': 'in_refund' if doc_type.internal_type == 'credit_note' else 'in_invoice',
                'partner_id': line._supplier().id,
                'journal_id': journal.id,
                'invoice_date': date,
                'date': date,
                'l10n_latam_document_type_id': doc_type.id,
                'l10n_latam_document_number': line.folio,
                'invoice_line_ids': invoice_lines,
            })
            bill.message_post(body=self.env._('Created from %(rcv)s, line %(line)s.',
                                              rcv=line.rcv_id.name, line=line.rcv_line))
            line.move_id = bill
            bills |= bill
        if len(bills) == 1:
            return {'type': 'ir.actions.act_window', 'res_model': 'account.move', 'res_id': bills.id,
                    'view_mode': 'form'}
        return {'type': 'ir.actions.act_window', 'res_model': 'account.move', 'view_mode': 'list,form',
                'domain': [('id', 'in', bills.ids)]}
