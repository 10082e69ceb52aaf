"""Operations: batches of documents sent together (the monitor page), webhook events received
from `dte worker` (idempotency), the secrets of those endpoints, and metrics from the database.

The webhook and metrics controllers (controllers/) are thin: verification is
dte_native.webhooks, exposition is dte_native.metrics; this file holds what touches records.
"""
import datetime
import json
import logging
import os
from pathlib import Path

import dte_native

from odoo import api, fields, models
from odoo.exceptions import ValidationError
from odoo.tools import SQL

from .l10n_cl_dte_document import STATES, TRANSITIONS

_logger = logging.getLogger(__name__)

FINAL_STATES = ('accepted', 'accepted_with_objections', 'rejected', 'cancelled')
WEBHOOK_EVENTS = [('status_update', 'Status update'), ('error_alert', 'Error alert'), ('sii_change', 'SII change')]


def _secret_from(env, param, env_var):
    """A secret from a system parameter, else the file named by $<env_var>_FILE, else $<env_var>."""
    value = env['ir.config_parameter'].sudo().get_param(param)
    if value:
        return value.strip()
    path = os.environ.get(env_var + '_FILE')
    if path:
        try:
            return Path(path).read_text(encoding='utf-8').strip()
        except OSError:
            _logger.warning('%s_FILE=%s cannot be read', env_var, path)
            return ''
    return os.environ.get(env_var, '').strip()


def webhook_secret(env):
    return _secret_from(env, 'l10n_cl_dte.webhook_secret', 'DTE_WEBHOOK_SECRET')


def metrics_token(env):
    return _secret_from(env, 'l10n_cl_dte.metrics_token', 'DTE_METRICS_TOKEN')


class L10nClDteBatch(models.Model):
    """Documents sent to SII together; their states give the batch's progress."""
    _name = 'l10n_cl_dte.batch'
    _description = 'DTE sending batch'
    _order = 'id desc'

    name = fields.Char(required=True, readonly=True, default=lambda self: self._default_name())
    company_id = fields.Many2one('res.company', required=True, readonly=True, index=True,
                                 default=lambda self: self.env.company)
    user_id = fields.Many2one('res.users', readonly=True, default=lambda self: self.env.user)
    document_ids = fields.One2many('l10n_cl_dte.document', 'batch_id', readonly=True)
    total_count = fields.Integer('Documents', compute='_compute_progress')
    to_send_count = fields.Integer('Waiting', compute='_compute_progress')
    sent_count = fields.Integer('At SII', compute='_compute_progress')
    accepted_count = fields.Integer('Accepted', compute='_compute_progress')
    rejected_count = fields.Integer('Rejected', compute='_compute_progress')
    progress = fields.Float(compute='_compute_progress', help='Share of documents in a final state (%)')
    state = fields.Selection([('queued', 'Queued'), ('running', 'In progress'), ('done', 'Done')],
                             compute='_compute_progress')

    def _default_name(self):
        return self.env._('Batch %s', fields.Datetime.to_string(fields.Datetime.now()))

    @api.depends('document_ids.state')
    def _compute_progress(self):
        counts = {}
        if self.ids:
            rows = self.env['l10n_cl_dte.document']._read_group(
                [('batch_id', 'in', self.ids)], ['batch_id', 'state'], ['__count'])
            for batch, state, count in rows:
                counts.setdefault(batch.id, {})[state] = count
        for batch in self:
            c = counts.get(batch.id, {})
            total = sum(c.values())
            final = sum(c.get(s, 0) for s in FINAL_STATES)
            batch.total_count = total
            batch.to_send_count = c.get('to_send', 0)
            batch.sent_count = c.get('sent', 0)
            batch.accepted_count = c.get('accepted', 0) + c.get('accepted_with_objections', 0)
            batch.rejected_count = c.get('rejected', 0)
            batch.progress = 100.0 * final / total if total else 0.0
            if total and final == total:
                batch.state = 'done'
            elif c.get('sent') or final:
                batch.state = 'running'
            else:
                batch.state = 'queued'

    @api.model
    def _l10n_cl_dte_create_for(self, documents):
        """One batch per company for ``documents`` (only those not yet final)."""
        batches = self.browse()
        for company in documents.company_id:
            docs = documents.filtered(lambda d, c=company: d.company_id == c and d.state not in FINAL_STATES)
            if docs:
                batch = self.sudo().create({'company_id': company.id})
                docs.sudo().batch_id = batch
                batches |= batch
        return batches

    @api.model
    def get_monitor_data(self, limit=20):
        """The monitor page's rows: recent batches of the user's companies, newest first."""
        batches = self.search([('company_id', 'in', self.env.companies.ids)], limit=limit)
        return [{
            'id': b.id, 'name': b.name, 'company': b.company_id.name, 'state': b.state,
            'total': b.total_count, 'to_send': b.to_send_count, 'sent': b.sent_count,
            'accepted': b.accepted_count, 'rejected': b.rejected_count,
            'progress': round(b.progress, 1), 'create_date': fields.Datetime.to_string(b.create_date),
        } for b in batches]

    def action_open_documents(self):
        self.ensure_one()
        return {
            'type': 'ir.actions.act_window', 'res_model': 'l10n_cl_dte.document', 'name': self.name,
            'view_mode': 'list,form', 'domain': [('batch_id', '=', self.id)],
        }


