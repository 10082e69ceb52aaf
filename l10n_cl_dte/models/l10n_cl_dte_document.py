import base64
import logging

import dte_native

from odoo import api, fields, models, modules
from odoo.exceptions import UserError
from odoo.tools import SQL, config

_logger = logging.getLogger(__name__)

STATES = [
    ('to_send', 'To send'),
    ('sent', 'Sent, waiting for SII'),
    ('accepted', 'Accepted'),
    ('accepted_with_objections', 'Accepted with objections'),
    ('rejected', 'Rejected'),
    ('cancelled', 'Cancelled'),
]

# The only moves of the state machine; anything else is a programming error.
TRANSITIONS = {
    'to_send': {'sent', 'rejected', 'cancelled'},
    'sent': {'accepted', 'accepted_with_objections', 'rejected', 'to_send'},
    'accepted': {'cancelled'},
    'accepted_with_objections': {'cancelled'},
    'rejected': {'to_send', 'cancelled'},
    'cancelled': set(),
}

# dte_native.sii envelope states -> document states (in_progress keeps 'sent').
SII_STATE_MAP = {
    'accepted': 'accepted',
    'accepted_with_objections': 'accepted_with_objections',
    'rejected': 'rejected',
}


def _can_commit():
    """Never commit inside tests (Odoo forbids it) — same guard as account.move.send._can_commit."""
    return not (config['test_enable'] or modules.module.current_test)


