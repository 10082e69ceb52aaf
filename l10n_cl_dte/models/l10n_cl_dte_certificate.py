import base64
import datetime

import dte_native

from odoo import api, fields, models
from odoo.exceptions import UserError, ValidationError

from . import dte_crypto

EXPIRY_WARNING_DAYS = 30


def _parse_utc(text):
    """CertificateInfo times ('2026-01-31T12:00:00Z' or without Z) -> naive UTC datetime."""
    if not text:
        return False
    text = text.rstrip('Z').replace(' ', 'T')
    try:
        return datetime.datetime.fromisoformat(text[:19])
    except ValueError:
        return False


class L10nClDteCertificate(models.Model):
    """The signer's certificate (PKCS#12). The PKCS#12 and its password are stored Fernet-encrypted
    with a key kept outside the database (see dte_crypto) and only administrators (DTE managers)
    can read this model at all; the encrypted fields are further restricted to system admins and
    never shown in a view. Signing code uses sudo()."""
    _name = 'l10n_cl_dte.certificate'
    _description = 'DTE signing certificate'
    _inherit = ['mail.thread', 'mail.activity.mixin']
    _order = 'date_end desc, id desc'

    name = fields.Char(compute='_compute_name', store=True)
    company_id = fields.Many2one('res.company', required=True, default=lambda self: self.env.company, index=True)
    active = fields.Boolean(default=True)
    # Write-only upload fields: never read back (computed empty).
    p12_file = fields.Binary('PKCS#12 file (.p12/.pfx)', compute='_compute_upload_fields', store=False)
    p12_filename = fields.Char(compute='_compute_upload_fields', store=False)
    p12_password = fields.Char('Password', compute='_compute_upload_fields', store=False)
    # Secrets at rest (Fernet tokens).
    p12_cipher = fields.Text(groups='base.group_system', copy=False)
    password_cipher = fields.Text(groups='base.group_system', copy=False)
    signer_rut = fields.Char('Signer RUT', readonly=True)
    subject_cn = fields.Char('Subject', readonly=True)
    issuer_name = fields.Char('Issuer', readonly=True)
    serial_number = fields.Char(readonly=True)
    fingerprint = fields.Char('SHA-256 fingerprint', readonly=True)
    date_start = fields.Datetime('Valid from', readonly=True)
    date_end = fields.Datetime('Valid until', readonly=True)
    state = fields.Selection(
        [('valid', 'Valid'), ('expiring', 'Expiring soon'), ('expired', 'Expired'), ('not_yet', 'Not yet valid')],
        compute='_compute_state')

    _fingerprint_company_uniq = models.Constraint(
        'UNIQUE(company_id, fingerprint)', 'This certificate is already loaded for this company.')

    def _compute_upload_fields(self):
        for cert in self:
            cert.p12_file = False
            cert.p12_filename = False
            cert.p12_password = False

    @api.depends('subject_cn', 'signer_rut')
    def _compute_name(self):
        for cert in self:
            cert.name = '%s (%s)' % (cert.subject_cn or '?', cert.signer_rut or '?')

    @api.depends('date_start', 'date_end')
    def _compute_state(self):
        now = fields.Datetime.now()
        for cert in self:
            if cert.date_end and cert.date_end < now:
                cert.state = 'expired'
            elif cert.date_start and cert.date_start > now:
                cert.state = 'not_yet'
            elif cert.date_end and cert.date_end < now + datetime.timedelta(days=EXPIRY_WARNING_DAYS):
                cert.state = 'expiring'
            else:
                cert.state = 'valid'

    @api.model
    def _l10n_cl_dte_values_from_upload(self, p12_b64, password):
        if not p12_b64:
            raise UserError(self.env._('Upload the PKCS#12 (.p12/.pfx) file of the signer.'))
        data = base64.b64decode(p12_b64)
        try:
            cert = dte_native.Certificate.from_pkcs12(data, password or '')
        except dte_native.CertificateError as e:
            raise UserError(self.env._('The certificate cannot be loaded: %s', e)) from None
        if not cert.has_private_key:
            raise UserError(self.env._('The PKCS#12 file holds no private key: it cannot sign.'))
        info = cert.info
        return {
            'p12_cipher': dte_crypto.encrypt(data),
            'password_cipher': dte_crypto.encrypt(password or ''),
            'signer_rut': info.signer_rut,
            'subject_cn': info.common_name or info.subject,
            'issuer_name': info.issuer,
            'serial_number': info.serial_number,
            'fingerprint': info.sha256_fingerprint,
            'date_start': _parse_utc(info.not_before),
            'date_end': _parse_utc(info.not_after),
        }

    @api.model_create_multi
    def create(self, vals_list):
        # The secrets are system-admin fields, so the record is written with sudo(): check the
        # caller's own right to create first.
        self.check_access('create')
        for vals in vals_list:
            p12 = vals.pop('p12_file', None)
            password = vals.pop('p12_password', None)
            vals.pop('p12_filename', None)
            vals.update(self._l10n_cl_dte_values_from_upload(p12, password))
        return super(L10nClDteCertificate, self.sudo()).create(vals_list).sudo(False)

    def write(self, vals):
        vals = dict(vals)
        p12 = vals.pop('p12_file', None)
        password = vals.pop('p12_password', None)
        vals.pop('p12_filename', None)
        if p12:
            self.check_access('write')
            vals.update(self._l10n_cl_dte_values_from_upload(p12, password))
            return super(L10nClDteCertificate, self.sudo()).write(vals)
        if password is not None and password is not False:
            raise UserError(self.env._('Upload the PKCS#12 file again together with its password.'))
        return super().write(vals)

    def _l10n_cl_dte_load(self):
        """The dte_native.Certificate with its private key. Server side only."""
        self.ensure_one()
        secret = self.sudo()
        return dte_native.Certificate.from_pkcs12(
            dte_crypto.decrypt(self.env, secret.p12_cipher),
            dte_crypto.decrypt(self.env, secret.password_cipher).decode('utf-8'))

    @api.model
    def _l10n_cl_dte_for_company(self, company):
        """The certificate a company signs with: the valid one that lasts longest."""
        now = fields.Datetime.now()
        return self.sudo().search([
            ('company_id', '=', company.id),
            ('date_end', '>', now),
            ('date_start', '<=', now),
        ], order='date_end desc', limit=1)

    @api.constrains('signer_rut')
    def _check_signer_rut(self):
        for cert in self:
            if not cert.signer_rut or not dte_native.rut_is_valid(cert.signer_rut):
                raise ValidationError(self.env._(
                    'The certificate carries no valid signer RUT (looked in the subject serial number and '
                    'the subject alternative name).'))