class L10nClDteDocument(models.Model):
    _inherit = 'l10n_cl_dte.document'

    batch_id = fields.Many2one('l10n_cl_dte.batch', readonly=True, index='btree_not_null', ondelete='set null',
                               copy=False)

    def action_send_to_sii(self):
        # Every user "Send" becomes a batch the monitor page follows.
        self.env['l10n_cl_dte.batch']._l10n_cl_dte_create_for(
            self.filtered(lambda d: d.state in ('to_send', 'rejected')))
        return super().action_send_to_sii()

    def _sii_client(self):
        # Times and counts every call this addon makes to SII (dte_native.metrics).
        from dte_native import metrics  # noqa: PLC0415 - needs prometheus_client
        return metrics.instrument(super()._sii_client())

    def _l10n_cl_dte_apply_update(self, update):
        """Applies one document's entry of a status_update webhook; returns what happened:
        'updated', 'unchanged' or 'ignored' (a move the state machine does not allow, e.g. a late
        'sent' after 'accepted': webhooks may arrive out of order)."""
        self.ensure_one()
        new_state = update['state']
        message = (update.get('message') or '').strip()[:2000]
        track_id = (update.get('track_id') or '').strip()
        if new_state == self.state:
            if track_id and not self.track_id:
                self.track_id = track_id
            return 'unchanged'
        # The worker follows an upload to its final state and may report only that: a document
        # still 'to_send' here passes through 'sent' (the upload it missed) on the way.
        steps = [new_state]
        if new_state not in TRANSITIONS[self.state]:
            if self.state == 'to_send' and new_state in TRANSITIONS['sent']:
                steps = ['sent', new_state]
            else:
                return 'ignored'
        if track_id:
            self.track_id = track_id
        for step in steps:
            operation = 'upload' if step == 'sent' else 'status'
            summary = (message if step == new_state else '') or self.env._(
                'Reported by dte worker: %s', dict(STATES)[step])
            self._log_exchange(operation, step != 'rejected', summary, track_id or None)
            if step == 'sent':
                self.poll_count = 0
                self.next_poll = fields.Datetime.add(fields.Datetime.now(), seconds=30)
            self._set_state(step, summary)
        if new_state in FINAL_STATES:
            # The worker's SII calls are counted by the worker; the outcome is counted here.
            from dte_native import metrics  # noqa: PLC0415
            metrics.process_metrics().record_document(self.doc_type, new_state)
        return 'updated'


