"""Books sent to SII: Libro de Ventas / Compras (IECV), Libro de Guías and the daily boleta
summary (ConsumoFolios / RVD). The model gathers the period's posted documents into
dte_native.books' input (XSD field names, docs/BOOKS.md), stores the signed XML the core returns
and the summary it computed, sends it through the same SII transport as the DTEs and polls it."""
import base64
import calendar
import csv
import datetime
import io
import logging
import re

import dte_native
from dte_native import books as dte_books

from odoo import api, fields, models
from odoo.exceptions import UserError, ValidationError
from odoo.tools import SQL

from .l10n_cl_dte_document import _can_commit

_logger = logging.getLogger(__name__)

KINDS = [
    ('sale', 'Sales book (Libro de Ventas)'),
    ('purchase', 'Purchase book (Libro de Compras)'),
    ('guide', 'Dispatch guide book (Libro de Guías)'),
    ('rvd', 'Boleta daily summary (RVD)'),
]
BOOK_TYPES = [('MENSUAL', 'Monthly'), ('ESPECIAL', 'Special (SII notification)'), ('RECTIFICA', 'Rectifying')]
STATES = [
    ('draft', 'Draft'),
    ('generated', 'Generated'),
    ('sent', 'Sent, waiting for SII'),
    ('accepted', 'Accepted'),
    ('rejected', 'Rejected'),
]
TRANSITIONS = {
    'draft': {'generated'},
    'generated': {'draft', 'sent', 'rejected'},
    'sent': {'accepted', 'rejected'},
    'accepted': set(),
    'rejected': {'draft'},
}
SII_STATE_MAP = {'accepted': 'accepted', 'accepted_with_objections': 'accepted', 'rejected': 'rejected'}
BOLETAS = (39, 41)
GUIA = 52
# Columns of the detail CSV export: the XSD names dte_native.books.entries_from_csv reads back
# (the TasaImp after CodImp is the other tax's rate).
CSV_COLUMNS = ['TpoDoc', 'NroDoc', 'FchDoc', 'RUTDoc', 'RznSoc', 'MntExe', 'MntNeto', 'TasaImp', 'MntIVA',
               'MntActivoFijo', 'MntIVAActivoFijo', 'CodIVANoRec', 'MntIVANoRec', 'IVAUsoComun', 'CodImp', 'TasaImp', 'MntImp',
               'MntTotal']


def _period_bounds(period):
    year, month = (int(p) for p in period.split('-'))
    return datetime.date(year, month, 1), datetime.date(year, month, calendar.monthrange(year, month)[1])


def _rut(vat):
    return dte_native.rut_normalize(vat) if vat and dte_native.rut_is_valid(vat) else ''


# l10n_cl's purchase VAT taxes (data/template/account.tax-cl.csv), all SII code 14, told apart by
# their template id or by the tax report tags of their tax lines: which book column their IVA goes to.
VAT_KIND_BY_TEMPLATE = {
    'iva_compra_no_recup': 'no_rec',
    'iva_compra_uso_comun': 'common',
    'iva_activo_fijo': 'asset',
    'iva_activo_fijo_uso_comun': 'asset_common',
    'iva_activo_fijo_uso_no_recup': 'asset_no_rec',
}
VAT_KIND_BY_TAG = {
    'IVA Pagado No Recuperable': 'no_rec',
    'IVA Pagado Compras Uso Común': 'common',
    'Compras Activo Fijo': 'asset',
    'Compras Activo Fijo Uso Común': 'asset_common',
    'Compras Activo Fijo No Recuperables': 'asset_no_rec',
}
# l10n_cl's fiscal positions afpt_non_recoverable_vat_<code> map the IVA to iva_compra_no_recup:
# their suffix is SII's CodIVANoRec (1, 2, 3, 4, 9; LibroCV_v10.xsd).
NO_REC_CODES = ('1', '2', '3', '4', '9')


def _template_name(record):
    """The chart template id of a record made from l10n_cl's template ('<company id>_name')."""
    xmlid = record.get_external_id().get(record.id) or ''
    name = xmlid.partition('.')[2]
    prefix = '%s_' % (record.company_id.id if 'company_id' in record._fields else '')
    return name[len(prefix):] if name.startswith(prefix) else name


def _vat_kind(tax, tags=None):
    """'vat' (recoverable IVA), 'no_rec', 'common', 'asset', 'asset_common' or 'asset_no_rec'."""
    kind = VAT_KIND_BY_TEMPLATE.get(_template_name(tax))
    if not kind:
        names = {t.name.lstrip('+-') for t in (tags if tags is not None else
                                                 tax.invoice_repartition_line_ids.tag_ids)}
        kind = next((VAT_KIND_BY_TAG[n] for n in names if n in VAT_KIND_BY_TAG), None)
    return kind or 'vat'


def no_rec_code(move, default='9'):
    """CodIVANoRec of a bill: from l10n_cl's fiscal position afpt_non_recoverable_vat_<code>."""
    position = move.fiscal_position_id
    if position:
        name = _template_name(position)
        if name.startswith('afpt_non_recoverable_vat_') and name.rsplit('_', 1)[1] in NO_REC_CODES:
            return int(name.rsplit('_', 1)[1])
    return int(default)


