"""Suppliers' DTEs received in the company's exchange mailbox (PROTOCOL.md section 10).

Everything that touches mail, XML signatures, schemas or SII runs in dte_native (the C++ core):
``reception.fetch_inbox`` (IMAP), ``reception.process_message`` (MIME + full verification),
``reception.build_*`` / ``send_answer`` (signed answers by SMTP) and ``SiiClient.claim``
(RegistroReclamoDTE). This model stores what comes back, turns each valid DTE into a draft vendor
bill and keeps the 8-day acceptance window.
"""
import base64
import datetime
import email.utils
import logging
import re
from zoneinfo import ZoneInfo

import dte_native
from dte_native import reception

from odoo import api, fields, models
from odoo.exceptions import UserError, ValidationError
from odoo.tools import SQL, float_compare

from .l10n_cl_dte_document import _can_commit

_logger = logging.getLogger(__name__)

STATES = [
    ('received', 'Received'),
    ('verified', 'Verified, to accept or claim'),
    ('failed', 'Failed verification'),
    ('accepted', 'Accepted'),
    ('claimed', 'Claimed'),
    ('deemed_accepted', 'Deemed accepted (8 days)'),
]

# The only moves of the state machine. 'failed' -> 'received' is "verify again" (e.g. after
# trusting a new SII key); 'claimed' -> 'claimed' is a different claim.
TRANSITIONS = {
    'received': {'verified', 'failed'},
    'verified': {'accepted', 'claimed', 'deemed_accepted'},
    'failed': {'received'},
    'accepted': set(),
    'claimed': set(),
    'deemed_accepted': set(),
}

# States whose document counts as received (duplicate detection, unique index).
RECEIVED_OK = ('verified', 'accepted', 'claimed', 'deemed_accepted')

ANSWER_ACTIONS = [
    ('ACD', 'ACD: accept the content'),
    ('ERM', 'ERM: receipt of goods or services (Ley 19.983)'),
    ('RCD', 'RCD: claim the content'),
    ('RFP', 'RFP: claim partial lack of goods'),
    ('RFT', 'RFT: claim total lack of goods'),
]
CLAIMS = ('RCD', 'RFP', 'RFT')
# SII's codResp that mean "recorded": 0 done, 7 already registered (a retry after a crash).
SII_DONE = (0, 7)
SII_WINDOW_OVER = 8
SII_TYPE_NOT_HANDLED = 3  # RegistroReclamoDTE handles 33, 34 and 43 only

WINDOW_DAYS = 8
REMINDER_DAYS_BEFORE = 2
CREDIT_NOTE_TYPES = (61, 112)
DEBIT_NOTE_TYPES = (56, 111)
_DOC_SUBJECT = re.compile(r'^T\d+F\d+$')
_CHILE = ZoneInfo('America/Santiago')
_INBOX_LOCK_CLASS = 0x4454  # 'DT': pg advisory lock namespace of the inbox fetch, per company


def _mail_datetime(text):
    try:
        when = email.utils.parsedate_to_datetime(text) if text else None
    except (TypeError, ValueError, IndexError):
        when = None
    if when is None:
        return fields.Datetime.now()
    if when.tzinfo:
        when = when.astimezone(datetime.timezone.utc).replace(tzinfo=None)
    return min(when, fields.Datetime.now())