class L10nClDteWebhookEvent(models.Model):
    """A webhook event received from `dte worker`; ``event_id`` is unique, so a replayed event
    is recognised and never applied twice."""
    _name = 'l10n_cl_dte.webhook.event'
    _description = 'DTE webhook event'
    _order = 'id desc'
    _rec_name = 'event_id'

    event_id = fields.Char(required=True, readonly=True)
    event = fields.Selection(WEBHOOK_EVENTS, required=True, readonly=True)
    received_at = fields.Datetime(required=True, readonly=True, default=fields.Datetime.now)
    signed_at = fields.Datetime(readonly=True, help='Timestamp the sender signed the event with')
    severity = fields.Char(readonly=True)
    summary = fields.Text(readonly=True)
    payload = fields.Text(readonly=True)
    result = fields.Text(readonly=True)

    _event_id_uniq = models.Constraint('UNIQUE(event_id)', 'This webhook event was already received.')

    @api.model
    def _l10n_cl_dte_claim(self, event_id, event, signed_at, payload):
        """Records the event; False when it was already recorded (a replay). Race-free: two
        concurrent deliveries of one event cannot both claim it."""
        self.env.cr.execute(SQL(
            """INSERT INTO l10n_cl_dte_webhook_event
                   (event_id, event, received_at, signed_at, payload, create_uid, create_date, write_uid, write_date)
               VALUES (%s, %s, now() at time zone 'UTC', %s, %s, %s, now() at time zone 'UTC', %s, now() at time zone 'UTC')
               ON CONFLICT (event_id) DO NOTHING RETURNING id""",
            event_id, event, signed_at, payload, self.env.uid or 1, self.env.uid or 1))
        row = self.env.cr.fetchone()
        return self.browse(row[0]) if row else False

    # --- handlers: one per event; they raise ValidationError for input that cannot apply ---

    def _l10n_cl_dte_handle(self, body):
        self.ensure_one()
        handler = {
            'status_update': self._handle_status_update,
            'error_alert': self._handle_error_alert,
            'sii_change': self._handle_sii_change,
        }[self.event]
        result = handler(body)
        self.result = json.dumps(result, ensure_ascii=False)
        return result

    def _find_documents(self, items, company_rut):
        Document = self.env['l10n_cl_dte.document'].sudo()
        companies = self.env['res.company'].sudo()
        if company_rut:
            try:
                rut = dte_native.rut_normalize(str(company_rut))
            except Exception:  # noqa: BLE001 - any unparsable RUT is the sender's mistake
                raise ValidationError(self.env._('company_rut %s is not a valid RUT.', company_rut)) from None
            companies = companies.search([('vat', '!=', False)]).filtered(
                lambda c: _same_rut(c.vat, rut))
            if not companies:
                raise ValidationError(self.env._('No company has RUT %s.', rut))
        found, missing = [], []
        for item in items:
            try:
                doc_type, folio = int(item['doc_type']), int(item['folio'])
            except (KeyError, TypeError, ValueError):
                raise ValidationError(self.env._('Each document needs integer doc_type and folio.')) from None
            domain = [('doc_type', '=', doc_type), ('folio', '=', folio)]
            if company_rut:
                domain.append(('company_id', 'in', companies.ids))
            doc = Document.search(domain)
            if len(doc) != 1:
                missing.append('T%sF%s' % (doc_type, folio))
            else:
                found.append((doc, item))
        return found, missing

    def _handle_status_update(self, body):
        items = body.get('documents')
        if not isinstance(items, list) or not items:
            raise ValidationError(self.env._('status_update needs a non-empty "documents" list.'))
        valid = {s for s, _label in STATES}
        for item in items:
            if not isinstance(item, dict) or item.get('state') not in valid:
                raise ValidationError(self.env._('Each document needs a "state" among %s.', sorted(valid)))
        found, missing = self._find_documents(items, body.get('company_rut'))
        if missing:
            raise _NotFound(self.env._('Unknown documents: %s', ', '.join(missing)))
        results = {}
        for doc, item in found:
            results[doc.name] = doc._l10n_cl_dte_apply_update(item)
        self.summary = ', '.join('%s %s' % (name, r) for name, r in results.items())[:2000]
        return {'documents': results}

    def _handle_error_alert(self, body):
        message = str(body.get('message') or '').strip()
        if not message:
            raise ValidationError(self.env._('error_alert needs a "message".'))
        self.severity = str(body.get('severity') or 'error')[:32]
        self.summary = message[:2000]
        _logger.warning('dte worker reports (%s): %s', self.severity, message[:500])
        found, _missing = self._find_documents(body.get('documents') or [], body.get('company_rut'))
        for doc, _item in found:
            doc.message_post(body=self.env._('dte worker reported an error: %s', message[:2000]))
        return {'documents': [doc.name for doc, _item in found]}

    def _handle_sii_change(self, body):
        change = str(body.get('change') or '').strip()
        if not change:
            raise ValidationError(self.env._('sii_change needs a "change" (what changed at SII).'))
        self.severity = str(body.get('severity') or 'info')[:32]
        self.summary = ('%s: %s' % (change, body.get('message') or '')).strip(': ')[:2000]
        _logger.warning('SII change reported by dte worker: %s', self.summary)
        return {'change': change}