def move_amounts(move):
    """A posted move's book amounts in pesos, all positive: exempt, net, IVA (all of it), other
    taxes by SII code and total; for purchases also how the IVA splits (non-recoverable, shared
    use, fixed assets, by l10n_cl's taxes, see VAT_KIND_BY_TEMPLATE). Product lines with IVA (SII
    code 14) are net, lines without it exempt."""
    # Product and tax lines of a sale invoice / purchase refund are credits: flip them.
    sign = -1 if move.move_type in ('out_invoice', 'in_refund', 'out_receipt') else 1
    exempt = net = vat = asset_net = 0.0
    split = {'no_rec': 0.0, 'common': 0.0, 'asset_vat': 0.0}
    other = {}
    for line in move.line_ids:
        amount = line.balance * sign
        if line.display_type == 'product':
            vat_taxes = line.tax_ids.filtered(lambda t: t.l10n_cl_sii_code == 14)
            if vat_taxes:
                net += amount
                if any(_vat_kind(t).startswith('asset') for t in vat_taxes):
                    asset_net += amount
            else:
                exempt += amount
        elif line.tax_line_id:
            tax = line.tax_line_id
            code = tax.l10n_cl_sii_code
            if code == 14:
                vat += amount
                kind = _vat_kind(tax, line.tax_tag_ids)
                if kind in ('no_rec', 'asset_no_rec'):
                    split['no_rec'] += amount
                elif kind in ('common', 'asset_common'):
                    split['common'] += amount
                elif kind == 'asset':
                    split['asset_vat'] += amount
            elif code:
                # Retentions (negative rates, e.g. IVA retenido total, code 15) are credits on a
                # bill: the book shows them as positive amounts of their code.
                rate, total = other.get(code, (abs(tax.amount) if tax.amount_type == 'percent' else None, 0.0))
                other[code] = (rate, total + abs(amount))
    return {
        'exempt': round(exempt), 'net': round(net), 'vat': round(vat),
        'vat_no_rec': round(split['no_rec']), 'vat_common': round(split['common']),
        'asset_net': round(asset_net), 'asset_vat': round(split['asset_vat']),
        'other': {code: (rate, round(total)) for code, (rate, total) in other.items()},
        'total': round(abs(move.amount_total_signed)),
    }