class L10nClDteIncoming(models.Model):
    """One DTE received from a supplier (or one mail or attachment that could not be read), with
    its verification, the vendor bill made from it and the answers given to the supplier and SII."""
    _name = 'l10n_cl_dte.incoming'
    _description = 'Received supplier DTE'
    _inherit = ['mail.thread', 'mail.activity.mixin']
    _order = 'id desc'

    name = fields.Char(compute='_compute_name', store=True)
    company_id = fields.Many2one('res.company', required=True, index=True, readonly=True)
    state = fields.Selection(STATES, default='received', required=True, readonly=True, tracking=True, index=True)
    # The document (empty when the mail or attachment could not be read at all).
    doc_type = fields.Integer('Document Type', readonly=True)
    folio = fields.Integer(readonly=True)
    issuer_rut = fields.Char('Supplier RUT', readonly=True, index=True)
    receiver_rut = fields.Char(readonly=True)
    issue_date = fields.Date(readonly=True)
    amount_total = fields.Integer('Total (MntTotal)', readonly=True)
    dte_key = fields.Char('Document key', readonly=True, index='btree_not_null',
                          help='Issuer RUT, type and folio: what duplicate detection compares.')
    sii_document_id = fields.Char('Document ID', readonly=True)
    envelope_set_id = fields.Char('Envelope ID (SetDTE)', readonly=True)
    envelope_digest = fields.Char(readonly=True)
    envelope_state = fields.Integer('EstadoRecepEnv', readonly=True)
    document_state = fields.Integer('EstadoRecepDTE', readonly=True)
    failure_reason = fields.Text(readonly=True)
    check_ids = fields.One2many('l10n_cl_dte.incoming.check', 'incoming_id', string='Verification', readonly=True)
    partner_id = fields.Many2one('res.partner', 'Supplier', readonly=True, index='btree_not_null')
    move_id = fields.Many2one('account.move', 'Vendor Bill', readonly=True, index='btree_not_null', copy=False)
    # The originals, as received.
    xml_file = fields.Binary('Original XML', attachment=True, readonly=True, copy=False)
    xml_filename = fields.Char(readonly=True)
    mail_file = fields.Binary('Original mail', attachment=True, readonly=True, copy=False)
    mail_filename = fields.Char(readonly=True)
    mail_uid = fields.Char('IMAP UID', readonly=True, help='UIDVALIDITY-UID of the message in the mailbox.')
    mail_message_id = fields.Char('Message-ID', readonly=True)
    mail_from = fields.Char('From', readonly=True)
    reply_to = fields.Char('Answer to', readonly=True, help="The supplier's exchange address (Reply-To, else From).")
    mail_subject = fields.Char('Subject', readonly=True)
    received_at = fields.Datetime(readonly=True, default=fields.Datetime.now)
    # Ley 19.983: 8 calendar days from SII's reception to accept or claim.
    deadline = fields.Datetime('Accept or claim before', readonly=True, index='btree_not_null')
    sii_action = fields.Selection(ANSWER_ACTIONS, 'Last answer', readonly=True)
    sii_message = fields.Text('Last SII answer', readonly=True)
    answer_sent_at = fields.Datetime('Answer mailed at', readonly=True)

    _dte_received_once = models.UniqueIndex(
        "(company_id, dte_key) WHERE state IN ('verified', 'accepted', 'claimed', 'deemed_accepted')",
        'This supplier document was already received.')

    @api.depends('doc_type', 'folio', 'issuer_rut', 'mail_subject')
    def _compute_name(self):
        for rec in self:
            if rec.doc_type and rec.folio:
                rec.name = 'T%sF%s %s' % (rec.doc_type, rec.folio, rec.issuer_rut or '')
            else:
                rec.name = rec.mail_subject or rec.env._('Unreadable message')

    # --- state machine ---------------------------------------------------------------------

    def _set_state(self, new_state, message=None):
        for rec in self:
            if new_state == rec.state:
                continue
            if new_state not in TRANSITIONS[rec.state]:
                raise UserError(self.env._(
                    'Received DTE %(name)s cannot go from %(old)s to %(new)s.',
                    name=rec.name, old=dict(STATES)[rec.state], new=dict(STATES)[new_state]))
            rec.state = new_state
            body = dict(STATES)[new_state]
            if message:
                body = '%s. %s' % (body, message)
            rec.message_post(body=body)
            if rec.move_id:
                rec.move_id.message_post(body=self.env._('Received DTE %(name)s: %(body)s', name=rec.name, body=body))

    # --- reception: the inbox cron ----------------------------------------------------------

    @api.model
    def _company_rut(self, company):
        if not company.vat or not dte_native.rut_is_valid(company.vat):
            raise UserError(self.env._('Company %s has no valid RUT.', company.name))
        return dte_native.rut_normalize(company.vat)

    @api.model
    def _keyring(self):
        return self.env['l10n_cl_dte.caf']._l10n_cl_dte_keyring()

    @api.model
    def _known_keys(self, company):
        return set(self.sudo().search([('company_id', '=', company.id), ('state', 'in', RECEIVED_OK)])
                   .mapped('dte_key'))

    @api.model
    def _cron_fetch_inbox(self, limit=100):
        companies = self.env['res.company'].sudo().search([('l10n_cl_dte_imap_url', '!=', False)])
        stored = 0
        for company in companies:
            try:
                stored += self._fetch_company_inbox(company, limit=limit)
            except (dte_native.DteError, UserError, OSError) as e:
                # One company's mailbox being down does not stop the others.
                _logger.warning('DTE inbox of %s: %s', company.name, e)
        return stored

    @api.model
    def _lock_inbox(self, company):
        """A transaction-level lock on the company's inbox: two workers never read the same
        mailbox at once. Released by every commit, so it is taken again after each one."""
        self.env.cr.execute(SQL('SELECT pg_try_advisory_xact_lock(%s, %s)', _INBOX_LOCK_CLASS, company.id))
        return self.env.cr.fetchone()[0]

    @api.model
    def _fetch_company_inbox(self, company, limit=100):
        """Fetches what is new in the company's mailbox and stores each message, oldest first.
        The remembered UID advances in the same transaction as the records made from that
        message, committed per message: a crash re-reads at most the message in hand, and a
        message is never counted as processed before its records are stored."""
        if not self._lock_inbox(company):
            _logger.info('DTE inbox of %s is being fetched by another worker', company.name)
            return 0
        state = dict(company.l10n_cl_dte_imap_state or {})
        batch = reception.fetch_inbox(
            company.l10n_cl_dte_imap_url, company.l10n_cl_dte_imap_user or '',
            company._l10n_cl_dte_secret('l10n_cl_dte_imap_password_cipher'),
            since_uid=int(state.get('last_uid') or 0), uid_validity=state.get('uid_validity'),
            limit=limit)
        if state.get('uid_validity') not in (None, batch.uid_validity):
            _logger.warning('DTE inbox of %s: UIDVALIDITY changed, reading the mailbox again; documents '
                            'already received are caught as duplicates', company.name)
            state = {}
        stored = 0
        for message in batch.messages:
            if state.get('uid_validity') == batch.uid_validity and message.uid <= int(state.get('last_uid') or 0):
                continue  # another worker stored it between our commits
            try:
                with self.env.cr.savepoint():
                    self._store_message(company, batch.uid_validity, message.uid, message.raw)
            except Exception as e:  # noqa: BLE001 -- one bad message must not block the inbox forever
                _logger.exception('DTE inbox of %s: message %s could not be processed', company.name, message.uid)
                self._store_unprocessable(company, batch.uid_validity, message.uid, message.raw, e)
            state = {'uid_validity': batch.uid_validity, 'last_uid': message.uid}
            company.sudo().l10n_cl_dte_imap_state = state
            stored += 1
            if _can_commit():
                self.env.cr.commit()  # pylint: disable=invalid-commit
                if not self._lock_inbox(company):
                    break
                company.invalidate_recordset(['l10n_cl_dte_imap_state'])
                state = dict(company.l10n_cl_dte_imap_state or {})
        return stored

    @api.model
    def _store_unprocessable(self, company, uid_validity, uid, raw, error):
        """Kept as failed with the error, the mail attached: nothing is lost, the inbox goes on."""
        reason = self.env._('Internal error while processing this message: %s', error)
        rec = self.sudo().create({
            'company_id': company.id, 'envelope_state': 99, 'mail_uid': '%s-%s' % (uid_validity, uid),
            'mail_file': base64.b64encode(raw), 'mail_filename': '%s-%s.eml' % (uid_validity, uid),
            'mail_subject': self.env._('Unprocessable message %s', uid)})
        rec._set_state('failed', reason)
        rec.failure_reason = reason
        return rec

    @api.model
    def _other_company_for(self, rut, company):
        """A company of this database whose RUT is ``rut`` (a shared exchange mailbox)."""
        if not rut or not dte_native.rut_is_valid(rut):
            return self.env['res.company']
        rut = dte_native.rut_normalize(rut)
        for other in self.env['res.company'].sudo().search([('id', '!=', company.id), ('vat', '!=', False)]):
            if dte_native.rut_is_valid(other.vat) and dte_native.rut_normalize(other.vat) == rut:
                return other
        return self.env['res.company']

    @api.model
    def _store_message(self, company, uid_validity, uid, raw):
        """One mail -> incoming records (one per DTE, or one per unreadable mail or attachment).
        Bad content never raises: it is stored as failed with the reason."""
        keyring = self._keyring()
        outcome = reception.process_message(raw, company_rut=self._company_rut(company), keyring=keyring,
                                            known=self._known_keys(company))
        mail_vals = {
            'mail_uid': '%s-%s' % (uid_validity, uid),
            'mail_message_id': outcome.message_id,
            'mail_from': outcome.sender,
            'reply_to': outcome.reply_to,
            'mail_subject': outcome.subject,
            'received_at': _mail_datetime(outcome.date),
            'mail_file': base64.b64encode(raw),
            'mail_filename': '%s-%s.eml' % (uid_validity, uid),
        }
        records = self.browse()
        for item in outcome.items:
            if item.status in ('answer', 'ignored'):
                continue  # answers to our own DTEs and SII's mails are not supplier documents
            target, envelope = company, item.envelope
            if envelope and not envelope.ok and envelope.rut_receptor and any(
                    c.name == 'receiver.rut' and c.failed for c in envelope.checks):
                other = self._other_company_for(envelope.rut_receptor, company)
                if other:  # one mailbox shared by several companies: it is the other one's
                    target = other
                    envelope = reception.verify_received(
                        item.xml, company_rut=self._company_rut(other), keyring=keyring,
                        known=self._known_keys(other))
            item_vals = dict(mail_vals, company_id=target.id, xml_file=base64.b64encode(item.xml),
                             xml_filename=item.filename or 'dte.xml')
            if envelope and envelope.documents:
                for doc in envelope.documents:
                    rec = self.sudo().create(dict(item_vals, **self._document_vals(envelope, doc)))
                    rec._apply_verification(envelope, doc)
                    records |= rec
            else:
                reason = item.reason or (envelope.glosa if envelope else '') or outcome.reason
                rec = self.sudo().create(dict(item_vals, envelope_state=envelope.state if envelope else 91))
                rec._write_checks(envelope.checks if envelope else item.checks)
                rec._set_state('failed', reason)
                rec.failure_reason = reason
                records |= rec
        if not records and outcome.quarantined:
            # Broken MIME, no XML at all...: the mail itself is kept, with the reason.
            rec = self.sudo().create(dict(mail_vals, company_id=company.id, envelope_state=91))
            rec._set_state('failed', outcome.reason)
            rec.failure_reason = outcome.reason
            records |= rec
        return records

    @api.model
    def _document_vals(self, envelope, doc):
        return {
            'doc_type': doc.doc_type,
            'folio': doc.folio,
            'issuer_rut': doc.issuer_rut,
            'receiver_rut': doc.receiver_rut,
            'issue_date': doc.issue_date or False,
            'amount_total': doc.total,
            'dte_key': doc.key,
            'sii_document_id': doc.id,
            'envelope_set_id': envelope.set_id,
            'envelope_digest': envelope.digest,
            'envelope_state': envelope.state,
            'document_state': doc.state,
        }

    def _write_checks(self, checks):
        self.ensure_one()
        self.sudo().check_ids.unlink()
        self.env['l10n_cl_dte.incoming.check'].sudo().create([{
            'incoming_id': self.id, 'sequence': n, 'name': c.name, 'subject': c.subject,
            'status': c.status if c.status in ('pass', 'fail', 'skip') else 'skip', 'reason': c.reason,
        } for n, c in enumerate(checks)])

    def _apply_verification(self, envelope, doc):
        """received -> verified (draft bill, 8-day window, reminder) or failed (reasons, no bill)."""
        self.ensure_one()
        seen, checks = set(), []
        # The envelope's own checks and this document's: not the other documents' of the envelope.
        for c in list(envelope.checks) + list(doc.checks):
            if (c.name, c.subject) in seen or (_DOC_SUBJECT.match(c.subject or '') and c.subject != doc.id):
                continue
            seen.add((c.name, c.subject))
            checks.append(c)
        self._write_checks(checks)
        self.write({'envelope_state': envelope.state, 'document_state': doc.state})
        if envelope.state == 0 and doc.ok:
            self.failure_reason = False
            self.deadline = self.received_at + datetime.timedelta(days=WINDOW_DAYS)
            self._set_state('verified', self.env._('Every check passed.'))
            self._schedule_reminder()
            try:
                with self.env.cr.savepoint():
                    self._create_bill(doc.xml)
            except (UserError, ValidationError, ValueError) as e:
                self.message_post(body=self.env._('The draft bill could not be created: %s. Create it by hand '
                                                  'from the attached XML.', e))
        else:
            failures = [c for c in checks if c.failed]
            reason = '; '.join('%s: %s' % (c.name, c.reason) if c.reason else c.name for c in failures) \
                or doc.glosa or envelope.glosa
            self.failure_reason = reason
            self._set_state('failed', self.env._('No bill was created. %s', reason))

    def _schedule_reminder(self):
        self.ensure_one()
        user = self.env['res.users'].sudo().search([
            ('all_group_ids', 'in', self.env.ref('l10n_cl_dte.group_dte_user').id),
            ('company_ids', 'in', self.company_id.id), ('share', '=', False)], order='id', limit=1)
        when = (self.deadline - datetime.timedelta(days=REMINDER_DAYS_BEFORE)).date()
        self.activity_schedule(
            'mail.mail_activity_data_todo', date_deadline=max(when, fields.Date.today()),
            summary=self.env._('Accept or claim %s', self.name),
            note=self.env._('Accept or claim this DTE before %s; afterwards it is deemed accepted (Ley 19.983) '
                            'and can no longer be claimed.', fields.Datetime.to_string(self.deadline)),
            user_id=(user or self.env.user).id)

    def action_verify_again(self):
        """failed -> received -> verified/failed, against the keys and documents known now."""
        for rec in self.filtered(lambda r: r.state == 'failed' and r.xml_file):
            xml = base64.b64decode(rec.with_context(bin_size=False).xml_file)
            known = rec._known_keys(rec.company_id)
            envelope = reception.verify_received(
                xml, company_rut=rec._company_rut(rec.company_id), keyring=rec._keyring(), known=known)
            docs = [d for d in envelope.documents if not rec.dte_key or d.key == rec.dte_key]
            rec._set_state('received', rec.env._('Verification run again by %s.', rec.env.user.name))
            if docs:
                rec.write(rec._document_vals(envelope, docs[0]))
                rec._apply_verification(envelope, docs[0])
            else:
                rec._write_checks(envelope.checks)
                rec.failure_reason = envelope.glosa
                rec._set_state('failed', envelope.glosa)
        return True

    # --- the vendor bill --------------------------------------------------------------------

    def _find_or_create_partner(self, issuer):
        self.ensure_one()
        rut = dte_native.rut_normalize(issuer.rut)
        Partner = self.env['res.partner'].sudo().with_company(self.company_id)
        body = rut.split('-')[0]
        candidates = Partner.search([
            ('vat', 'ilike', body), ('parent_id', '=', False),
            '|', ('company_id', '=', False), ('company_id', '=', self.company_id.id)], order='id')
        for partner in candidates:
            if dte_native.rut_is_valid(partner.vat or '') and dte_native.rut_normalize(partner.vat) == rut:
                return partner
        partner = Partner.create({
            'name': issuer.name or rut,
            'is_company': True,
            'vat': rut,
            'country_id': self.env.ref('base.cl').id,
            'l10n_latam_identification_type_id': self.env.ref('l10n_cl.it_RUT').id,
            'l10n_cl_sii_taxpayer_type': '1',
            'l10n_cl_activity_description': issuer.activity or False,
            'street': issuer.street or False,
            'city': issuer.city or False,
            'email': issuer.email or False,
            'phone': issuer.phone or False,
        })
        partner.message_post(body=self.env._('Created from the received DTE %s.', self.name))
        return partner

    def _purchase_journal(self):
        Journal = self.env['account.journal'].sudo()
        domain = [*Journal._check_company_domain(self.company_id), ('type', '=', 'purchase')]
        return (Journal.search(domain + [('l10n_latam_use_documents', '=', True)], limit=1)
                or Journal.search(domain, limit=1))

    def _purchase_tax(self, sii_code, rate=None):
        Tax = self.env['account.tax'].sudo()
        domain = [*Tax._check_company_domain(self.company_id), ('type_tax_use', '=', 'purchase'),
                  ('l10n_cl_sii_code', '=', sii_code), ('amount_type', '=', 'percent')]
        if rate:
            domain.append(('amount', '=', rate))
        default = self.company_id.account_purchase_tax_id
        if default and default.filtered_domain(domain):
            return default
        return Tax.search(domain, order='sequence, id', limit=1)

    def _referenced_bill(self, references):
        """The bill of the supplier's document a note refers to (received here before)."""
        self.ensure_one()
        for ref in references:
            if not ref.doc_type.isdigit() or not ref.folio.isdigit():
                continue
            origin = self.sudo().search([
                ('company_id', '=', self.company_id.id), ('issuer_rut', '=', self.issuer_rut),
                ('doc_type', '=', int(ref.doc_type)), ('folio', '=', int(ref.folio)),
                ('move_id', '!=', False)], limit=1)
            if origin:
                return origin.move_id
        return self.env['account.move']

    def _bill_lines(self, content, notes):
        self.ensure_one()
        exempt_document = self.doc_type in (34, 41, 110, 111, 112) or not content.totals.vat_rate
        vat = self.env['account.tax'] if exempt_document else self._purchase_tax(14, content.totals.vat_rate or 19)
        if not exempt_document and not vat:
            notes.append(self.env._('No purchase tax for IVA %s%% in this company: lines left without tax.',
                                    content.totals.vat_rate))
        extra = {}
        for imp in content.totals.additional_taxes:
            tax = self._purchase_tax(imp.code, imp.rate or None)
            if tax:
                extra[imp.code] = tax
            else:
                notes.append(self.env._('Additional tax code %s has no purchase tax in this company.', imp.code))
        lines, base_taxed, base_exempt = [], 0.0, 0.0
        for line in content.lines:
            taxes = self.env['account.tax'] if line.exempt else vat
            for code in line.tax_codes:
                taxes |= extra.get(code, self.env['account.tax'])
            quantity, price, amount = line.quantity, line.unit_price, line.amount
            discount = line.discount_pct
            if not discount and line.discount_amount and quantity * price:
                discount = line.discount_amount * 100.0 / (quantity * price)
            # Keep the supplier's quantity, price and discount when they give its MontoItem;
            # otherwise the amount per unit (a surcharge, or rounding of a discount).
            if not price or line.surcharge_amount or round(quantity * price * (1 - discount / 100.0)) != round(amount):
                price, discount = amount / quantity, 0.0
            name = line.name + ('\n' + line.description if line.description else '')
            lines.append({'name': name or '-', 'quantity': quantity, 'price_unit': price, 'discount': discount,
                          'tax_ids': [(6, 0, taxes.ids)]})
            if line.exempt:
                base_exempt += amount
            else:
                base_taxed += amount
        for dr in content.global_adjustments:
            base = base_exempt if dr.exempt else base_taxed
            value = round(base * dr.value / 100.0) if dr.kind == '%' else dr.value
            sign = -1 if dr.move == 'D' else 1
            lines.append({'name': dr.name or (self.env._('Global discount') if sign < 0 else self.env._('Global surcharge')),
                          'quantity': 1, 'price_unit': sign * value,
                          'tax_ids': [(6, 0, (self.env['account.tax'] if dr.exempt else vat).ids)]})
        return lines

    def _create_bill(self, dte_xml):
        """A draft vendor bill (refund for credit notes, debit bill for debit notes) from the DTE."""
        self.ensure_one()
        content = reception.read_dte(dte_xml)
        company = self.company_id
        partner = self._find_or_create_partner(content.issuer)
        self.partner_id = partner
        journal = self._purchase_journal()
        if not journal:
            self.message_post(body=self.env._('No purchase journal in %s: no bill was created.', company.name))
            return self.env['account.move']
        doc_type = self.env['l10n_latam.document.type'].sudo().search(
            [('code', '=', str(self.doc_type)), ('country_id.code', '=', 'CL')], limit=1)
        notes = []
        origin = self._referenced_bill(content.references)
        move_type = 'in_refund' if self.doc_type in CREDIT_NOTE_TYPES else 'in_invoice'
        vals = {
            'move_type': move_type,
            'company_id': company.id,
            'journal_id': journal.id,
            'partner_id': partner.id,
            'invoice_date': content.header.issue_date or False,
            'ref': self.name,
            'invoice_line_ids': [(0, 0, line) for line in self._bill_lines(content, notes)],
        }
        if content.header.due_date and content.header.due_date >= (content.header.issue_date or ''):
            vals['invoice_date_due'] = content.header.due_date
        if journal.l10n_latam_use_documents and doc_type:
            vals['l10n_latam_document_type_id'] = doc_type.id
            vals['l10n_latam_document_number'] = str(self.folio)
        if origin and move_type == 'in_refund':
            vals['reversed_entry_id'] = origin.id
        elif origin and self.doc_type in DEBIT_NOTE_TYPES:
            vals['debit_origin_id'] = origin.id
        elif self.doc_type in CREDIT_NOTE_TYPES + DEBIT_NOTE_TYPES:
            notes.append(self.env._('The document it refers to was not received here: the note is not linked.'))
        ref_types = self.env['l10n_latam.document.type'].sudo()
        vals['l10n_cl_reference_ids'] = [(0, 0, {
            'l10n_cl_reference_doc_type_id': ref_types.search(
                [('code', '=', ref.doc_type), ('country_id.code', '=', 'CL')], limit=1).id or False,
            'origin_doc_number': ref.folio or '-',
            'reference_doc_code': ref.code if ref.code in ('1', '2', '3') else False,
            'reason': ref.reason or False,
            'date': ref.date or False,
        }) for ref in content.references]
        move = self.env['account.move'].sudo().with_company(company).with_context(
            default_move_type=move_type).create(vals)
        self.move_id = move
        if float_compare(abs(move.amount_total), content.totals.total, precision_digits=0) != 0:
            notes.append(self.env._('The bill total (%(bill)s) differs from the DTE total (%(dte)s): '
                                    'check the taxes before posting.', bill=move.amount_total, dte=content.totals.total))
        xml_name = '%s.xml' % (self.sii_document_id or self.name)
        body = self.env._('Created from the received DTE %s (verified).', self.name)
        if notes:
            body = '%s %s' % (body, ' '.join(notes))
            self.message_post(body=' '.join(notes))
        move.message_post(body=body, attachments=[(xml_name, dte_xml)])
        return move

    # --- answers to the supplier and SII ----------------------------------------------------

    def _received_document(self):
        """The facade's view of this document, for the answer builders."""
        self.ensure_one()
        return reception.ReceivedDocument(
            self.sii_document_id or '', self.doc_type, self.folio, self.issuer_rut, self.receiver_rut,
            self.issue_date.isoformat() if self.issue_date else '', self.amount_total, '', self.dte_key or '',
            0, '', False, True, [], b'')

    def _sii_claim(self, action):
        """The one call to SII (RegistroReclamoDTE) for this document."""
        self.ensure_one()
        client = self.env['l10n_cl_dte.document'].with_company(self.company_id).new(
            {'company_id': self.company_id.id})._sii_client()
        try:
            return client.claim(self.issuer_rut, self.doc_type, self.folio, action)
        except (dte_native.DteError, OSError) as e:
            raise UserError(self.env._('SII could not be reached to register %(action)s: %(error)s',
                                       action=action, error=e)) from None

    def _build_answer(self, action, reason=''):
        self.ensure_one()
        company = self.company_id
        cert = self.env['l10n_cl_dte.certificate']._l10n_cl_dte_for_company(company)
        if not cert:
            raise UserError(self.env._('Company %s has no valid signing certificate.', company.name))
        contact = {'name': (self.env.user.name or '')[:40], 'email': company._l10n_cl_dte_exchange_sender() or ''}
        doc = self._received_document()
        company_rut = self._company_rut(company)
        if action == 'ERM':
            recinto = ', '.join(filter(None, [company.street, company.city])) or company.name
            return 'EnvioRecibos.xml', reception.build_recibos(
                [doc], cert._l10n_cl_dte_load(), company_rut=company_rut, recinto=recinto[:80], contact=contact)
        return 'ResultadoDTE.xml', reception.build_resultado(
            [doc], cert._l10n_cl_dte_load(), company_rut=company_rut, accept=action == 'ACD',
            reason=reason[:256], code=-1 if action in CLAIMS else 0, id_respuesta=self.id, cod_envio=self.id,
            contact=contact)

    def _check_mail_settings(self):
        self.ensure_one()
        if not self.company_id.l10n_cl_dte_smtp_host:
            raise UserError(self.env._(
                'Set the SMTP server for DTE answers of %s in Settings > Accounting > Chilean localization.',
                self.company_id.name))
        if not self.reply_to:
            raise UserError(self.env._("%s has no supplier address to answer to.", self.name))

    def _mail_answer(self, subject, attachments):
        """Sends the signed answers to the supplier's exchange address with the company's SMTP."""
        self._check_mail_settings()
        company = self.company_id
        security = company.l10n_cl_dte_smtp_security
        try:
            reception.send_answer(
                company.l10n_cl_dte_smtp_host, company.l10n_cl_dte_smtp_port or 25,
                company._l10n_cl_dte_exchange_sender(), self.reply_to, subject, attachments,
                starttls=security == 'starttls', ssl=security == 'ssl',
                user=company.l10n_cl_dte_smtp_user or None,
                password=company._l10n_cl_dte_secret('l10n_cl_dte_smtp_password_cipher') or None, timeout=60.0)
        except OSError as e:  # smtplib errors are OSErrors
            raise UserError(self.env._('The answer could not be mailed to %(to)s: %(error)s',
                                       to=self.reply_to, error=e)) from None
        self.answer_sent_at = fields.Datetime.now()

    def _answer(self, action, reason=''):
        """Registers the action at SII, then mails the signed answer to the supplier. SII's
        registration is idempotent (codResp 7 = already registered), so a failure to mail rolls
        everything back and the user simply tries again."""
        self.ensure_one()
        if self.state not in ('verified', 'accepted', 'claimed'):
            raise UserError(self.env._('%(name)s is %(state)s: it cannot be answered.',
                                       name=self.name, state=dict(STATES)[self.state]))
        if action in CLAIMS and not (reason or '').strip():
            raise UserError(self.env._('A claim must state its reason (Ley 19.983).'))
        # Everything local first (mail settings, certificate, the signed answer): SII is only
        # asked once the answer can be sent.
        self._check_mail_settings()
        filename, xml = self._build_answer(action, reason)
        result = self._sii_claim(action)
        summary = 'SII %s: %s %s' % (action, result.code, result.description)
        if result.code == SII_WINDOW_OVER and self.state == 'verified':
            self.sii_message = summary
            self._set_state('deemed_accepted', self.env._(
                'SII refused %(action)s: more than 8 days have passed since it received the document, '
                'so it is deemed accepted and can no longer be claimed.', action=action))
            return False
        if result.code not in SII_DONE and result.code != SII_TYPE_NOT_HANDLED:
            raise UserError(self.env._('SII refused %(action)s for %(name)s: %(code)s %(desc)s',
                                       action=action, name=self.name, code=result.code, desc=result.description))
        if result.code == SII_TYPE_NOT_HANDLED:
            summary = self.env._('SII registers acceptance and claims for types 33, 34 and 43 only: '
                                 'answered to the supplier only.')
        self._mail_answer('Respuesta DTE %s (%s)' % (self.name, action), [(filename, xml)])
        self.write({'sii_action': action, 'sii_message': summary})
        label = dict(ANSWER_ACTIONS)[action]
        message = '%s. %s' % (label, summary) + (' %s: %s' % (self.env._('Reason'), reason) if reason else '')
        self.message_post(body=self.env._('Answer mailed to %s.', self.reply_to), attachments=[(filename, xml)])
        new_state = 'claimed' if action in CLAIMS else 'accepted'
        if new_state == self.state:
            self.message_post(body=message)
        else:
            self._set_state(new_state, message)
        self.activity_feedback(['mail.mail_activity_data_todo'], feedback=label)
        return True

    def action_accept(self):
        for rec in self:
            rec._answer('ACD')
        return True

    def action_receipt(self):
        for rec in self:
            rec._answer('ERM')
        return True

    def action_open_claim_wizard(self):
        return {
            'type': 'ir.actions.act_window',
            'name': self.env._('Claim DTE'),
            'res_model': 'l10n_cl_dte.incoming.claim',
            'view_mode': 'form',
            'target': 'new',
            'context': {'default_incoming_ids': self.ids},
        }

    def action_acknowledge_reception(self):
        """RecepcionEnvio (RespuestaDTE): tells the supplier the envelope arrived and how it
        verified, failures included, so it can send a corrected one."""
        for rec in self.filtered('xml_file'):
            cert = self.env['l10n_cl_dte.certificate']._l10n_cl_dte_for_company(rec.company_id)
            if not cert:
                raise UserError(self.env._('Company %s has no valid signing certificate.', rec.company_id.name))
            known = rec._known_keys(rec.company_id) - {rec.dte_key}
            envelope = reception.verify_received(
                base64.b64decode(rec.with_context(bin_size=False).xml_file),
                company_rut=rec._company_rut(rec.company_id), keyring=rec._keyring(), known=known)
            if not envelope.set_id and not envelope.documents:
                raise UserError(self.env._('%s is not an envelope that can be acknowledged.', rec.name))
            filename, xml = reception.respond(
                envelope, cert._l10n_cl_dte_load(), 'receive', company_rut=rec._company_rut(rec.company_id),
                file_name=rec.xml_filename or 'envio.xml', id_respuesta=rec.id, cod_envio=rec.id)
            rec._mail_answer('Acuse de recibo %s' % rec.name, [(filename, xml)])
            rec.message_post(body=self.env._('Reception acknowledged to %(to)s: %(glosa)s',
                                             to=rec.reply_to, glosa=envelope.glosa),
                             attachments=[(filename, xml)])
        return True

    @api.model
    def action_fetch_inbox(self):
        """Wakes the inbox cron: it fetches in the background and commits per message."""
        cron = self.env.ref('l10n_cl_dte.ir_cron_l10n_cl_dte_fetch_inbox', raise_if_not_found=False)
        if cron:
            cron.sudo()._trigger()
        return {
            'type': 'ir.actions.client', 'tag': 'display_notification',
            'params': {'type': 'info', 'sticky': False,
                       'message': self.env._('The DTE inbox is being fetched in the background.')},
        }

    # --- the 8-day window -------------------------------------------------------------------

    def _sii_window_end(self, client):
        """SII's reception timestamp (consultarFechaRecepcionSii, Chilean time) + 8 days, as naive
        UTC; False when SII cannot say (unreachable, or it has no record of the document)."""
        self.ensure_one()
        try:
            text = client.reception_date(self.issuer_rut, self.doc_type, self.folio)
            received = datetime.datetime.strptime(text.strip(), '%d-%m-%Y %H:%M:%S')
        except (dte_native.DteError, OSError, ValueError):
            return False
        received = received.replace(tzinfo=_CHILE).astimezone(datetime.timezone.utc).replace(tzinfo=None)
        return received + datetime.timedelta(days=WINDOW_DAYS)

    @api.model
    def _cron_deemed_accepted(self, limit=200):
        """Documents neither accepted nor claimed within 8 days are deemed accepted by law. The
        window is SII's when SII answers (its reception timestamp starts the clock), else the
        one counted from the mail's reception."""
        self.flush_model()
        now = fields.Datetime.now()
        query = self._search([('state', '=', 'verified'), ('deadline', '<', now)], limit=limit, order='id')
        self.env.cr.execute(SQL('%s FOR UPDATE SKIP LOCKED', query.select('"l10n_cl_dte_incoming"."id"')))
        records = self.browse([row[0] for row in self.env.cr.fetchall()])
        clients, deemed = {}, 0
        for rec in records:
            if rec.company_id not in clients:
                try:
                    clients[rec.company_id] = self.env['l10n_cl_dte.document'].new(
                        {'company_id': rec.company_id.id})._sii_client()
                except (dte_native.DteError, UserError, OSError):
                    clients[rec.company_id] = None
            client = clients[rec.company_id]
            sii_end = rec._sii_window_end(client) if client else False
            if sii_end and sii_end > now:
                rec.deadline = sii_end
                rec.message_post(body=self.env._(
                    'SII received this document later than the mail says: the window to accept or claim '
                    'ends on %s.', fields.Datetime.to_string(sii_end)))
                continue
            rec._set_state('deemed_accepted', self.env._(
                'No acceptance or claim was registered before %s (8 days after reception): by Ley 19.983 '
                'the goods or services are deemed received and the document accepted. It can no longer be '
                'claimed at SII.', fields.Datetime.to_string(sii_end or rec.deadline)))
            rec.activity_unlink(['mail.mail_activity_data_todo'])
            deemed += 1
        if records and _can_commit():
            self.env.cr.commit()  # pylint: disable=invalid-commit
        return deemed

    def action_download_xml(self):
        self.ensure_one()
        return {
            'type': 'ir.actions.act_url',
            'url': '/web/content/l10n_cl_dte.incoming/%s/xml_file/%s?download=true'
                   % (self.id, self.xml_filename or 'dte.xml'),
            'target': 'download',
        }


class L10nClDteIncomingCheck(models.Model):
    """One named check of a received DTE's verification (schema, signatures, TED, CAF, RUTs...)."""
    _name = 'l10n_cl_dte.incoming.check'
    _description = 'Received DTE verification check'
    _order = 'incoming_id, sequence, id'

    incoming_id = fields.Many2one('l10n_cl_dte.incoming', required=True, ondelete='cascade', index=True)
    company_id = fields.Many2one(related='incoming_id.company_id', store=True)
    sequence = fields.Integer()
    name = fields.Char('Check', required=True)
    subject = fields.Char()
    status = fields.Selection([('pass', 'Passed'), ('fail', 'Failed'), ('skip', 'Skipped')], required=True)
    reason = fields.Char()


class AccountMove(models.Model):
    _inherit = 'account.move'

    l10n_cl_dte_incoming_ids = fields.One2many('l10n_cl_dte.incoming', 'move_id', string='Received DTE', readonly=True)

    def action_l10n_cl_dte_open_incoming(self):
        self.ensure_one()
        return {
            'type': 'ir.actions.act_window',
            'res_model': 'l10n_cl_dte.incoming',
            'res_id': self.l10n_cl_dte_incoming_ids[:1].id,
            'view_mode': 'form',
        }
