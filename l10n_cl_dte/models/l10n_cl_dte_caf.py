import base64
import datetime
import os

import dte_native

from odoo import api, fields, models
from odoo.exceptions import UserError, ValidationError
from odoo.tools import SQL

from . import dte_crypto

LOW_FOLIOS_THRESHOLD = 10
# The folio forecast looks at this many past days of use.
FORECAST_WINDOW_DAYS = 30
# Alert when the folios of a type last fewer days than this, or a CAF expires within it.
ALERT_DAYS = 14


class L10nClDteCaf(models.Model):
    """A folio authorization (CAF, "Código de Autorización de Folios") granted by SII.

    The whole AUTORIZACION file (which carries the range's private key RSASK) is stored
    Fernet-encrypted; only system administrators can read the field, signing uses sudo().
    ``next_folio`` is the folio the next posted document takes: it only ever moves inside a
    transaction holding the row lock (see _l10n_cl_dte_take_folio)."""
    _name = 'l10n_cl_dte.caf'
    _description = 'DTE folio authorization (CAF)'
    _inherit = ['mail.thread', 'mail.activity.mixin']
    _order = 'doc_type, folio_from'

    name = fields.Char(compute='_compute_name', store=True)
    company_id = fields.Many2one('res.company', required=True, default=lambda self: self.env.company, index=True)
    caf_file = fields.Binary('CAF file (XML)', compute='_compute_caf_file', store=False)
    caf_filename = fields.Char(compute='_compute_caf_file', store=False)
    caf_cipher = fields.Text(groups='base.group_system', copy=False)
    issuer_rut = fields.Char('Issuer RUT', readonly=True)
    doc_type = fields.Integer('Document Type Code', readonly=True, required=True)
    l10n_latam_document_type_id = fields.Many2one(
        'l10n_latam.document.type', 'Document Type', compute='_compute_document_type', store=True)
    folio_from = fields.Integer(readonly=True, required=True)
    folio_to = fields.Integer(readonly=True, required=True)
    next_folio = fields.Integer(readonly=True, required=True)
    folios_left = fields.Integer(compute='_compute_folios_left')
    idk = fields.Integer('SII key id (IDK)', readonly=True)
    authorized_on = fields.Date(readonly=True)
    expires_on = fields.Date(readonly=True)
    state = fields.Selection(
        [('in_use', 'In use'), ('low', 'Few folios left'), ('exhausted', 'Exhausted'), ('expired', 'Expired')],
        compute='_compute_state')
    # Folio forecast: a plain average, shown with its inputs so anyone can check it.
    daily_usage = fields.Float(
        'Folios used per day', compute='_compute_forecast', digits=(16, 2),
        help='Documents of this type signed in the last 30 days, divided by 30.')
    folios_ahead = fields.Integer(
        'Folios of earlier CAFs', compute='_compute_forecast',
        help='Unused folios of lower ranges of the same type: they are used before this CAF.')
    days_left = fields.Integer(
        'Days of folios left', compute='_compute_forecast',
        help='(folios of earlier CAFs + folios left in this one) / folios used per day. '
             'Empty when nothing was signed in the last 30 days.')
    forecast_exhausted_on = fields.Date(
        'Forecast: runs out on', compute='_compute_forecast',
        help='Today + days of folios left, or the expiry date when that comes first.')
    forecast_note = fields.Char('Forecast', compute='_compute_forecast')

    _range_ok = models.Constraint(
        'CHECK(folio_from >= 1 AND folio_from <= folio_to AND next_folio >= folio_from '
        'AND next_folio <= folio_to + 1)',
        'A CAF range must be well formed and its next folio inside it (or just past it when exhausted).')
    _range_uniq = models.Constraint(
        'UNIQUE(company_id, doc_type, folio_from)', 'This CAF is already loaded.')

    def _compute_caf_file(self):
        for caf in self:
            caf.caf_file = False
            caf.caf_filename = False

    @api.depends('doc_type', 'folio_from', 'folio_to')
    def _compute_name(self):
        for caf in self:
            caf.name = 'CAF %s: %s-%s' % (caf.doc_type, caf.folio_from, caf.folio_to)

    @api.depends('doc_type')
    def _compute_document_type(self):
        types = self.env['l10n_latam.document.type']
        for caf in self:
            caf.l10n_latam_document_type_id = types.search(
                [('code', '=', str(caf.doc_type)), ('country_id.code', '=', 'CL')], limit=1)

    @api.depends('next_folio', 'folio_to')
    def _compute_folios_left(self):
        for caf in self:
            caf.folios_left = max(0, caf.folio_to - caf.next_folio + 1)

    @api.depends('folios_left', 'expires_on')
    def _compute_state(self):
        today = fields.Date.context_today(self)
        for caf in self:
            if caf.expires_on and caf.expires_on < today:
                caf.state = 'expired'
            elif caf.folios_left <= 0:
                caf.state = 'exhausted'
            elif caf.folios_left <= LOW_FOLIOS_THRESHOLD:
                caf.state = 'low'
            else:
                caf.state = 'in_use'

    @api.model
    def _l10n_cl_dte_daily_usage(self, company, doc_type, today=None):
        """Average folios per day of (company, type) over the last FORECAST_WINDOW_DAYS days."""
        today = today or fields.Date.context_today(self)
        since = today - datetime.timedelta(days=FORECAST_WINDOW_DAYS)
        used = self.env['l10n_cl_dte.document'].sudo().search_count([
            ('company_id', '=', company.id), ('doc_type', '=', doc_type), ('issue_date', '>', since)])
        return used / FORECAST_WINDOW_DAYS

    @api.depends('next_folio', 'folio_to', 'expires_on')
    def _compute_forecast(self):
        today = fields.Date.context_today(self)
        usage = {}
        for caf in self:
            key = (caf.company_id, caf.doc_type)
            if key not in usage:
                usage[key] = self._l10n_cl_dte_daily_usage(caf.company_id, caf.doc_type, today) \
                    if caf.company_id and caf.doc_type else 0.0
            rate = usage[key]
            siblings = self.sudo().search([
                ('company_id', '=', caf.company_id.id), ('doc_type', '=', caf.doc_type),
                ('folio_from', '<', caf.folio_from or 0)]) if caf.id else self.browse()
            ahead = sum(s.folios_left for s in siblings if not (s.expires_on and s.expires_on < today))
            caf.daily_usage = rate
            caf.folios_ahead = ahead
            if rate > 0 and caf.folios_left > 0:
                days = int((ahead + caf.folios_left) / rate)
                on = today + datetime.timedelta(days=days)
                if caf.expires_on and caf.expires_on < on:
                    on = caf.expires_on
                    days = max(0, (on - today).days)
                caf.days_left = days
                caf.forecast_exhausted_on = on
                caf.forecast_note = self.env._(
                    '%(left)s folios (+%(ahead)s before) at %(rate).1f/day: about %(days)s days',
                    left=caf.folios_left, ahead=ahead, rate=rate, days=days)
            else:
                caf.days_left = 0
                caf.forecast_exhausted_on = caf.expires_on if caf.folios_left > 0 else False
                caf.forecast_note = self.env._('No use in the last 30 days') if caf.folios_left > 0 \
                    else self.env._('Exhausted')

    def _l10n_cl_dte_alert_reason(self, today=None):
        """Why this CAF needs attention (text), or False. Only CAFs still in use are looked at."""
        self.ensure_one()
        today = today or fields.Date.context_today(self)
        if self.folios_left <= 0 or (self.expires_on and self.expires_on < today):
            return False
        if self.expires_on and self.expires_on <= today + datetime.timedelta(days=ALERT_DAYS):
            return self.env._('%(name)s expires on %(date)s with %(left)s folios unused: request a new CAF.',
                              name=self.name, date=self.expires_on, left=self.folios_left)
        later = self.sudo().search([
            ('company_id', '=', self.company_id.id), ('doc_type', '=', self.doc_type),
            ('folio_from', '>', self.folio_from)])
        if later.filtered(lambda c: c.folios_left > LOW_FOLIOS_THRESHOLD
                          and not (c.expires_on and c.expires_on < today)):
            return False  # another range takes over; it gets its own alert
        rate = self.daily_usage
        if self.folios_left <= LOW_FOLIOS_THRESHOLD or (rate > 0 and self.days_left <= ALERT_DAYS):
            return self.env._(
                '%(name)s: %(left)s folios left (%(note)s). Request a new CAF from SII.',
                name=self.name, left=self.folios_left, note=self.forecast_note)
        return False

    # --- keys and upload -------------------------------------------------------------------

    @api.model
    def _l10n_cl_dte_keyring(self):
        """SII's CAF-signing keys shipped with dte_native, plus the folders listed in the system
        parameter ``l10n_cl_dte.trusted_sii_key_dirs`` (os.pathsep or comma separated)."""
        raw = self.env['ir.config_parameter'].sudo().get_param('l10n_cl_dte.trusted_sii_key_dirs') or ''
        dirs = [d.strip() for d in raw.replace(',', os.pathsep).split(os.pathsep) if d.strip()]
        return dte_native.SiiKeyring.default(extra_dirs=[d for d in dirs if os.path.isdir(d)])

    @api.model
    def _l10n_cl_dte_values_from_upload(self, data, company):
        try:
            caf = dte_native.Caf.parse(data)
            caf.verify(self._l10n_cl_dte_keyring())
        except (dte_native.CafError, dte_native.XmlSyntaxError) as e:
            raise UserError(self.env._('This CAF is not valid: %s', e)) from None
        info = caf.info
        if not info.has_private_key:
            raise UserError(self.env._('The CAF file holds no private key (RSASK): it cannot stamp documents.'))
        company_rut = company.vat and dte_native.rut_is_valid(company.vat) and dte_native.rut_normalize(company.vat)
        if not company_rut:
            raise UserError(self.env._('Set a valid RUT on company %s before loading CAFs.', company.name))
        if dte_native.rut_normalize(info.issuer_rut) != company_rut:
            raise UserError(self.env._(
                'This CAF was granted to RUT %(caf)s, not to %(company)s (%(rut)s).',
                caf=info.issuer_rut, company=company.name, rut=company_rut))
        if info.doc_type not in dte_native.supported_types():
            raise UserError(self.env._('Document type %s is not supported.', info.doc_type))
        return {
            'caf_cipher': dte_crypto.encrypt(data),
            'issuer_rut': info.issuer_rut,
            'doc_type': info.doc_type,
            'folio_from': info.folio_from,
            'folio_to': info.folio_to,
            'next_folio': info.folio_from,
            'idk': info.idk,
            'authorized_on': info.authorized_on or False,
            'expires_on': info.expires_on or False,
        }

    @api.model_create_multi
    def create(self, vals_list):
        self.check_access('create')
        for vals in vals_list:
            data = vals.pop('caf_file', None)
            vals.pop('caf_filename', None)
            if not data:
                raise UserError(self.env._('Upload the CAF file (XML) downloaded from SII.'))
            company = self.env['res.company'].browse(vals.get('company_id') or self.env.company.id)
            vals.update(self._l10n_cl_dte_values_from_upload(base64.b64decode(data), company))
        return super(L10nClDteCaf, self.sudo()).create(vals_list).sudo(False)

    def write(self, vals):
        if vals.get('caf_file'):
            raise UserError(self.env._('A loaded CAF cannot be replaced: upload it as a new CAF.'))
        vals = {k: v for k, v in vals.items() if k not in ('caf_file', 'caf_filename')}
        return super().write(vals)

    @api.constrains('company_id', 'doc_type', 'folio_from', 'folio_to')
    def _check_overlap(self):
        for caf in self:
            overlapping = self.sudo().search_count([
                ('id', '!=', caf.id), ('company_id', '=', caf.company_id.id), ('doc_type', '=', caf.doc_type),
                ('folio_from', '<=', caf.folio_to), ('folio_to', '>=', caf.folio_from)])
            if overlapping:
                raise ValidationError(self.env._(
                    'The folios %(a)s-%(b)s of type %(t)s overlap a CAF already loaded.',
                    a=caf.folio_from, b=caf.folio_to, t=caf.doc_type))

    def _l10n_cl_dte_load(self):
        """The dte_native.Caf with its private key. Server side only."""
        self.ensure_one()
        return dte_native.Caf.parse(dte_crypto.decrypt(self.env, self.sudo().caf_cipher))

    # --- folios ----------------------------------------------------------------------------

    @api.model
    def _l10n_cl_dte_candidate(self, company, doc_type, on_date=None):
        """The CAF the next document of this type would use (no lock): the lowest range with
        folios left that has not expired."""
        on_date = on_date or fields.Date.context_today(self)
        cafs = self.sudo().search([
            ('company_id', '=', company.id), ('doc_type', '=', doc_type)], order='folio_from')
        return cafs.filtered(lambda c: c.folios_left > 0 and not (c.expires_on and c.expires_on < on_date))[:1]

    @staticmethod
    def _l10n_cl_dte_take_folio_sql(cr, company_id, doc_type, on_date):
        """Takes the next folio of (company, type) on ``cr``: locks the CAF row (FOR UPDATE) and
        advances next_folio in the same transaction. The lock is held until that transaction
        ends, so concurrent posters queue on it; a rollback gives the folio back; under Odoo's
        REPEATABLE READ a poster that waited on a row another one changed gets a serialization
        failure and is retried by Odoo instead of reusing the folio.
        Returns (caf_id, folio) or None when no CAF has folios left."""
        cr.execute(SQL(
            """SELECT id, next_folio FROM l10n_cl_dte_caf
                WHERE company_id = %s AND doc_type = %s AND next_folio <= folio_to
                  AND (expires_on IS NULL OR expires_on >= %s)
             ORDER BY folio_from
                LIMIT 1
                  FOR UPDATE""", company_id, doc_type, on_date))
        row = cr.fetchone()
        if not row:
            return None
        caf_id, folio = row
        cr.execute(SQL("UPDATE l10n_cl_dte_caf SET next_folio = next_folio + 1 WHERE id = %s", caf_id))
        return caf_id, folio

    @api.model
    def _l10n_cl_dte_take_folio(self, company, doc_type, on_date=None):
        """(caf record, folio) within the current transaction; UserError when no CAF is left."""
        on_date = on_date or fields.Date.context_today(self)
        self.flush_model(['next_folio'])
        taken = self._l10n_cl_dte_take_folio_sql(self.env.cr, company.id, doc_type, on_date)
        if not taken:
            raise UserError(self.env._(
                'No folios left for document type %(t)s in company %(c)s: every CAF is exhausted or expired. '
                'Request a new CAF from SII and upload it in Accounting > Configuration > CAF.',
                t=doc_type, c=company.name))
        caf = self.sudo().browse(taken[0])
        caf.invalidate_recordset(['next_folio', 'folios_left', 'state'])
        return caf, taken[1]