class L10nClDteBook(models.Model):
    _name = 'l10n_cl_dte.book'
    _description = 'Chilean SII book (IECV, guías, RVD)'
    _inherit = ['mail.thread']
    _order = 'period desc, kind, id desc'

    name = fields.Char(compute='_compute_name', store=True)
    company_id = fields.Many2one('res.company', required=True, default=lambda self: self.env.company,
                                 index=True, readonly=True)
    kind = fields.Selection(KINDS, required=True, default='sale')
    period = fields.Char(required=True, help='Tax period YYYY-MM (PeriodoTributario).',
                         default=lambda self: fields.Date.context_today(self).strftime('%Y-%m'))
    day = fields.Date(help='The day a boleta daily summary (RVD) covers.')
    rvd_sequence = fields.Integer('Send sequence (SecEnvio)', default=1,
                                  help='RVD: 1 for the first send of the day, higher to replace it.')
    book_type = fields.Selection(BOOK_TYPES, 'Book type (TipoLibro)', required=True, default='MENSUAL')
    notification_folio = fields.Integer(
        'SII notification folio', help='FolioNotificacion of the SII request a special book answers.')
    rectification_code = fields.Char(
        'Rectification authorization code', help='CodAutRec: the code SII gave to rectify an accepted book.')
    state = fields.Selection(STATES, default='draft', required=True, readonly=True, tracking=True, index=True)
    detail_csv_file = fields.Binary(
        'Extra detail (CSV)', attachment=True, copy=False,
        help='Semicolon CSV with XSD column names (or LibreDTE\'s purchase layout) added to the gathered '
             'documents: paper documents, guías (the addon issues no 52), documents of other systems.')
    detail_csv_filename = fields.Char(copy=False)
    issues = fields.Text('CSV rows left out', readonly=True, copy=False)
    proportionality_factor = fields.Float(
        'Shared-use VAT factor (%)', digits=(5, 3),
        help='FctProp: the percent of shared-use VAT (IVA uso común) that is recoverable this period; '
             'the purchase book\'s TotCredIVAUsoComun is that percent of TotIVAUsoComun.')
    no_rec_default_code = fields.Selection(
        [('1', '1 - Purchases for exempt or non-taxed operations'), ('2', '2 - Registered out of term'),
         ('3', '3 - Rejected expenses'), ('4', '4 - Free deliveries received'), ('9', '9 - Other')],
        'Default non-recoverable VAT code', default='9', required=True,
        help='CodIVANoRec of non-recoverable VAT on bills whose fiscal position does not say it '
             '(l10n_cl\'s "Purchases - ..." non-recoverable VAT positions give codes 1, 2, 3, 4, 9).')
    segment_size = fields.Integer(
        'Segment size', default=lambda self: int(self.env['ir.config_parameter'].sudo().get_param(
            'l10n_cl_dte.book_segment_size', '5000')),
        help='A book with more detail rows than this is sent in segments (TipoEnvio PARCIAL ... FINAL). '
             '0 sends every book whole.')
    segment_ids = fields.One2many('l10n_cl_dte.book.segment', 'book_id', readonly=True, copy=False)
    segment_count = fields.Integer(compute='_compute_segment_count')
    line_ids = fields.One2many('l10n_cl_dte.book.line', 'book_id', readonly=True, copy=False)
    summary_ids = fields.One2many('l10n_cl_dte.book.summary', 'book_id', readonly=True, copy=False)
    document_count = fields.Integer(compute='_compute_totals', store=True)
    amount_exempt = fields.Integer('Exempt', compute='_compute_totals', store=True)
    amount_net = fields.Integer('Net', compute='_compute_totals', store=True)
    amount_vat = fields.Integer('VAT', compute='_compute_totals', store=True)
    amount_other = fields.Integer('Other taxes', compute='_compute_totals', store=True)
    amount_total = fields.Integer('Total', compute='_compute_totals', store=True)
    signed_xml_file = fields.Binary('Signed XML', attachment=True, readonly=True, copy=False)
    signed_xml_filename = fields.Char(readonly=True, copy=False)
    track_id = fields.Char('SII Track ID', readonly=True, copy=False)
    sii_message = fields.Text('Last SII answer', readonly=True, copy=False)
    next_poll = fields.Datetime(readonly=True, copy=False, index=True)
    poll_count = fields.Integer(readonly=True, copy=False)

    _monthly_uniq = models.UniqueIndex(
        "(company_id, kind, period) WHERE book_type = 'MENSUAL' AND kind != 'rvd'",
        'There is already a monthly book of this kind for this period.')
    _rvd_uniq = models.UniqueIndex(
        "(company_id, day, rvd_sequence) WHERE kind = 'rvd'",
        'There is already a boleta summary with this send sequence for this day.')

    @api.depends('segment_ids')
    def _compute_segment_count(self):
        for book in self:
            book.segment_count = len(book.segment_ids)

    @api.depends('kind', 'period', 'day', 'book_type')
    def _compute_name(self):
        labels = {'sale': 'Libro de Ventas', 'purchase': 'Libro de Compras', 'guide': 'Libro de Guías',
                  'rvd': 'RVD'}
        for book in self:
            when = book.day.isoformat() if book.kind == 'rvd' and book.day else book.period
            suffix = '' if book.book_type == 'MENSUAL' or book.kind == 'rvd' else ' %s' % book.book_type.lower()
            book.name = '%s %s%s' % (labels.get(book.kind, ''), when or '', suffix)

    @api.depends('summary_ids.doc_count', 'summary_ids.amount_total')
    def _compute_totals(self):
        for book in self:
            s = book.summary_ids
            book.document_count = sum(s.mapped('doc_count'))
            book.amount_exempt = sum(s.mapped('amount_exempt'))
            book.amount_net = sum(s.mapped('amount_net'))
            book.amount_vat = sum(s.mapped('amount_vat'))
            book.amount_other = sum(s.mapped('amount_other'))
            book.amount_total = sum(s.mapped('amount_total'))

    @api.constrains('period', 'kind', 'day', 'book_type', 'notification_folio', 'rectification_code')
    def _check_header(self):
        for book in self:
            if not re.fullmatch(r'\d{4}-(0[1-9]|1[0-2])', book.period or ''):
                raise ValidationError(self.env._('The period must be YYYY-MM, not "%s".', book.period))
            if book.kind == 'rvd' and not book.day:
                raise ValidationError(self.env._('A boleta daily summary needs its day.'))
            if book.kind == 'rvd' and book.day.strftime('%Y-%m') != book.period:
                raise ValidationError(self.env._('The day of a boleta summary must be in its period.'))
            if book.kind == 'guide' and book.book_type != 'ESPECIAL':
                raise ValidationError(self.env._('SII only takes the Libro de Guías as a special book.'))
            if book.book_type == 'ESPECIAL' and book.notification_folio <= 0:
                raise ValidationError(self.env._('A special book needs the folio of SII\'s notification.'))
            if book.book_type == 'RECTIFICA' and not (book.rectification_code or '').strip():
                raise ValidationError(self.env._('A rectifying book needs the authorization code SII gave.'))
            if not 0 <= book.proportionality_factor < 100:
                raise ValidationError(self.env._('The shared-use VAT factor is a percent below 100.'))
            if book.segment_size < 0:
                raise ValidationError(self.env._('The segment size cannot be negative.'))

    @api.onchange('day')
    def _onchange_day(self):
        if self.day:
            self.period = self.day.strftime('%Y-%m')

    @api.onchange('kind')
    def _onchange_kind(self):
        if self.kind == 'guide':
            self.book_type = 'ESPECIAL'
        elif self.kind == 'rvd':
            self.book_type = 'MENSUAL'

    # --- state machine ---------------------------------------------------------------------

    def _set_state(self, new_state, message=None):
        for book in self:
            if new_state == book.state:
                continue
            if new_state not in TRANSITIONS[book.state]:
                raise UserError(self.env._('Book %(name)s cannot go from %(old)s to %(new)s.',
                                           name=book.name, old=book.state, new=new_state))
            book.state = new_state
            if message:
                book.sii_message = message
                book.message_post(body=self.env._('%(state)s: %(message)s',
                                                  state=dict(STATES)[new_state], message=message))

    # --- gathering -------------------------------------------------------------------------

    def _moves(self):
        """The posted documents the book reports."""
        self.ensure_one()
        start, end = _period_bounds(self.period)
        if self.kind in ('sale', 'guide'):
            move_types = ('out_invoice', 'out_refund')
        elif self.kind == 'purchase':
            move_types = ('in_invoice', 'in_refund')
        else:
            return self.env['account.move']
        moves = self.env['account.move'].search([
            ('company_id', '=', self.company_id.id), ('state', '=', 'posted'),
            ('move_type', 'in', move_types), ('l10n_latam_document_type_id', '!=', False),
            ('date', '>=', start), ('date', '<=', end),
        ], order='date, id')
        moves = moves.filtered(lambda m: m.l10n_latam_document_type_id.code.isdigit())
        if self.kind == 'guide':
            return moves.filtered(lambda m: int(m.l10n_latam_document_type_id.code) == GUIA)
        # Boletas go in the daily summary (RVD) and guías in their own book, not in the IECV.
        return moves.filtered(lambda m: int(m.l10n_latam_document_type_id.code) not in BOLETAS + (GUIA,))

    def _cv_entry(self, move):
        amounts = move_amounts(move)
        partner = move.commercial_partner_id
        entry = {
            'TpoDoc': int(move.l10n_latam_document_type_id.code),
            'NroDoc': int(move.l10n_latam_document_number),
            'FchDoc': (move.invoice_date or move.date).isoformat(),
            'RUTDoc': _rut(partner.vat) or '55555555-5',
            'RznSoc': (partner.name or '')[:50],
            'MntTotal': amounts['total'],
        }
        if amounts['exempt']:
            entry['MntExe'] = amounts['exempt']
        if amounts['net'] or amounts['vat']:
            entry.update(MntNeto=amounts['net'], MntIVA=amounts['vat'], TasaImp=19)
        if amounts['other']:
            entry['OtrosImp'] = [dict({'CodImp': code, 'MntImp': total}, **({'TasaImp': rate} if rate else {}))
                                 for code, (rate, total) in sorted(amounts['other'].items())]
        if self.kind == 'purchase':
            # Only the recoverable IVA is MntIVA; the rest goes to its own column (Formato IECV).
            # The total is the core's (retentions, code 15, are shown and withheld).
            entry['MntIVA'] = amounts['vat'] - amounts['vat_no_rec'] - amounts['vat_common']
            if amounts['vat_no_rec']:
                entry['IVANoRec'] = [{'CodIVANoRec': no_rec_code(move, self.no_rec_default_code),
                                      'MntIVANoRec': amounts['vat_no_rec']}]
            if amounts['vat_common']:
                entry['IVAUsoComun'] = amounts['vat_common']
            if amounts['asset_net']:
                entry['MntActivoFijo'] = amounts['asset_net']
            if amounts['asset_vat']:
                entry['MntIVAActivoFijo'] = amounts['asset_vat']
            del entry['MntTotal']
        return entry

    def _guide_entry(self, move):
        amounts = move_amounts(move)
        partner = move.commercial_partner_id
        entry = {
            'Folio': int(move.l10n_latam_document_number),
            # IndTraslado of the guía: same codes as the book's TpoOper (1 = sale, 2-9 transfers).
            'TpoOper': int(getattr(move, 'l10n_cl_dte_ind_traslado', False) or 1),
            'FchDoc': (move.invoice_date or move.date).isoformat(),
            'RUTDoc': _rut(partner.vat) or '55555555-5',
            'RznSoc': (partner.name or '')[:50],
            'MntTotal': amounts['total'],
        }
        if amounts['net'] or amounts['vat']:
            entry.update(MntNeto=amounts['net'], TasaImp=19, IVA=amounts['vat'])
        return entry

    def _csv_detail(self, kind):
        """Entries of the uploaded detail CSV; rows the core rejects are reported, not lost."""
        self.ensure_one()
        if not self.detail_csv_file:
            return [], []
        data = base64.b64decode(self.with_context(bin_size=False).detail_csv_file)
        parsed = dte_books.entries_from_csv(data, kind)
        return parsed.detalle, [str(issue) for issue in parsed.issues]

    def _resolution(self):
        company = self.company_id
        if not company.l10n_cl_dte_resolution_date:
            raise UserError(self.env._('Set the SII resolution date of %s in the settings first.', company.name))
        return company.l10n_cl_dte_resolution_date.isoformat(), company.l10n_cl_dte_resolution_number or 0

    def _book_input(self):
        """(input dict for dte_native.books, moves in detail order, CSV issues)."""
        self.ensure_one()
        company_rut = _rut(self.company_id.vat)
        if not company_rut:
            raise UserError(self.env._('Company %s has no valid RUT.', self.company_id.name))
        fch_resol, nro_resol = self._resolution()
        if self.kind == 'rvd':
            docs = self.env['l10n_cl_dte.document'].search([
                ('company_id', '=', self.company_id.id), ('doc_type', 'in', BOLETAS),
                ('issue_date', '=', self.day)], order='doc_type, folio')
            documents, annulled = [], []
            for doc in docs:
                if doc.state == 'cancelled':
                    annulled.append({'TipoDTE': doc.doc_type, 'Folio': doc.folio})
                    continue
                item = {'TipoDTE': doc.doc_type, 'Folio': doc.folio, 'MntTotal': doc.amount_total}
                exempt = move_amounts(doc.move_id)['exempt'] if doc.doc_type == 39 else 0
                if exempt:
                    item['MntExe'] = exempt
                documents.append(item)
            summary = {'Caratula': {'RutEmisor': company_rut, 'FchResol': fch_resol, 'NroResol': nro_resol,
                                    'FchInicio': self.day.isoformat(), 'SecEnvio': self.rvd_sequence or 1},
                       'Documentos': documents, 'Anulados': annulled,
                       'Tipos': sorted({d.doc_type for d in docs} or {39})}
            return summary, docs, []
        caratula = {'RutEmisorLibro': company_rut, 'PeriodoTributario': self.period,
                    'FchResol': fch_resol, 'NroResol': nro_resol, 'TipoLibro': self.book_type}
        if self.book_type == 'ESPECIAL':
            caratula['FolioNotificacion'] = self.notification_folio
        if self.book_type == 'RECTIFICA':
            caratula['CodAutRec'] = self.rectification_code.strip()
        if self.kind == 'guide':
            moves = self._moves()
            extra, issues = self._csv_detail('guia')
            return {'Caratula': caratula, 'Detalle': [self._guide_entry(m) for m in moves] + extra}, moves, issues
        caratula.update(TipoOperacion='VENTA' if self.kind == 'sale' else 'COMPRA', TipoEnvio='TOTAL')
        moves = self._moves()
        extra, issues = self._csv_detail('cv')
        book_input = {'Caratula': caratula, 'Detalle': [self._cv_entry(m) for m in moves] + extra}
        if self.kind == 'purchase' and self.proportionality_factor:
            book_input['FctProp'] = self.proportionality_factor
        return book_input, moves, issues

    def _normalize(self, book_input):
        if self.kind == 'rvd':
            return dte_books.normalize_consumo_folios(book_input)
        if self.kind == 'guide':
            return dte_books.normalize_libro_guia(book_input)
        return dte_books.normalize_libro_cv(book_input)

    def _sign(self, book_input, cert):
        sign = {'rvd': dte_books.sign_consumo_folios, 'guide': dte_books.sign_libro_guia}.get(
            self.kind, dte_books.sign_libro_cv)
        schemas = dte_native.schemas() if dte_native.schema_dir() else None
        return sign(book_input, cert, schemas=schemas)

    def _sign_segments(self, book_input, cert):
        """The signed PARCIAL ... FINAL segments of a book bigger than segment_size (the core cuts
        it; the FINAL one carries the period's totals)."""
        sign = dte_books.sign_libro_guia_segments if self.kind == 'guide' else dte_books.sign_libro_cv_segments
        schemas = dte_native.schemas() if dte_native.schema_dir() else None
        return sign(book_input, cert, self.segment_size, schemas=schemas)

    @staticmethod
    def _summary_values(kind, normalized):
        if kind == 'rvd':
            return [{
                'doc_type': r['TipoDocumento'], 'doc_count': r.get('FoliosEmitidos', 0),
                'annulled_count': r.get('FoliosAnulados', 0), 'amount_exempt': r.get('MntExento', 0),
                'amount_net': r.get('MntNeto', 0), 'amount_vat': r.get('MntIva', 0),
                'amount_total': r.get('MntTotal', 0),
            } for r in normalized.get('Resumen', [])]
        if kind == 'guide':
            r = normalized.get('ResumenPeriodo') or {}
            moved = sum(t.get('CantGuia', 0) for t in r.get('TotTraslado', []))
            return [{
                'doc_type': 52, 'doc_count': r.get('TotGuiaVenta', 0) + moved,
                'annulled_count': r.get('TotFolAnulado', 0) + r.get('TotGuiaAnulada', 0),
                'amount_total': r.get('TotMntGuiaVta', 0) + sum(t.get('MntGuia', 0) for t in r.get('TotTraslado', [])),
            }]
        return [{
            'doc_type': r['TpoDoc'], 'doc_count': r.get('TotDoc', 0), 'annulled_count': r.get('TotAnulado', 0),
            'amount_exempt': r.get('TotMntExe', 0), 'amount_net': r.get('TotMntNeto', 0),
            'amount_vat': r.get('TotMntIVA', 0),
            'amount_vat_no_rec': sum(t.get('TotMntIVANoRec', 0) for t in r.get('TotIVANoRec', [])),
            'amount_vat_common': r.get('TotIVAUsoComun', 0),
            'amount_vat_common_credit': r.get('TotCredIVAUsoComun', 0),
            'amount_fixed_asset': r.get('TotMntActivoFijo', 0),
            'amount_fixed_asset_vat': r.get('TotMntIVAActivoFijo', 0),
            'amount_other': sum(t.get('TotMntImp', 0) for t in r.get('TotOtrosImp', [])),
            'amount_total': r.get('TotMntTotal', 0),
        } for r in normalized.get('ResumenPeriodo', [])]

    @staticmethod
    def _line_values(kind, normalized, moves):
        if kind == 'rvd':
            # `moves` are the boletas' l10n_cl_dte.document records here.
            by_folio = {(doc.doc_type, doc.folio): doc.move_id.id for doc in moves}
            return [{'move_id': by_folio.get((d['TipoDTE'], d['Folio']), False),
                     'doc_type': d['TipoDTE'], 'folio': str(d['Folio']), 'amount_exempt': d.get('MntExe', 0),
                     'amount_total': d['MntTotal']}
                    for d in normalized.get('Documentos', [])]
        values = []
        for index, d in enumerate(normalized.get('Detalle', [])):
            other = d.get('OtrosImp', [])
            values.append({
                'move_id': moves[index].id if index < len(moves) else False,
                'doc_type': d.get('TpoDoc', 52 if kind == 'guide' else 0),
                'folio': str(d.get('NroDoc', d.get('Folio', ''))),
                'date': d.get('FchDoc') or False,
                'partner_rut': d.get('RUTDoc', ''),
                'partner_name': d.get('RznSoc', ''),
                'annulled': bool(d.get('Anulado')),
                'amount_exempt': d.get('MntExe', 0), 'amount_net': d.get('MntNeto', 0),
                'amount_vat': d.get('MntIVA', d.get('IVA', 0)),
                'amount_vat_no_rec': sum(t.get('MntIVANoRec', 0) for t in d.get('IVANoRec', [])),
                'vat_no_rec_code': d['IVANoRec'][0]['CodIVANoRec'] if d.get('IVANoRec') else 0,
                'amount_vat_common': d.get('IVAUsoComun', 0),
                'amount_fixed_asset': d.get('MntActivoFijo', 0),
                'amount_fixed_asset_vat': d.get('MntIVAActivoFijo', 0),
                'amount_other': sum(t.get('MntImp', 0) for t in other),
                'other_tax_code': other[0]['CodImp'] if other else 0,
                'other_tax_rate': other[0].get('TasaImp', 0) if other else 0,
                'amount_total': d.get('MntTotal', 0),
            })
        return values

    def action_generate(self):
        """Gathers the documents, has dte_native compute, sign and validate the book, stores it."""
        self.check_access('write')
        for book in self:
            if book.state not in ('draft', 'generated'):
                raise UserError(self.env._('Book %s was sent already: make a rectifying book instead.', book.name))
            cert = self.env['l10n_cl_dte.certificate']._l10n_cl_dte_for_company(book.company_id)
            if not cert:
                raise UserError(self.env._('Company %s has no valid signing certificate.', book.company_id.name))
            book_input, moves, issues = book._book_input()
            segmented = (book.kind != 'rvd' and book.segment_size
                         and len(book_input.get('Detalle', [])) > book.segment_size)
            try:
                normalized = book._normalize(book_input)
                if segmented:
                    xmls = book._sign_segments(book_input, cert._l10n_cl_dte_load())
                else:
                    xml = book._sign(book_input, cert._l10n_cl_dte_load())
            except dte_native.DteError as e:
                raise UserError(self.env._('The book %(name)s cannot be built: %(error)s', name=book.name, error=e)) from None
            book.line_ids.unlink()
            book.summary_ids.unlink()
            book.segment_ids.unlink()
            base_name = re.sub(r'[^\w.-]+', '_', book.name)
            if segmented:
                book.write({'segment_ids': [(0, 0, {
                    'number': number, 'final': number == len(xmls),
                    'signed_xml_file': base64.b64encode(data),
                    'signed_xml_filename': '%s-%d.xml' % (base_name, number),
                }) for number, data in enumerate(xmls, start=1)]})
            book.write({
                # The RVD's normalized form has only the summary: its lines come from the input.
                'line_ids': [(0, 0, v) for v in self._line_values(
                    book.kind, book_input if book.kind == 'rvd' else normalized, moves)],
                'summary_ids': [(0, 0, v) for v in self._summary_values(book.kind, normalized)],
                # A segmented book's XML are its segments' (Segments tab).
                'signed_xml_file': False if segmented else base64.b64encode(xml),
                'signed_xml_filename': False if segmented else '%s.xml' % base_name,
                'track_id': False,
                'issues': '\n'.join(issues) or False,
                'sii_message': False,
            })
            book._set_state('generated')
        return True

    def action_reset_to_draft(self):
        for book in self:
            book._set_state('draft')
        return True

    def action_rectify(self):
        """A new rectifying book of the same kind and period: SII gives the authorization code
        (CodAutRec) the user types in."""
        self.ensure_one()
        return {'type': 'ir.actions.act_window', 'res_model': self._name, 'view_mode': 'form', 'target': 'current',
                'context': {'default_company_id': self.company_id.id, 'default_kind': self.kind,
                            'default_period': self.period, 'default_book_type': 'RECTIFICA',
                            'default_detail_csv_file': False}}

    # --- SII: exactly one method per operation ---------------------------------------------

    def _sii_client(self):
        # The client is made exactly as the DTEs' (company environment, simulator URL, certificate).
        return self.env['l10n_cl_dte.document'].new({'company_id': self.company_id.id})._sii_client()

    def _signed_xml(self):
        self.ensure_one()
        return base64.b64decode(self.with_context(bin_size=False).signed_xml_file)

    def _sii_upload(self):
        """Uploads the signed book (DTEUpload), or each of its segments not uploaded yet, in
        order. Errors are recorded on the book, never raised."""
        self.ensure_one()
        if self.segment_ids:
            return self._sii_upload_segments()
        from dte_native import errors  # noqa: PLC0415
        try:
            result = self._sii_client().upload(self._signed_xml(), _rut(self.company_id.vat),
                                               filename=self.signed_xml_filename or 'libro.xml')
        except errors.SiiRejected as e:
            self._set_state('rejected', str(e))
            return False
        except (errors.DteError, UserError, OSError) as e:
            _logger.warning('Book %s: upload to SII failed: %s', self.name, e)
            self.sii_message = str(e)
            self.message_post(body=self.env._('Upload to SII failed, try again: %s', e))
            return False
        if result.duplicate and not result.track_id:
            summary = self.env._('Already received by SII (duplicate upload).')
        else:
            summary = self.env._('Uploaded, track id %s.', result.track_id)
        self.track_id = result.track_id or self.track_id
        self.poll_count = 0
        self.next_poll = fields.Datetime.add(fields.Datetime.now(), seconds=60)
        self._set_state('sent', summary)
        return True

    def _sii_upload_segments(self):
        """Uploads the segments still 'generated', in order; stops at the first failure (a retry
        sends the rest). The book is 'sent' once every segment is, 'rejected' if SII refuses one."""
        from dte_native import errors  # noqa: PLC0415
        client = self._sii_client()
        for segment in self.segment_ids.sorted('number').filtered(lambda s: s.state == 'generated'):
            try:
                result = client.upload(segment._signed_xml(), _rut(self.company_id.vat),
                                       filename=segment.signed_xml_filename or 'libro.xml')
            except errors.SiiRejected as e:
                segment.write({'state': 'rejected', 'sii_message': str(e)})
                self._set_state('rejected', self.env._('Segment %(n)s: %(e)s', n=segment.number, e=e))
                return False
            except (errors.DteError, UserError, OSError) as e:
                _logger.warning('Book %s segment %s: upload to SII failed: %s', self.name, segment.number, e)
                segment.sii_message = str(e)
                self.sii_message = str(e)
                self.message_post(body=self.env._('Upload of segment %(n)s failed, send again: %(e)s',
                                                  n=segment.number, e=e))
                return False
            segment.write({'state': 'sent', 'track_id': result.track_id or segment.track_id,
                           'sii_message': self.env._('Uploaded, track id %s.', result.track_id)})
            if _can_commit():
                self.env.cr.commit()  # pylint: disable=invalid-commit
        self.track_id = self.segment_ids.sorted('number')[-1:].track_id
        self.poll_count = 0
        self.next_poll = fields.Datetime.add(fields.Datetime.now(), seconds=60)
        self._set_state('sent', self.env._('%(count)s segments uploaded, track ids %(ids)s.',
                                           count=len(self.segment_ids),
                                           ids=', '.join(self.segment_ids.sorted('number').mapped('track_id'))))
        return True

    def _sii_poll_segments(self):
        """QueryEstUp of every segment still waiting; the book is accepted when all are, rejected
        when SII rejects one."""
        from dte_native import errors  # noqa: PLC0415
        client = self._sii_client()
        for segment in self.segment_ids.sorted('number').filtered(lambda s: s.state == 'sent' and s.track_id):
            try:
                status = client.envelope_status(segment.track_id, _rut(self.company_id.vat), kind='book')
            except (errors.DteError, UserError, OSError) as e:
                _logger.warning('Book %s segment %s: SII status query failed, will retry: %s',
                                self.name, segment.number, e)
                segment.sii_message = str(e)
                continue
            summary = ('%s (%s)' % (status.glosa or status.state, status.sii_state)).strip()
            new_state = SII_STATE_MAP.get(status.state)
            segment.write({'sii_message': summary,
                           'state': new_state if status.final and new_state else segment.state})
        states = set(self.segment_ids.mapped('state'))
        if 'rejected' in states:
            bad = self.segment_ids.filtered(lambda s: s.state == 'rejected').sorted('number')[0]
            self._set_state('rejected', self.env._('Segment %(n)s: %(m)s', n=bad.number, m=bad.sii_message))
        elif states == {'accepted'}:
            self._set_state('accepted', self.env._('All %(count)s segments accepted: %(m)s',
                                                   count=len(self.segment_ids),
                                                   m=self.segment_ids.sorted('number')[-1].sii_message))
        else:
            self.sii_message = '; '.join('%s: %s' % (s.number, s.sii_message or s.state)
                                         for s in self.segment_ids.sorted('number'))
            self._schedule_next_poll()
        return True

    def _sii_poll_status(self):
        """QueryEstUp of the book's track id, read as a book's answer (EPR without per-type
        counts, LOK, LRH...); a final answer moves the book."""
        self.ensure_one()
        if self.segment_ids:
            return self._sii_poll_segments()
        from dte_native import errors  # noqa: PLC0415
        try:
            status = self._sii_client().envelope_status(self.track_id, _rut(self.company_id.vat), kind='book')
        except errors.SiiMalformedAnswer as e:
            # A state the transport does not know: shown on the book; a DTE manager can confirm
            # the outcome from SII's portal (Mark accepted / rejected).
            self.sii_message = str(e)
            self._schedule_next_poll()
            return False
        except (errors.DteError, UserError, OSError) as e:
            _logger.warning('Book %s: SII status query failed, will retry: %s', self.name, e)
            self.sii_message = str(e)
            self._schedule_next_poll()
            return False
        summary = ('%s (%s)' % (status.glosa or status.state, status.sii_state)).strip()
        new_state = SII_STATE_MAP.get(status.state)
        if status.final and new_state:
            self._set_state(new_state, summary)
        else:
            self.sii_message = summary
            self._schedule_next_poll()
        return True

    def _schedule_next_poll(self):
        self.poll_count += 1
        self.next_poll = fields.Datetime.add(fields.Datetime.now(), seconds=min(60 * (2 ** self.poll_count), 6 * 3600))

    def _lock_rows(self, states):
        """This book's row locked for the transaction (None when another worker holds it)."""
        self.flush_recordset()
        self.env.cr.execute(SQL('SELECT id FROM l10n_cl_dte_book WHERE id IN %s AND state IN %s '
                                'FOR UPDATE SKIP LOCKED', tuple(self.ids), tuple(states)))
        return self.browse([r[0] for r in self.env.cr.fetchall()])

    def action_send_to_sii(self):
        for book in self:
            if book.state != 'generated':
                raise UserError(self.env._('Generate the book %s before sending it.', book.name))
        for book in self._lock_rows(['generated']):
            book._sii_upload()
            if _can_commit():
                self.env.cr.commit()  # pylint: disable=invalid-commit
        return True

    def action_check_status(self):
        for book in self._lock_rows(['sent']).filtered('track_id'):
            book._sii_poll_status()
            if _can_commit():
                self.env.cr.commit()  # pylint: disable=invalid-commit
        return True

    def action_mark_accepted(self):
        """For answers the transport cannot classify (a state SII added): confirmed by hand
        from SII's portal."""
        self._set_state('accepted', self.env._('Marked accepted by %s.', self.env.user.name))
        return True

    def action_mark_rejected(self):
        self._set_state('rejected', self.env._('Marked rejected by %s.', self.env.user.name))
        return True

    @api.model
    def _cron_poll_status(self, limit=20):
        now = fields.Datetime.now()
        books = self.search([('state', '=', 'sent'), ('track_id', '!=', False),
                             '|', ('next_poll', '=', False), ('next_poll', '<=', now)], limit=limit, order='id')
        polled = 0
        for book in books:
            if book._lock_rows(['sent']):
                book._sii_poll_status()
                polled += 1
                if _can_commit():
                    self.env.cr.commit()  # pylint: disable=invalid-commit
        return polled

    # --- monthly preparation ---------------------------------------------------------------

    @api.model
    def _cron_prepare_previous_month(self, today=None):
        """Draft sales and purchase books of the previous month for every Chilean company that
        has none yet (idempotent: the unique index keeps one monthly book per kind and period)."""
        today = today or fields.Date.context_today(self)
        period = (today.replace(day=1) - datetime.timedelta(days=1)).strftime('%Y-%m')
        companies = self.env['res.company'].search([('account_fiscal_country_id.code', '=', 'CL')])
        created = self.browse()
        for company in companies:
            existing = set(self.with_context(active_test=False).search([
                ('company_id', '=', company.id), ('period', '=', period), ('book_type', '=', 'MENSUAL'),
                ('kind', 'in', ('sale', 'purchase'))]).mapped('kind'))
            for kind in ('sale', 'purchase'):
                if kind not in existing:
                    created |= self.create({'company_id': company.id, 'kind': kind, 'period': period})
        return created

    # --- exports ---------------------------------------------------------------------------

    def _export_rows(self):
        self.ensure_one()
        rows = []
        for line in self.line_ids:
            rows.append([line.doc_type, line.folio, line.date.isoformat() if line.date else '', line.partner_rut or '',
                         line.partner_name or '', line.amount_exempt or '', line.amount_net or '',
                         19 if line.amount_net else '', line.amount_vat or '',
                         line.amount_fixed_asset or '', line.amount_fixed_asset_vat or '', line.vat_no_rec_code or '', line.amount_vat_no_rec or '',
                         line.amount_vat_common or '', line.other_tax_code or '', line.other_tax_rate or '', line.amount_other or '',
                         line.amount_total])
        return rows

    def _attach_export(self, name, data, mimetype):
        attachment = self.env['ir.attachment'].create({
            'name': name, 'raw': data, 'mimetype': mimetype, 'res_model': self._name, 'res_id': self.id})
        return {'type': 'ir.actions.act_url', 'url': '/web/content/%s?download=true' % attachment.id,
                'target': 'download'}

    def _export_csv_bytes(self):
        out = io.StringIO()
        writer = csv.writer(out, delimiter=';', lineterminator='\n')
        writer.writerow(CSV_COLUMNS)
        writer.writerows(self._export_rows())
        return out.getvalue().encode('utf-8')

    def _export_xlsx_bytes(self):
        import xlsxwriter  # noqa: PLC0415 (an Odoo dependency; only needed here)
        out = io.BytesIO()
        workbook = xlsxwriter.Workbook(out, {'in_memory': True})
        bold = workbook.add_format({'bold': True})
        summary = workbook.add_worksheet('Resumen')
        summary.write_row(0, 0, [self.name, self.company_id.name, self.company_id.vat or ''], bold)
        header = ['TpoDoc', 'TotDoc', 'TotAnulado', 'TotMntExe', 'TotMntNeto', 'TotMntIVA', 'TotOtrosImp',
                  'TotMntTotal']
        summary.write_row(2, 0, header, bold)
        for row, s in enumerate(self.summary_ids, start=3):
            summary.write_row(row, 0, [s.doc_type, s.doc_count, s.annulled_count, s.amount_exempt, s.amount_net,
                                       s.amount_vat, s.amount_other, s.amount_total])
        detail = workbook.add_worksheet('Detalle')
        detail.write_row(0, 0, CSV_COLUMNS, bold)
        for row, values in enumerate(self._export_rows(), start=1):
            detail.write_row(row, 0, values)
        workbook.close()
        return out.getvalue()

    def action_export_csv(self):
        self.ensure_one()
        return self._attach_export('%s.csv' % self.name, self._export_csv_bytes(), 'text/csv')

    def action_export_xlsx(self):
        self.ensure_one()
        return self._attach_export(
            '%s.xlsx' % self.name, self._export_xlsx_bytes(),
            'application/vnd.openxmlformats-officedocument.spreadsheetml.sheet')

    def action_download_xml(self):
        self.ensure_one()
        return {'type': 'ir.actions.act_url', 'target': 'download',
                'url': '/web/content/l10n_cl_dte.book/%s/signed_xml_file/%s?download=true'
                       % (self.id, self.signed_xml_filename or 'libro.xml')}