class _NotFound(ValidationError):
    """Input that names records this database does not have (HTTP 404)."""


def _same_rut(vat, rut):
    try:
        return dte_native.rut_normalize(vat) == rut
    except Exception:  # noqa: BLE001 - a company with a malformed VAT simply does not match
        return False


def metric_samples(env):
    """Snapshot samples read from the database (dte_native.metrics.Sample) for the endpoint:
    documents by state and type, folios and days left per CAF, days left per certificate, and
    documents of unfinished batches."""
    from dte_native.metrics import Sample, days_left  # noqa: PLC0415

    env = env(su=True)
    samples = [
        Sample('dte_documents', {'state': state, 'doc_type': str(doc_type)}, count)
        for state, doc_type, count in env['l10n_cl_dte.document']._read_group(
            [], ['state', 'doc_type'], ['__count'])
    ]
    now = datetime.datetime.now(datetime.timezone.utc)
    for caf in env['l10n_cl_dte.caf'].search([]):
        if caf.expires_on and caf.expires_on < now.date():
            continue  # an expired CAF has no usable folios
        labels = {'company': caf.company_id.name, 'doc_type': str(caf.doc_type),
                  'caf': '%s:%s-%s' % (caf.doc_type, caf.folio_from, caf.folio_to)}
        samples.append(Sample('dte_caf_folios_left', labels, caf.folios_left))
        if caf.expires_on:
            samples.append(Sample('dte_caf_days_left', labels, days_left(caf.expires_on, now)))
    for cert in env['l10n_cl_dte.certificate'].search([]):
        if cert.date_end:
            samples.append(Sample('dte_certificate_days_left', {
                'company': cert.company_id.name, 'signer_rut': cert.signer_rut or '',
                'certificate': (cert.fingerprint or '').replace(':', '')[:16].lower()},
                days_left(cert.date_end, now)))
    batches = env['l10n_cl_dte.batch'].search([], limit=50)
    for batch in batches.filtered(lambda b: b.state != 'done'):
        for state, value in (('to_send', batch.to_send_count), ('sent', batch.sent_count),
                             ('accepted', batch.accepted_count), ('rejected', batch.rejected_count)):
            samples.append(Sample('dte_batch_documents', {'batch': batch.name, 'state': state}, value))
    return samples


def check_update_payload(env, body):
    """Common checks of every webhook body (dict with event and event_id)."""
    if not isinstance(body, dict):
        raise ValidationError(env._('The webhook body must be a JSON object.'))
    event_id = body.get('event_id')
    if not isinstance(event_id, str) or not event_id.strip() or len(event_id) > 128:
        raise ValidationError(env._('"event_id" must be a non-empty string of at most 128 characters.'))
    return event_id.strip()

