import datetime

import dte_native
from markupsafe import Markup, escape

from odoo import api, fields, models
from odoo.exceptions import ValidationError

from . import dte_crypto

# A document waiting this long for its upload, or for SII's verdict after it, needs a person.
STUCK_TO_SEND_HOURS = 2
STUCK_SENT_HOURS = 24
# Document types every invoicing company needs folios for.
CORE_DTE_TYPES = (33, 56, 61)


class ResCompany(models.Model):
    _inherit = 'res.company'

    l10n_cl_dte_environment = fields.Selection(
        [('simulator', 'Simulator'), ('certification', 'SII certification (maullin)'),
         ('production', 'SII production (palena)')],
        string='SII Environment', default='simulator', required=True,
        help='Where DTEs are sent. The simulator is dte_native\'s local SII stand-in.')
    l10n_cl_dte_simulator_url = fields.Char(
        'Simulator URL', default='http://127.0.0.1:8765',
        help='Base URL of the dte_native SII simulator (dte simulator).')
    l10n_cl_dte_resolution_number = fields.Integer(
        'SII Resolution Number', help='Number of the SII resolution that authorizes electronic invoicing '
                                      '(0 in certification).')
    l10n_cl_dte_resolution_date = fields.Date('SII Resolution Date')
    l10n_cl_dte_acteco_codes = fields.Char(
        'Economic Activity Codes (Acteco)',
        help='Up to 4 SII economic activity codes of the company, separated by commas, e.g. 463020,466901.')
    l10n_cl_sii_regional_office = fields.Char(
        'SII Regional Office', help='Printed in the SII box of documents, e.g. SANTIAGO ORIENTE.')
    l10n_cl_dte_email = fields.Char(
        'DTE Exchange Email', help='Address printed on DTEs and used to exchange documents with receivers.')
    l10n_cl_dte_reception_email = fields.Char(
        'DTE Reception Email', help='Mailbox registered at SII where suppliers send their DTEs.')
    l10n_cl_dte_certificate_id = fields.Many2one(
        'l10n_cl_dte.certificate', compute='_compute_l10n_cl_dte_certificate_id', string='Signing Certificate')
    # Reception (l10n_cl_dte.incoming): the exchange mailbox and the SMTP server for answers.
    # Passwords are write-only fields stored Fernet-encrypted (dte_crypto), like the certificate.
    l10n_cl_dte_imap_url = fields.Char(
        'DTE Inbox (IMAP URL)', help='imaps://mail.example.cl/INBOX: where suppliers\' DTEs arrive. '
                                     'Empty: the inbox is not fetched.')
    l10n_cl_dte_imap_user = fields.Char('DTE Inbox User')
    l10n_cl_dte_imap_password = fields.Char(
        'DTE Inbox Password', compute='_compute_l10n_cl_dte_mail_passwords',
        inverse='_inverse_l10n_cl_dte_imap_password')
    l10n_cl_dte_imap_password_cipher = fields.Text(groups='base.group_system', copy=False)
    l10n_cl_dte_imap_state = fields.Json(
        'DTE Inbox progress', copy=False,
        help='UIDVALIDITY and last UID stored: advanced only after the message\'s records are committed.')
    l10n_cl_dte_smtp_host = fields.Char('DTE Answers SMTP Server')
    l10n_cl_dte_smtp_port = fields.Integer('DTE Answers SMTP Port', default=587)
    l10n_cl_dte_smtp_security = fields.Selection(
        [('none', 'None'), ('starttls', 'STARTTLS'), ('ssl', 'SSL/TLS')], 'DTE Answers SMTP Security',
        default='starttls')
    l10n_cl_dte_smtp_user = fields.Char('DTE Answers SMTP User')
    l10n_cl_dte_smtp_password = fields.Char(
        'DTE Answers SMTP Password', compute='_compute_l10n_cl_dte_mail_passwords',
        inverse='_inverse_l10n_cl_dte_smtp_password')
    l10n_cl_dte_smtp_password_cipher = fields.Text(groups='base.group_system', copy=False)

    l10n_cl_dte_setup_html = fields.Html(
        'DTE setup checklist', compute='_compute_l10n_cl_dte_setup', sanitize=False)
    l10n_cl_dte_setup_done = fields.Boolean('DTE setup complete', compute='_compute_l10n_cl_dte_setup')

    def _compute_l10n_cl_dte_mail_passwords(self):
        for company in self:  # write-only: never read back
            company.l10n_cl_dte_imap_password = False
            company.l10n_cl_dte_smtp_password = False

    def _inverse_l10n_cl_dte_imap_password(self):
        for company in self.filtered('l10n_cl_dte_imap_password'):
            company.sudo().l10n_cl_dte_imap_password_cipher = dte_crypto.encrypt(company.l10n_cl_dte_imap_password)

    def _inverse_l10n_cl_dte_smtp_password(self):
        for company in self.filtered('l10n_cl_dte_smtp_password'):
            company.sudo().l10n_cl_dte_smtp_password_cipher = dte_crypto.encrypt(company.l10n_cl_dte_smtp_password)

    def _l10n_cl_dte_secret(self, cipher_field):
        """A decrypted mail password (server side only), '' when none is set."""
        self.ensure_one()
        token = self.sudo()[cipher_field]
        return dte_crypto.decrypt(self.env, token).decode('utf-8') if token else ''

    def _l10n_cl_dte_exchange_sender(self):
        self.ensure_one()
        return self.l10n_cl_dte_reception_email or self.l10n_cl_dte_email or self.email or ''

    def _compute_l10n_cl_dte_certificate_id(self):
        certificates = self.env['l10n_cl_dte.certificate'].sudo()
        for company in self:
            company.l10n_cl_dte_certificate_id = certificates._l10n_cl_dte_for_company(company)

    def _l10n_cl_dte_acteco_list(self):
        self.ensure_one()
        codes = [c.strip() for c in (self.l10n_cl_dte_acteco_codes or '').replace(';', ',').split(',')]
        return [int(c) for c in codes if c.isdigit()]

    @api.constrains('l10n_cl_dte_acteco_codes')
    def _check_l10n_cl_dte_acteco_codes(self):
        for company in self:
            codes = [c.strip() for c in (company.l10n_cl_dte_acteco_codes or '').replace(';', ',').split(',') if c.strip()]
            if len(codes) > 4 or any(not c.isdigit() or len(c) > 6 for c in codes):
                raise ValidationError(self.env._(
                    'Economic activity codes must be up to 4 numbers of at most 6 digits, separated by commas.'))

    # --- guided setup ------------------------------------------------------------------------

    def _l10n_cl_dte_setup_steps(self):
        """Every prerequisite of issuing DTEs, as (key, done, label, hint) with a hint that names
        the field or the menu to fix."""
        self.ensure_one()
        today = fields.Date.context_today(self)
        partner = self.partner_id
        steps = []
        rut_ok = bool(self.vat) and dte_native.rut_is_valid(self.vat)
        steps.append(('rut', rut_ok, self.env._('Company RUT'),
                      self.env._('Set a valid RUT in the company form (Tax ID), e.g. 76543210-3.')))
        steps.append(('address', bool(partner.street and partner.city), self.env._('Company address'),
                      self.env._('Fill street and city (comuna) in the company form: they are DirOrigen/CmnaOrigen.')))
        steps.append(('activity', bool(self.l10n_cl_activity_description and self._l10n_cl_dte_acteco_list()),
                      self.env._('Economic activity (giro and Acteco codes)'),
                      self.env._('Fill the activity description (giro) in the company and the Acteco codes below.')))
        steps.append(('resolution', bool(self.l10n_cl_dte_resolution_date)
                      and (self.l10n_cl_dte_environment != 'production' or self.l10n_cl_dte_resolution_number > 0),
                      self.env._('SII resolution'),
                      self.env._('Set the resolution number and date below (number 0 in certification; '
                        'production needs the real number).')))
        cert = self.env['l10n_cl_dte.certificate'].sudo()._l10n_cl_dte_for_company(self)
        steps.append(('certificate', bool(cert), self.env._('Signing certificate'),
                      self.env._('Upload the signer\'s .p12 in Accounting > Configuration > Chile DTE > DTE Certificates.')
                      if not cert else self.env._('%(name)s, valid until %(date)s.', name=cert.name, date=cert.date_end.date())))
        Caf = self.env['l10n_cl_dte.caf'].sudo()
        loaded_types = set(Caf.search([('company_id', '=', self.id)]).mapped('doc_type'))
        for doc_type in sorted(set(CORE_DTE_TYPES) | loaded_types):
            caf = Caf._l10n_cl_dte_candidate(self, doc_type, today)
            steps.append(('caf_%s' % doc_type, bool(caf), self.env._('Folios (CAF) for type %s', doc_type),
                          self.env._('Download a CAF for type %s from SII and upload it in Chile DTE > CAF.', doc_type)
                          if not caf else self.env._('%(left)s folios left in %(name)s.', left=caf.folios_left, name=caf.name)))
        journals = self.env['account.journal'].sudo().search_count([
            ('company_id', '=', self.id), ('type', '=', 'sale'), ('l10n_cl_dte_enabled', '=', True)])
        steps.append(('journal', bool(journals), self.env._('A sales journal issuing DTEs'),
                      self.env._('Tick "Electronic documents (DTE)" on a sales journal that uses documents.')))
        env_labels = dict(self._fields['l10n_cl_dte_environment']._description_selection(self.env))
        steps.append(('environment', self.l10n_cl_dte_environment != 'simulator', self.env._('SII environment'),
                      self.env._('%s: documents go to the local simulator, never to SII. Choose certification or '
                        'production below when ready.', env_labels[self.l10n_cl_dte_environment])
                      if self.l10n_cl_dte_environment == 'simulator'
                      else env_labels[self.l10n_cl_dte_environment]))
        return steps

    def _compute_l10n_cl_dte_setup(self):
        for company in self:
            if company.account_fiscal_country_id.code != 'CL' and company.country_id.code != 'CL':
                company.l10n_cl_dte_setup_html = False
                company.l10n_cl_dte_setup_done = False
                continue
            steps = company._l10n_cl_dte_setup_steps()
            rows = Markup('').join(
                Markup('<li class="%s"><i class="fa %s me-1" role="img" aria-label="%s"/><b>%s</b>: %s</li>') % (
                    'text-success' if done else 'text-danger', 'fa-check' if done else 'fa-times',
                    'ok' if done else 'missing', label, hint)
                for _key, done, label, hint in steps)
            company.l10n_cl_dte_setup_html = Markup('<ul class="list-unstyled mb-0">%s</ul>') % rows
            # The simulator is a choice, not a gap: everything else must be done.
            company.l10n_cl_dte_setup_done = all(done for key, done, _l, _h in steps if key != 'environment')

    # --- alerts (cron) -----------------------------------------------------------------------

    def _l10n_cl_dte_alert_users(self):
        """Who gets the alerts: the company's DTE managers (not the bot), else its administrators."""
        self.ensure_one()
        root = self.env.ref('base.user_root')
        for xmlid in ('l10n_cl_dte.group_dte_manager', 'base.group_system'):
            users = self.env.ref(xmlid).all_user_ids.filtered(
                lambda u: u != root and u.active and not u.share and self in u.company_ids)
            if users:
                return users
        return root

    def _l10n_cl_dte_alert(self, record, summary, note):
        """One warning activity per user and record (no duplicates while one is open); the
        activity mails its assignee."""
        self.ensure_one()
        activity_type = self.env.ref('mail.mail_activity_data_warning')
        created = 0
        for user in self._l10n_cl_dte_alert_users():
            exists = self.env['mail.activity'].sudo().search_count([
                ('res_model', '=', record._name), ('res_id', '=', record.id),
                ('user_id', '=', user.id), ('summary', '=', summary)])
            if not exists:
                record.sudo().activity_schedule(
                    activity_type_id=activity_type.id, summary=summary, note=escape(note), user_id=user.id)
                created += 1
        return created

    @api.model
    def _cron_l10n_cl_dte_alerts(self):
        """Certificates near expiry, CAFs near exhaustion or expiry (folio forecast) and documents
        stuck without SII's final answer become activities for the DTE managers."""
        now = fields.Datetime.now()
        today = fields.Date.context_today(self)
        found = {'certificate': 0, 'caf': 0, 'stuck': 0}
        Cert = self.env['l10n_cl_dte.certificate'].sudo()
        Caf = self.env['l10n_cl_dte.caf'].sudo()
        Doc = self.env['l10n_cl_dte.document'].sudo()
        companies = self.env['res.company'].sudo().search([('l10n_cl_dte_environment', '!=', False)])
        for company in companies:
            # The certificate: the one signing now (or the newest one when none is valid).
            cert = Cert._l10n_cl_dte_for_company(company) or Cert.search(
                [('company_id', '=', company.id)], order='date_end desc', limit=1)
            if cert and cert.state in ('expiring', 'expired'):
                summary = self.env._('DTE certificate expires') if cert.state == 'expiring' else self.env._('DTE certificate expired')
                note = self.env._('The signing certificate %(name)s of %(company)s is valid until %(date)s. '
                         'Upload the renewed .p12 before then: without it no DTE can be signed.',
                         name=cert.name, company=company.name, date=cert.date_end)
                found['certificate'] += bool(company._l10n_cl_dte_alert(cert, summary, note))
            for caf in Caf.search([('company_id', '=', company.id)]):
                reason = caf._l10n_cl_dte_alert_reason(today)
                if reason:
                    found['caf'] += bool(company._l10n_cl_dte_alert(caf, self.env._('CAF: request new folios'), reason))
            stuck = Doc.search([
                ('company_id', '=', company.id), '|',
                '&', ('state', '=', 'to_send'), ('create_date', '<', now - datetime.timedelta(hours=STUCK_TO_SEND_HOURS)),
                '&', ('state', '=', 'sent'), ('create_date', '<', now - datetime.timedelta(hours=STUCK_SENT_HOURS))])
            for doc in stuck:
                note = self.env._('DTE %(name)s has been "%(state)s" since %(date)s without a final SII answer. '
                         'Last answer: %(message)s',
                         name=doc.name, state=dict(doc._fields['state']._description_selection(self.env))[doc.state],
                         date=doc.create_date, message=doc.sii_message or '-')
                found['stuck'] += bool(company._l10n_cl_dte_alert(
                    doc.move_id, self.env._('DTE without SII answer'), note))
        return found