class L10nClDteBookSummary(models.Model):
    """One line of the book's summary (ResumenPeriodo / Resumen) per document type, as the core
    computed it."""
    _name = 'l10n_cl_dte.book.summary'
    _description = 'SII book summary per document type'
    _order = 'book_id, doc_type'

    book_id = fields.Many2one('l10n_cl_dte.book', required=True, ondelete='cascade', index=True)
    company_id = fields.Many2one(related='book_id.company_id', store=True)
    doc_type = fields.Integer('Document type', required=True)
    doc_count = fields.Integer('Documents')
    annulled_count = fields.Integer('Annulled')
    amount_exempt = fields.Integer('Exempt')
    amount_net = fields.Integer('Net')
    amount_vat = fields.Integer('VAT')
    amount_vat_no_rec = fields.Integer('Non-recoverable VAT')
    amount_vat_common = fields.Integer('Shared-use VAT')
    amount_vat_common_credit = fields.Integer('Shared-use VAT credit')
    amount_fixed_asset = fields.Integer('Fixed assets (net)')
    amount_fixed_asset_vat = fields.Integer('Fixed assets VAT')
    amount_other = fields.Integer('Other taxes')
    amount_total = fields.Integer('Total')


class L10nClDteBookSegment(models.Model):
    """One segment (TipoEnvio PARCIAL / FINAL) of a book too big for one upload, sent and polled
    on its own."""
    _name = 'l10n_cl_dte.book.segment'
    _description = 'SII book segment'
    _order = 'book_id, number'

    book_id = fields.Many2one('l10n_cl_dte.book', required=True, ondelete='cascade', index=True)
    company_id = fields.Many2one(related='book_id.company_id', store=True)
    number = fields.Integer('Segment (NroSegmento)', required=True)
    final = fields.Boolean('FINAL', help='The last segment: it also carries the period\'s totals.')
    state = fields.Selection([('generated', 'Generated'), ('sent', 'Sent, waiting for SII'),
                              ('accepted', 'Accepted'), ('rejected', 'Rejected')],
                             default='generated', required=True, readonly=True)
    signed_xml_file = fields.Binary('Signed XML', attachment=True, readonly=True)
    signed_xml_filename = fields.Char(readonly=True)
    track_id = fields.Char('SII Track ID', readonly=True)
    sii_message = fields.Text('Last SII answer', readonly=True)

    def _signed_xml(self):
        self.ensure_one()
        return base64.b64decode(self.with_context(bin_size=False).signed_xml_file)