class L10nClDteDocument(models.Model):
    """One DTE: the signed XML of an invoice, its SII state and every exchange with SII."""
    _name = 'l10n_cl_dte.document'
    _description = 'Chilean electronic tax document (DTE)'
    _inherit = ['mail.thread']
    _order = 'id desc'

    name = fields.Char(compute='_compute_name', store=True)
    move_id = fields.Many2one('account.move', required=True, ondelete='restrict', index=True, readonly=True)
    company_id = fields.Many2one('res.company', required=True, index=True, readonly=True)
    caf_id = fields.Many2one('l10n_cl_dte.caf', readonly=True, ondelete='restrict')
    doc_type = fields.Integer('Document Type', readonly=True, required=True)
    folio = fields.Integer(readonly=True, required=True)
    issue_date = fields.Date(readonly=True)
    amount_total = fields.Integer('Total (MntTotal)', readonly=True)
    receiver_rut = fields.Char(readonly=True)
    state = fields.Selection(STATES, default='to_send', required=True, readonly=True, tracking=True, index=True)
    track_id = fields.Char('SII Track ID', readonly=True, copy=False, index='btree_not_null')
    sii_message = fields.Text('Last SII answer', readonly=True)
    signed_xml_file = fields.Binary('Signed XML', attachment=True, readonly=True, copy=False)
    signed_xml_filename = fields.Char(readonly=True)
    ted_xml = fields.Text('TED (stamp)', readonly=True)
    next_poll = fields.Datetime(readonly=True, index=True)
    poll_count = fields.Integer(readonly=True)
    exchange_ids = fields.One2many('l10n_cl_dte.exchange', 'document_id', readonly=True)
    # Crash safety (issue 10, scripts/crash-loop): the exact envelope and the moment it goes out
    # are committed before the upload; while set, SII may or may not have it (a kill between the
    # upload and the commit of its answer). The next attempt asks SII first, then re-sends these
    # same bytes, never a new envelope: SII refuses an identical file (STATUS 99) instead of
    # processing the document twice (which would make it "folio repeated").
    upload_envelope_file = fields.Binary('Envelope in flight', attachment=True, readonly=True, copy=False)
    upload_started = fields.Datetime('Upload in doubt since', readonly=True, copy=False)

    _folio_uniq = models.Constraint(
        'UNIQUE(company_id, doc_type, folio)', 'A folio can be used by one document only.')

    @api.depends('doc_type', 'folio')
    def _compute_name(self):
        for doc in self:
            doc.name = 'T%sF%s' % (doc.doc_type, doc.folio)

    # --- state machine ---------------------------------------------------------------------

    def _set_state(self, new_state, message=None):
        for doc in self:
            if new_state == doc.state:
                continue
            if new_state not in TRANSITIONS[doc.state]:
                raise UserError(self.env._(
                    'DTE %(name)s cannot go from %(old)s to %(new)s.',
                    name=doc.name, old=doc.state, new=new_state))
            doc.state = new_state
            if message:
                doc.sii_message = message
            label = dict(STATES)[new_state]
            body = self.env._('SII status: %(state)s', state=label)
            if message:
                body = '%s. %s' % (body, message)
            doc.message_post(body=body)
            doc.move_id.message_post(body=self.env._('DTE %(name)s: %(body)s', name=doc.name, body=body))

    def _log_exchange(self, operation, ok, summary, track_id=None):
        self.ensure_one()
        self.env['l10n_cl_dte.exchange'].sudo().create({
            'document_id': self.id,
            'operation': operation,
            'success': ok,
            'summary': summary,
            'track_id': track_id or self.track_id,
        })

    # --- envelope --------------------------------------------------------------------------

    def _signed_xml(self):
        self.ensure_one()
        return base64.b64decode(self.with_context(bin_size=False).signed_xml_file)

    def _build_envelope(self):
        """The signed EnvioDTE (EnvioBOLETA for boletas) holding these documents, ready to send."""
        company = self.company_id
        if len(company) != 1:
            raise UserError(self.env._('An envelope holds documents of one company only.'))
        cert = self.env['l10n_cl_dte.certificate']._l10n_cl_dte_for_company(company)
        if not cert:
            raise UserError(self.env._('Company %s has no valid signing certificate.', company.name))
        boletas = {dte_native.is_boleta(t) for t in self.mapped('doc_type')}
        if len(boletas) > 1:
            raise UserError(self.env._('Boletas and other documents go in separate envelopes.'))
        return dte_native.envelope(
            [doc._signed_xml() for doc in self], cert._l10n_cl_dte_load(),
            resolution_date=company.l10n_cl_dte_resolution_date or None,
            resolution_number=company.l10n_cl_dte_resolution_number or 0,
            issuer=dte_native.rut_normalize(company.vat),
            boleta=boletas.pop())

    # --- SII operations: exactly one method each -------------------------------------------

    def _sii_client(self):
        from dte_native import sii  # noqa: PLC0415 (transport is optional at import time)
        company = self.company_id
        cert = self.env['l10n_cl_dte.certificate']._l10n_cl_dte_for_company(company)
        if not cert:
            raise UserError(self.env._('Company %s has no valid signing certificate.', company.name))
        env_name = company.l10n_cl_dte_environment
        config_kwargs = {'environment': env_name}
        if env_name == 'simulator':
            config_kwargs['base_url'] = company.l10n_cl_dte_simulator_url or 'http://127.0.0.1:8765'
        return sii.SiiClient(cert._l10n_cl_dte_load(), sii.ClientConfig(**config_kwargs))

    def _sii_upload(self):
        """Uploads one document (its own envelope) and records the track id. Errors are recorded
        on the document, never raised, so a batch goes on with the next one."""
        self.ensure_one()
        from dte_native import errors  # noqa: PLC0415
        resent = bool(self.upload_started)
        try:
            client = self._sii_client()
            if resent:
                # The last attempt may have reached SII: never send a second envelope blindly.
                if self._sii_settle_interrupted_upload(client):
                    return True
                envelope = base64.b64decode(self.with_context(bin_size=False).upload_envelope_file)
            else:
                envelope = self._build_envelope()
                self.write({'upload_envelope_file': base64.b64encode(envelope),
                            'upload_started': fields.Datetime.now()})
                if _can_commit():
                    self.env.cr.commit()  # pylint: disable=invalid-commit
                    if not self._lock_one():  # another worker took it in between: its turn
                        return False
            result = client.upload(envelope, dte_native.rut_normalize(self.company_id.vat),
                                   filename='%s.xml' % self.name)
        except errors.SiiRejected as e:
            self._log_exchange('upload', False, str(e))
            self._sii_upload_settled()
            self._set_state('rejected', str(e))
            return False
        except (errors.DteError, UserError, OSError) as e:
            # Transport trouble: stays to_send, the cron tries again (asking SII first when the
            # envelope may have arrived).
            _logger.warning('DTE %s: upload to SII failed, will retry: %s', self.name, e)
            self._log_exchange('upload', False, str(e))
            self.sii_message = str(e)
            return False
        if result.duplicate and not result.track_id:
            if resent:
                # Interrupted upload: SII has this very envelope, yet QueryEstDte just said the
                # document is not received. Real SII may still be processing it: only after a
                # grace period is that a rejection (never a rejection of an accepted document).
                grace = self._sii_upload_doubt_grace_minutes()
                if grace and fields.Datetime.now() < fields.Datetime.add(self.upload_started, minutes=grace):
                    msg = self.env._('SII has this envelope but does not list the document yet; '
                                     'asking again later (upload interrupted).')
                    self._log_exchange('upload', True, msg)
                    self.sii_message = msg
                    return False
                self._sii_upload_settled()
                self._set_state('rejected', self.env._(
                    'SII already received this envelope before an interruption and does not list the '
                    'document as received (QueryEstDte): it was rejected. Correct it and send it again.'))
                return True
            # SII already had it: success; its status comes from the per-document query.
            summary = self.env._('Already received by SII (duplicate upload).')
        else:
            summary = self.env._('Uploaded, track id %s.', result.track_id)
        self.track_id = result.track_id or self.track_id
        self._log_exchange('upload', True, summary, result.track_id)
        self._sii_upload_settled()
        self.poll_count = 0
        self.next_poll = fields.Datetime.add(fields.Datetime.now(), seconds=30)
        self._set_state('sent', summary)
        return True

    def _sii_upload_doubt_grace_minutes(self):
        """How long SII may take to list a document whose interrupted upload it has: the system
        parameter l10n_cl_dte.upload_doubt_grace_minutes, else 60 (0 on the simulator, which
        registers documents on receipt)."""
        param = self.env['ir.config_parameter'].sudo().get_param('l10n_cl_dte.upload_doubt_grace_minutes')
        if param not in (None, False, ''):
            try:
                return max(0, int(param))
            except ValueError:
                _logger.warning('l10n_cl_dte.upload_doubt_grace_minutes is not a number: %r', param)
        return 0 if self.company_id.l10n_cl_dte_environment == 'simulator' else 60

    def _sii_upload_settled(self):
        self.write({'upload_envelope_file': False, 'upload_started': False})

    def _sii_settle_interrupted_upload(self, client):
        """An upload was interrupted after the envelope may have left: asks SII (QueryEstDte, or
        the boleta REST query) whether it has the document. True when that settled it (SII has it:
        accepted); False when the same envelope must be sent again. Raises on transport trouble."""
        from dte_native import sii  # noqa: PLC0415
        query = sii.DocumentQuery(
            issuer_rut=dte_native.rut_normalize(self.company_id.vat), receiver_rut=self.receiver_rut or '',
            doc_type=self.doc_type, folio=self.folio,
            date=(self.issue_date or fields.Date.today()).isoformat(), amount=self.amount_total)
        if dte_native.is_boleta(self.doc_type):
            status = client.boleta_document_status(query)
        else:
            status = client.document_status(query)
        summary = '%s (%s)' % (status.glosa or status.state, status.sii_state)
        self._log_exchange('status', True, self.env._('After an interrupted upload: %s', summary))
        if status.state in ('received', 'data_mismatch', 'modified_by_note', 'annulled_by_note'):
            self._sii_upload_settled()
            self._set_state('sent', self.env._('SII had already received it (upload interrupted).'))
            self._set_state('accepted', summary)
            return True
        return False

    def _sii_poll_status(self):
        """Asks SII for the envelope's status and moves the document accordingly."""
        self.ensure_one()
        from dte_native import errors  # noqa: PLC0415
        try:
            client = self._sii_client()
            status = client.envelope_status(self.track_id, dte_native.rut_normalize(self.company_id.vat),
                                            boleta=dte_native.is_boleta(self.doc_type))
        except (errors.DteError, UserError, OSError) as e:
            _logger.warning('DTE %s: SII status query failed, will retry: %s', self.name, e)
            self._log_exchange('status', False, str(e))
            self._schedule_next_poll()
            return False
        detail = '; '.join(
            '%s %s: %s %s' % (o.doc_type, o.folio, o.description, ' '.join(o.errors))
            for o in status.details if o.folio == self.folio and o.doc_type == self.doc_type)
        summary = '%s (%s) %s' % (status.glosa or status.state, status.sii_state, detail)
        self._log_exchange('status', True, summary.strip())
        new_state = SII_STATE_MAP.get(status.state)
        if status.final and new_state:
            self._set_state(new_state, summary.strip())
        else:
            self._schedule_next_poll()
        return True

    def _schedule_next_poll(self):
        # Soon after the upload, then less and less often (30 s, 1, 2, 4... up to 60 minutes).
        self.poll_count += 1
        delay = min(30 * (2 ** self.poll_count), 3600)
        self.next_poll = fields.Datetime.add(fields.Datetime.now(), seconds=delay)

    # --- user actions and crons ------------------------------------------------------------

    def action_send_to_sii(self):
        """Marks documents to be sent and wakes the sending cron: the user gets control back at
        once, the cron sends in the background and commits after each upload."""
        docs = self.filtered(lambda d: d.state in ('to_send', 'rejected'))
        for doc in docs.filtered(lambda d: d.state == 'rejected'):
            doc._set_state('to_send', self.env._('Queued again by %s.', self.env.user.name))
        docs.next_poll = False
        cron = self.env.ref('l10n_cl_dte.ir_cron_l10n_cl_dte_send', raise_if_not_found=False)
        if cron:
            cron.sudo()._trigger()
        return True

    @api.model
    def _lock_for_cron(self, domain, limit):
        """Ids of matching documents locked for this transaction; rows another worker holds are
        skipped (FOR UPDATE SKIP LOCKED), so two cron workers never handle the same one."""
        self.flush_model()
        query = self._search(domain, limit=limit, order='id')
        self.env.cr.execute(SQL('%s FOR UPDATE SKIP LOCKED', query.select('"l10n_cl_dte_document"."id"')))
        return self.browse([row[0] for row in self.env.cr.fetchall()])

    @api.model
    def _cron_send(self, limit=50):
        sent = 0
        for doc_id in self._lock_for_cron([('state', '=', 'to_send')], limit).ids:
            doc = self.browse(doc_id)
            if not _can_commit() or doc._lock_one():
                doc._sii_upload()
                sent += 1
                if _can_commit():
                    # One commit per remote call: a crash never loses or repeats an upload.
                    self.env.cr.commit()  # pylint: disable=invalid-commit
        return sent

    @api.model
    def _cron_poll_status(self, limit=50):
        now = fields.Datetime.now()
        domain = [('state', '=', 'sent'), ('track_id', '!=', False),
                  '|', ('next_poll', '=', False), ('next_poll', '<=', now)]
        polled = 0
        for doc_id in self._lock_for_cron(domain, limit).ids:
            doc = self.browse(doc_id)
            if not _can_commit() or doc._lock_one():
                doc._sii_poll_status()
                polled += 1
                if _can_commit():
                    self.env.cr.commit()  # pylint: disable=invalid-commit
        return polled

    def _lock_one(self):
        """After a commit the batch's locks are gone: lock this row again (skip if taken)."""
        self.flush_recordset()
        self.env.cr.execute(SQL(
            'SELECT id FROM l10n_cl_dte_document WHERE id = %s AND state IN %s FOR UPDATE SKIP LOCKED',
            self.id, ('to_send', 'sent')))
        return bool(self.env.cr.fetchone())

    def action_download_xml(self):
        self.ensure_one()
        return {
            'type': 'ir.actions.act_url',
            'url': '/web/content/l10n_cl_dte.document/%s/signed_xml_file/%s?download=true'
                   % (self.id, self.signed_xml_filename or 'dte.xml'),
            'target': 'download',
        }


class L10nClDteExchange(models.Model):
    """One exchange with SII (upload, status query...) and what came back."""
    _name = 'l10n_cl_dte.exchange'
    _description = 'DTE exchange with SII'
    _order = 'id desc'

    document_id = fields.Many2one('l10n_cl_dte.document', required=True, ondelete='cascade', index=True)
    company_id = fields.Many2one(related='document_id.company_id', store=True)
    operation = fields.Selection([('upload', 'Upload'), ('status', 'Status query')], required=True)
    success = fields.Boolean()
    track_id = fields.Char('Track ID')
    summary = fields.Text()