class L10nClDteBookLine(models.Model):
    """One document of the book's detail, as sent to SII."""
    _name = 'l10n_cl_dte.book.line'
    _description = 'SII book detail line'
    _order = 'book_id, id'

    book_id = fields.Many2one('l10n_cl_dte.book', required=True, ondelete='cascade', index=True)
    company_id = fields.Many2one(related='book_id.company_id', store=True)
    move_id = fields.Many2one('account.move', ondelete='set null', index='btree_not_null')
    doc_type = fields.Integer('Document type')
    folio = fields.Char()  # suppliers' folios reach 10 digits: beyond a PostgreSQL integer
    date = fields.Date()
    partner_rut = fields.Char('RUT')
    partner_name = fields.Char('Name')
    annulled = fields.Boolean()
    amount_exempt = fields.Integer('Exempt')
    amount_net = fields.Integer('Net')
    amount_vat = fields.Integer('VAT')
    amount_vat_no_rec = fields.Integer('Non-recoverable VAT')
    vat_no_rec_code = fields.Integer('Non-recoverable VAT code')
    amount_vat_common = fields.Integer('Shared-use VAT')
    amount_fixed_asset = fields.Integer('Fixed assets (net)')
    amount_fixed_asset_vat = fields.Integer('Fixed assets VAT')
    amount_other = fields.Integer('Other taxes')
    other_tax_code = fields.Integer('Other tax code')
    other_tax_rate = fields.Float('Other tax rate')
    amount_total = fields.Integer('Total')
